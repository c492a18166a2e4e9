// A model folder built into its network (the network holds the weights) and the executor options
// its device and precision call for.
#pragma once

#include <optional>
#include <string>

#include "model_store/format/model.h"
#include "model_store/format/variant_manifest.h"
#include "model_store/network/device.h"
#include "model_store/network/executor.h"
#include "model_store/network/network.h"
#include "vocabulary/status.h"

namespace tucker_seg {

// A model ready to run: kept across inputs so that an executor compiles its graphs once.
struct RunnableModel {
  ModelInfo info;
  std::shared_ptr<const NetworkExecutor> executor;
};

struct LoadedModel {
  ModelInfo info;
  PlainConvUNet network;
  ExecutorOptions execution;
  std::optional<VariantManifest> manifest;  // a variant's manifest.json; none for an original
  // An executor for the network as it is now.
  std::shared_ptr<const NetworkExecutor> Executor() const { return MakeExecutor(network, execution); }
  RunnableModel Runnable() const { return {info, Executor()}; }
};

// Reads <dir>/model.json, <dir>/weights.safetensors and, for a variant, <dir>/manifest.json, and
// builds the network.
Result<LoadedModel> LoadNetwork(const std::string& dir);
// The same with the weights on `device` in `precision` (CheckPrecision's rule applies).
Result<LoadedModel> LoadNetwork(const std::string& dir, const torch::Device& device, Precision precision);

}  // namespace tucker_seg
