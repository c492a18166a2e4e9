// Reading CTs and writing label maps with ITK: NIfTI, NRRD, MetaImage files and DICOM series
// (folders; JPEG 2000 through GDCM). Geometry is ITK's (LPS); no LibTorch here.
#pragma once

#include <optional>
#include <string>

#include "image_io/dicom_series.h"
#include "vocabulary/status.h"
#include "vocabulary/volume.h"

namespace tucker_seg {

// `path` is an image file (.nii, .nii.gz, .nrrd, .mha, .mhd) or a folder holding one DICOM series.
Result<CtVolume> ReadCt(const std::string& path);

// A CT and, for DICOM folders, the series it came from (what a DICOM SEG must reference).
// `series_uid` chooses among several series in one folder.
struct CtInput {
  CtVolume ct;
  std::optional<DicomSeriesInfo> dicom;
};
Result<CtInput> ReadCtInput(const std::string& path, const std::string& series_uid = "");

// Writes `labels` (any ITK file format by extension; .nii.gz recommended).
Status WriteLabelMap(const std::string& path, const LabelMap& labels);

// Writes a CT (float32), for tests and tools.
Status WriteCt(const std::string& path, const CtVolume& ct);

}  // namespace tucker_seg
