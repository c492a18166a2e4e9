#include "image_io/image_io.h"

#include "vocabulary/atomic_file.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>

#include <itkGDCMImageIO.h>
#include <itkGDCMImageIOFactory.h>
#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageSeriesReader.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>

namespace tucker_seg {
namespace {

using FloatImage = itk::Image<float, 3>;
using LabelImage = itk::Image<uint8_t, 3>;

// Our targets do not use ITK's generated factory registration; register the formats we read.
void RegisterFormats() {
  static std::once_flag once;
  std::call_once(once, [] {
    itk::NiftiImageIOFactory::RegisterOneFactory();
    itk::NrrdImageIOFactory::RegisterOneFactory();
    itk::MetaImageIOFactory::RegisterOneFactory();
    itk::GDCMImageIOFactory::RegisterOneFactory();
  });
}

std::string FirstLine(const std::string& s) {
  const auto start = s.find_first_not_of('\n');
  return s.substr(start == std::string::npos ? 0 : start, s.find('\n', start == std::string::npos ? 0 : start));
}

template <typename Image>
Geometry GeometryOf(const Image* image) {
  Geometry g;
  const auto size = image->GetLargestPossibleRegion().GetSize();
  for (int a = 0; a < 3; ++a) {
    g.size[a] = static_cast<int64_t>(size[a]);
    g.spacing[a] = image->GetSpacing()[a];
    g.origin[a] = image->GetOrigin()[a];
    for (int b = 0; b < 3; ++b) g.direction[a * 3 + b] = image->GetDirection()(a, b);
  }
  return g;
}

template <typename Image>
typename Image::Pointer MakeImage(const Geometry& g) {
  auto image = Image::New();
  typename Image::RegionType region;
  typename Image::SpacingType spacing;
  typename Image::PointType origin;
  typename Image::DirectionType direction;
  for (int a = 0; a < 3; ++a) {
    region.SetSize(a, static_cast<itk::SizeValueType>(g.size[a]));
    spacing[a] = g.spacing[a];
    origin[a] = g.origin[a];
    for (int b = 0; b < 3; ++b) direction(a, b) = g.direction[a * 3 + b];
  }
  image->SetRegions(region);
  image->SetSpacing(spacing);
  image->SetOrigin(origin);
  image->SetDirection(direction);
  image->Allocate();
  return image;
}

template <typename Image, typename T>
Status Write(const std::string& path, const Volume<T>& v) {
  RegisterFormats();
  if (static_cast<int64_t>(v.voxels.size()) != v.geometry.NumVoxels()) return InvalidArgument("voxel count does not match the geometry");
  auto image = MakeImage<Image>(v.geometry);
  std::copy(v.voxels.begin(), v.voxels.end(), image->GetBufferPointer());
  // Written under a temporary name with the same extension (ITK picks the format by it), then
  // fsynced and renamed into place.
  const std::string stem = WithoutImageExtension(path);
  const std::string temporary = stem + ".tmp-" + std::to_string(getpid()) + path.substr(stem.size());
  try {
    auto writer = itk::ImageFileWriter<Image>::New();
    writer->SetFileName(temporary);
    writer->SetInput(image);
    writer->UseCompressionOn();
    writer->Update();
  } catch (const itk::ExceptionObject& e) {
    std::remove(temporary.c_str());
    return Internal("cannot write '" + path + "': " + FirstLine(e.GetDescription()));
  }
  return CommitWrittenFile(temporary, path);
}

bool IsDicomFile(const std::filesystem::path& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char preamble[132] = {};
  const bool dicom = std::fread(preamble, 1, sizeof preamble, f) == sizeof preamble && std::memcmp(preamble + 128, "DICM", 4) == 0;
  std::fclose(f);
  return dicom;
}

const char* const kImageExtensions[] = {".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"};

size_t ImageExtensionLength(const std::string& path) {
  for (const std::string extension : kImageExtensions)
    if (path.size() > extension.size() && path.compare(path.size() - extension.size(), extension.size(), extension) == 0) {
      return extension.size();
    }
  return 0;
}

}  // namespace

bool HasImageExtension(const std::string& path) { return ImageExtensionLength(path) > 0; }

std::string WithoutImageExtension(const std::string& path) { return path.substr(0, path.size() - ImageExtensionLength(path)); }

Result<std::vector<std::string>> ExpandCtInputs(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  std::vector<std::string> cases;
  for (const auto& path : paths) {
    std::error_code ec;
    if (!fs::exists(path, ec)) return NotFound("-i '" + path + "' does not exist");
    if (!fs::is_directory(path, ec)) {
      cases.push_back(path);
      continue;
    }
    std::vector<std::string> images;
    bool dicom = false;
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      if (!entry.is_regular_file(ec)) continue;
      if (HasImageExtension(entry.path().filename().string())) images.push_back(entry.path().string());
      else if (!dicom && IsDicomFile(entry.path())) dicom = true;
    }
    if (ec) return InvalidArgument("-i '" + path + "': cannot list the folder: " + ec.message());
    if (dicom) {
      cases.push_back(path);
    } else if (!images.empty()) {
      std::sort(images.begin(), images.end());
      cases.insert(cases.end(), images.begin(), images.end());
    } else {
      return InvalidArgument("-i '" + path + "' holds neither DICOM files nor .nii/.nii.gz/.nrrd/.mha images");
    }
  }
  return cases;
}

