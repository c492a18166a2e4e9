#include "image_io/dicom_series.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>

namespace tucker_seg {
namespace {

struct SliceHeader {
  DicomSlice slice;
  std::string study, series, frame_of_reference, modality;
  std::array<double, 6> orientation{};
  int rows = 0, columns = 0;
  std::array<double, 2> pixel_spacing{};
};

std::string Text(DcmDataset* d, const DcmTagKey& tag) {
  OFString value;
  return d->findAndGetOFStringArray(tag, value).good() ? std::string(value.c_str()) : std::string();
}

bool Numbers(DcmDataset* d, const DcmTagKey& tag, double* out, unsigned long n) {
  for (unsigned long i = 0; i < n; ++i) {
    Float64 v;
    if (d->findAndGetFloat64(tag, v, i).bad()) return false;
    out[i] = v;
  }
  return true;
}

// Headers only: values longer than 4 KiB (pixel data) are not loaded.
bool ReadHeader(const std::filesystem::path& path, SliceHeader* h) {
  DcmFileFormat file;
  if (file.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, 4096).bad()) return false;
  DcmDataset* d = file.getDataset();
  Uint16 rows = 0, columns = 0;
  if (d->findAndGetUint16(DCM_Rows, rows).bad() || d->findAndGetUint16(DCM_Columns, columns).bad()) return false;
  h->rows = rows;
  h->columns = columns;
  h->slice.path = path.string();
  h->slice.sop_instance_uid = Text(d, DCM_SOPInstanceUID);
  h->slice.sop_class_uid = Text(d, DCM_SOPClassUID);
  if (h->slice.sop_class_uid.empty()) {  // some anonymisers empty it; the file meta header keeps it
    OFString meta;
    if (file.getMetaInfo()->findAndGetOFString(DCM_MediaStorageSOPClassUID, meta).good()) h->slice.sop_class_uid = meta.c_str();
  }
  h->study = Text(d, DCM_StudyInstanceUID);
  h->series = Text(d, DCM_SeriesInstanceUID);
  h->frame_of_reference = Text(d, DCM_FrameOfReferenceUID);
  h->modality = Text(d, DCM_Modality);
  return Numbers(d, DCM_ImagePositionPatient, h->slice.position.data(), 3) &&
         Numbers(d, DCM_ImageOrientationPatient, h->orientation.data(), 6) && Numbers(d, DCM_PixelSpacing, h->pixel_spacing.data(), 2);
}

std::string Describe(const std::map<std::string, std::vector<SliceHeader>>& series) {
  std::string s;
  for (const auto& [uid, slices] : series) s += (s.empty() ? "" : ", ") + (uid.empty() ? "(no UID)" : uid) + " (" + std::to_string(slices.size()) + " files)";
  return s;
}

}  // namespace

Result<DicomSeriesInfo> ScanDicomSeries(const std::string& dir, const std::string& series_uid) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFound("'" + dir + "' is not a folder");
  std::map<std::string, std::vector<SliceHeader>> by_series;
  for (const auto& entry : fs::recursive_directory_iterator(dir, ec)) {
    if (!entry.is_regular_file()) continue;
    SliceHeader h;
    if (ReadHeader(entry.path(), &h)) by_series[h.series].push_back(std::move(h));
  }
  if (by_series.empty()) return InvalidArgument("folder '" + dir + "' holds no DICOM image files");
  std::vector<SliceHeader>* chosen = nullptr;
  if (!series_uid.empty()) {
    const auto it = by_series.find(series_uid);
    if (it == by_series.end()) return NotFound("series " + series_uid + " is not in '" + dir + "' (it holds " + Describe(by_series) + ")");
    chosen = &it->second;
  } else if (by_series.size() > 1) {
    return InvalidArgument("folder '" + dir + "' holds " + std::to_string(by_series.size()) + " series: " + Describe(by_series) +
                           "; choose one by its SeriesInstanceUID");
  } else {
    chosen = &by_series.begin()->second;
  }

  auto& slices = *chosen;
  const auto& first = slices.front();
  for (const auto& s : slices) {
    bool same_orientation = true;
    for (int i = 0; i < 6; ++i) same_orientation &= std::abs(s.orientation[i] - first.orientation[i]) < 1e-4;
    if (!same_orientation || s.rows != first.rows || s.columns != first.columns ||
        std::abs(s.pixel_spacing[0] - first.pixel_spacing[0]) > 1e-4 || std::abs(s.pixel_spacing[1] - first.pixel_spacing[1]) > 1e-4) {
      return InvalidArgument("mixed slice geometry in series " + first.series + ": '" + s.slice.path +
                             "' differs from '" + first.slice.path + "' in orientation, rows/columns or pixel spacing");
    }
  }
  const auto& o = first.orientation;
  const std::array<double, 3> normal{o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]};
  const auto along = [&](const SliceHeader& s) {
    return s.slice.position[0] * normal[0] + s.slice.position[1] * normal[1] + s.slice.position[2] * normal[2];
  };
  std::sort(slices.begin(), slices.end(), [&](const SliceHeader& a, const SliceHeader& b) { return along(a) < along(b); });

  DicomSeriesInfo info;
  if (slices.size() > 1) {
    std::vector<double> gaps;
    for (size_t i = 1; i < slices.size(); ++i) gaps.push_back(along(slices[i]) - along(slices[i - 1]));
    auto sorted = gaps;
    std::sort(sorted.begin(), sorted.end());
    info.slice_spacing = sorted[sorted.size() / 2];
    if (info.slice_spacing <= 1e-4) return InvalidArgument("series " + first.series + " has slices at the same position");
    for (size_t i = 0; i < gaps.size(); ++i) {
      if (std::abs(gaps[i] - info.slice_spacing) > 0.1 * info.slice_spacing) {
        return InvalidArgument("series " + first.series + " has a gap: slices " + std::to_string(i) + " and " + std::to_string(i + 1) +
                               " are " + std::to_string(gaps[i]) + " mm apart where the series spaces slices " +
                               std::to_string(info.slice_spacing) + " mm (missing or duplicate files?)");
      }
    }
  }
  info.study_instance_uid = first.study;
  info.series_instance_uid = first.series;
  info.frame_of_reference_uid = first.frame_of_reference;
  info.modality = first.modality;
  info.orientation = first.orientation;
  info.rows = first.rows;
  info.columns = first.columns;
  info.pixel_spacing = first.pixel_spacing;
  for (const auto& s : slices) info.slices.push_back(s.slice);
  return info;
}

}  // namespace tucker_seg
