#include "image_io/image_io.h"

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
  try {
    auto writer = itk::ImageFileWriter<Image>::New();
    writer->SetFileName(path);
    writer->SetInput(image);
    writer->UseCompressionOn();
    writer->Update();
  } catch (const itk::ExceptionObject& e) {
    return Internal("cannot write '" + path + "': " + FirstLine(e.GetDescription()));
  }
  return Status::Ok();
}

}  // namespace

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

Status WriteLabelMap(const std::string& path, const LabelMap& labels) { return Write<LabelImage>(path, labels); }
Status WriteCt(const std::string& path, const CtVolume& ct) { return Write<FloatImage>(path, ct); }

}  // namespace tucker_seg
