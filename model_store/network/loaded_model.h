// A model folder built into its network (the network holds the weights).
#pragma once

#include <string>

#include "model_store/format/model.h"
#include "model_store/network/device.h"
#include "model_store/network/network.h"
#include "vocabulary/status.h"

namespace tucker_seg {

struct LoadedModel {
  ModelInfo info;
  PlainConvUNet network;
};

// Reads <dir>/model.json and <dir>/weights.safetensors and builds the network.
Result<LoadedModel> LoadNetwork(const std::string& dir);
// The same with the weights on `device` in `precision` (CheckPrecision's rule applies).
Result<LoadedModel> LoadNetwork(const std::string& dir, const torch::Device& device, Precision precision);

}  // namespace tucker_seg