std::string CaseName(const std::string& path) {
  std::string name = std::filesystem::path(path).filename().string();
  if (name.empty()) name = std::filesystem::path(path).parent_path().filename().string();  // "dir/"
  return WithoutImageExtension(name);
}

Result<CtInput> ReadCtInput(const std::string& path, const std::string& series_uid) {
  RegisterFormats();
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) return NotFound("'" + path + "' does not exist");
  CtInput input;
  FloatImage::Pointer image;
  try {
    if (fs::is_directory(path, ec)) {
      auto series = ScanDicomSeries(path, series_uid);
      if (!series.ok()) return series.status();
      std::vector<std::string> files;
      for (const auto& slice : series.value().slices) files.push_back(slice.path);
      auto reader = itk::ImageSeriesReader<FloatImage>::New();
      reader->SetImageIO(itk::GDCMImageIO::New());
      reader->SetFileNames(files);
      reader->Update();
      image = reader->GetOutput();
      input.dicom = std::move(series.value());
    } else {
      auto reader = itk::ImageFileReader<FloatImage>::New();
      reader->SetFileName(path);
      reader->Update();
      image = reader->GetOutput();
      input.nifti_codes = ReadNiftiXformCodes(path);
    }
  } catch (const itk::ExceptionObject& e) {
    return InvalidArgument("cannot read '" + path + "' as an image: " + FirstLine(e.GetDescription()));
  }
  input.ct.geometry = GeometryOf(image.GetPointer());
  const float* buffer = image->GetBufferPointer();
  input.ct.voxels.assign(buffer, buffer + input.ct.geometry.NumVoxels());
  return input;
}

Result<CtVolume> ReadCt(const std::string& path) {
  auto input = ReadCtInput(path);
  if (!input.ok()) return input.status();
  return std::move(input.value().ct);
}

Status WriteLabelMap(const std::string& path, const LabelMap& labels, const NiftiHeaderEdits& edits) {
  if (!IsNiftiPath(path)) return Write<LabelImage>(path, labels);
  // ITK writes a plain NIfTI beside the target; the header edits and the compression happen in
  // the one rewrite that puts it in place.
  const std::string itk_output = path + ".itk-" + std::to_string(getpid()) + ".nii";
  Status status = Write<LabelImage>(itk_output, labels);
  if (status.ok()) status = RewriteNifti(itk_output, path, edits);
  std::remove(itk_output.c_str());
  return status;
}
Status WriteCt(const std::string& path, const CtVolume& ct) { return Write<FloatImage>(path, ct); }

}  // namespace tucker_seg
