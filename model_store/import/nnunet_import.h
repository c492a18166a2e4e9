// Imports a trained nnU-Net v2 model (a results/trainer folder, as TotalSegmentator ships them).
#pragma once

#include <string>

#include "model_store/format/model.h"
#include "vocabulary/status.h"

namespace tucker_seg {

struct NnUNetImportOptions {
  std::string results_dir;    // .../DatasetXXX_Name/<Trainer>__<Plans>__<configuration>
  std::string fold = "0";     // "0".."4" or "all"
  std::string checkpoint = "final";  // "final" or "best"
  std::string configuration;  // empty: taken from the folder name
  std::string name;           // the model's name in the store
};

// Reads plans.json, dataset.json and fold_<fold>/checkpoint_<checkpoint>.pth, checks that every
// state_dict tensor is used by the network or is an alias of one that is, and returns the model.
Result<Model> ImportNnUNet(const NnUNetImportOptions& options);

}  // namespace tucker_seg
