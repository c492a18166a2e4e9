// A model on disk: `<dir>/model.json` (everything but the weights, model_info.h) +
// `<dir>/weights.safetensors`. See docs/model-format.md.
#pragma once

#include <string>

#include "model_store/format/model_info.h"
#include "model_store/format/weight_map.h"
#include "vocabulary/status.h"

namespace tucker_seg {

struct Model {
  ModelInfo info;
  WeightMap weights;  // nnU-Net state_dict names, aliases removed
};

Status SaveModel(const Model& model, const std::string& dir);
Result<Model> LoadModel(const std::string& dir);

}  // namespace tucker_seg
