// The few NIfTI-1 header fields ITK does not let us carry from an input to an output: the
// qform/sform codes (what the input's coordinates mean: scanner, aligned, ...), the 80-character
// description, and header extensions (TotalSegmentator's label table is one).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "vocabulary/status.h"

namespace tucker_seg {

struct NiftiXformCodes {
  int16_t qform_code = 1;  // NIFTI_XFORM_SCANNER_ANAT
  int16_t sform_code = 1;
};

// The codes of a NIfTI-1 file (.nii or .nii.gz); nullopt for other files or unreadable headers.
std::optional<NiftiXformCodes> ReadNiftiXformCodes(const std::string& path);

struct NiftiHeaderEdits {
  std::optional<NiftiXformCodes> codes;  // unset: keep what the writer chose
  std::string description;               // `descrip`, cut to 79 characters
  // One extension (code 0, as TotalSegmentator's label table uses), padded to a multiple of 16.
  std::string extension;
};

// Reads the NIfTI-1 file `from` (plain or gzipped), applies `edits` and writes it to `path`
// (gzipped when its name ends in .gz) atomically: temporary file beside it, fsync, rename.
// `from` may be `path`.
Status RewriteNifti(const std::string& from, const std::string& path, const NiftiHeaderEdits& edits);

bool IsNiftiPath(const std::string& path);

}  // namespace tucker_seg
