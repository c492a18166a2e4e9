// Reading CTs and writing label maps with ITK: NIfTI, NRRD, MetaImage files and DICOM series
// (folders; JPEG 2000 through GDCM). Geometry is ITK's (LPS); no LibTorch here.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "image_io/dicom_series.h"
#include "image_io/nifti_header.h"
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
  std::optional<NiftiXformCodes> nifti_codes;  // NIfTI inputs: what their coordinates mean
};
Result<CtInput> ReadCtInput(const std::string& path, const std::string& series_uid = "");

// What `-i` names, as the CTs to read: an image file is one CT; a folder holding DICOM files
// (recognised by their "DICM" preamble, whatever their names) is one series; any other folder
// contributes its .nii/.nii.gz/.nrrd/.mha files, sorted by name.
Result<std::vector<std::string>> ExpandCtInputs(const std::vector<std::string>& paths);
// .nii.gz, .nii, .nrrd, .mha or .mhd: the image files ITK reads and writes here.
bool HasImageExtension(const std::string& path);
std::string WithoutImageExtension(const std::string& path);  // "out/ct.nii.gz" -> "out/ct"
// A CT's name for its outputs: the file name without its image extension, or the folder's name.
std::string CaseName(const std::string& path);

// Writes `labels` (any ITK file format by extension; .nii.gz recommended). NIfTI files get
// `edits` (codes, description, extension) and are replaced atomically.
Status WriteLabelMap(const std::string& path, const LabelMap& labels, const NiftiHeaderEdits& edits = {});

// Writes a CT (float32), for tests and tools.
Status WriteCt(const std::string& path, const CtVolume& ct);

}  // namespace tucker_seg
