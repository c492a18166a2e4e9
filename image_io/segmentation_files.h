// What a segmentation leaves on disk, the way TotalSegmentator users expect it: one file per
// class (`<folder>/<class name>.nii.gz`) or one multilabel map that carries its label table (a
// `<stem>.json` sidecar and, in NIfTI, TotalSegmentator's XML header extension); the input's
// qform/sform codes; which model and variant made it; and statistics.json in TotalSegmentator's
// format. Shared by the client CLI and `tucker-seg-models predict`.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "image_io/nifti_header.h"
#include "vocabulary/status.h"
#include "vocabulary/volume.h"

namespace tucker_seg {

// Which model made a segmentation: written into every output (NIfTI descrip, sidecar,
// statistics meta, DICOM SEG).
struct Provenance {
  std::string model, variant;
  std::optional<double> quality;  // the variant's mean agreement Dice with the original
  std::string software_version;
  std::optional<double> step;     // the sliding window's step, when known (sidecar and statistics)
  // "tucker-seg 0.1.0 model=<m> variant=<v> agreement=0.958" (agreement only when known; NIfTI's
  // 80-character description has no room for more).
  std::string Describe() const;
};

enum class OutputType { kMultilabel, kPerClass };
Result<OutputType> ParseOutputType(const std::string& name);  // "multilabel" or "per-class"
// A path with an image extension (.nii.gz, .nii, .nrrd, .mha) is a multilabel file; anything
// else is the folder of per-class files.
OutputType DefaultOutputType(const std::string& output);


struct SegmentationFileOptions {
  OutputType type = OutputType::kMultilabel;
  std::optional<NiftiXformCodes> codes;  // the input's; unset: the writer's (scanner)
  Provenance provenance;
};

// Per-class: creates the folder and writes every class of `table` (empty ones too, as
// TotalSegmentator does) as a 0/1 mask. Multilabel: the map, its label table extension and the
// `<stem>.json` sidecar {"model", "variant", "agreement", "labels": {"1": "spleen", ...}}.
Status WriteSegmentationFiles(const std::string& output, const LabelMap& labels, const LabelTable& table,
                              const SegmentationFileOptions& options);

// TotalSegmentator's statistics.json, exactly its shape: per class {"volume": mm3, "intensity":
// mean HU}, every class of `table`, volume rounded to 4 and intensity to 5 decimals, nothing else.
// With `exclude_masks_at_border` (TotalSegmentator's default, and ours), a class whose mask comes
// within 3 voxels of any face of the volume gets volume and intensity 0 (the structure is likely
// cut off). What made the numbers goes to `provenance`, written beside the file
// (StatisticsProvenancePath): model, variant, agreement, step, software version, units, and
// which classes were excluded at the border.
struct SegmentationStatisticsFiles {
  nlohmann::json classes, provenance;
};
Result<SegmentationStatisticsFiles> SegmentationStatistics(const CtVolume& ct, const LabelMap& labels, const LabelTable& table,
                                                           const Provenance& provenance, bool exclude_masks_at_border);
// "out/statistics.json" -> "out/statistics_provenance.json".
std::string StatisticsProvenancePath(const std::string& statistics_path);
// Both files, each replaced atomically.
Status WriteStatisticsFiles(const std::string& statistics_path, const SegmentationStatisticsFiles& statistics);

// --roi-subset: only the named classes stay, in `labels` and in `table` (background kept), so that
// per-class files and statistics list just them, as TotalSegmentator does. A name that is no
// class of the table is an error naming it.
Status KeepOnlyClasses(const std::vector<std::string>& names, LabelTable* table, LabelMap* labels);

// The NIfTI header extension TotalSegmentator writes for multilabel maps (a CaretExtension XML
// label table with each class's colour from LabelColour).
std::string LabelTableExtension(const LabelTable& table);

}  // namespace tucker_seg
