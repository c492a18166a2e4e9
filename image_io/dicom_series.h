// A DICOM series folder read at header level (DCMTK, no pixel decoding): which series it holds,
// the slices sorted along their normal, and the checks that real-world series need (a chosen
// series among several, mixed slice geometry, gaps). Pixels are read by image_io (ITK/GDCM,
// JPEG 2000 included) in this order.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "vocabulary/status.h"

namespace tucker_seg {

struct DicomSlice {
  std::string path;
  std::string sop_instance_uid;
  std::string sop_class_uid;
  std::array<double, 3> position{};  // Image Position (Patient), mm
};

struct DicomSeriesInfo {
  std::string study_instance_uid, series_instance_uid, frame_of_reference_uid;
  std::string modality;
  std::array<double, 6> orientation{};  // Image Orientation (Patient): row then column direction
  int rows = 0, columns = 0;
  std::array<double, 2> pixel_spacing{};  // row spacing, column spacing (mm)
  double slice_spacing = 0;               // mm between consecutive sorted slices
  std::vector<DicomSlice> slices;         // sorted by position along the slice normal, ascending
};

// `series_uid` picks one series when the folder holds several (empty: the folder must hold one).
Result<DicomSeriesInfo> ScanDicomSeries(const std::string& dir, const std::string& series_uid = "");

}  // namespace tucker_seg
