// A composite model: several part models whose label maps merge into one id space, as
// TotalSegmentator's 1.5 mm `total` task merges its five networks (organs, vertebrae, cardiac,
// muscles, ribs) into 117 classes. On disk: <model>/composite.json naming the parts, each part an
// ordinary model folder <model>/parts/<part>/ (with its own variants/, compressed, calibrated and
// selected on its own).
//
// Merge rule: class names carry the identity. The composite's label table is composite.json's
// "labels" ([[id, name], ...]) when given, else every part's classes in part order, a name seen
// before keeping its first id. Parts are merged in order; where two parts claim a voxel, the
// later part's class wins (TotalSegmentator's own order of writing the parts).
#pragma once

#include <string>
#include <vector>

#include "vocabulary/status.h"
#include "vocabulary/volume.h"

namespace tucker_seg {

struct CompositeModel {
  std::string name;
  std::vector<std::string> parts;      // part names, in merge order
  std::vector<std::string> part_dirs;  // <model>/parts/<part>
  LabelTable labels;                   // the merged id space, background first
  // Per part: its output label id -> the composite's id (0 stays 0).
  std::vector<std::vector<uint8_t>> to_composite_id;
};

bool IsCompositeModel(const std::string& dir);  // <dir>/composite.json exists

// Reads composite.json and each part's model.json (for its label names).
Result<CompositeModel> ReadCompositeModel(const std::string& dir);

// Writes <dir>/composite.json for the part folders already in <dir>/parts/ (labels derived by
// the rule above).
Status WriteCompositeModel(const std::string& dir, const std::string& name, const std::vector<std::string>& parts);

// Writes part `part`'s label map into `merged` (same grid) by the merge rule.
Status MergePartLabels(const CompositeModel& model, size_t part, const LabelMap& part_labels, LabelMap* merged);

}  // namespace tucker_seg
