// The models a server hosts: every model folder under the model store with all of its variants,
// loaded once, calibrated on this device, shared read-only by the request threads. No gRPC here.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model_store/model.h"
#include "vocabulary/status.h"

namespace tucker_seg::server {

struct VariantEntry {
  std::string name;  // "original" or the variant folder's name
  std::string dir;
  ModelInfo info;
  std::shared_ptr<const PlainConvUNet> network;
  int64_t parameters = 0;
  int64_t macs_per_tile = 0;
  // Mean agreement Dice with the original from the manifest's evaluation; 1 for the original,
  // empty when the variant was never evaluated.
  std::optional<double> quality;
  double seconds_per_tile = 0;  // calibrated on this device
  bool selectable = true;
  std::string not_selectable_reason;
};

struct ModelEntry {
  std::string name;
  std::vector<VariantEntry> variants;  // [0] is the original
  const VariantEntry* Find(const std::string& variant) const;
  std::string VariantNames() const;  // "original, df0.5, ..." for messages
};

// `store` is a folder of model folders, or a single model folder. Each model folder holds
// model.json, weights.safetensors and optionally variants/<name>/ (docs/model-format.md).
Result<std::vector<ModelEntry>> LoadModelPool(const std::string& store);

struct CalibrationOptions {
  int warmup = 1;
  int repeats = 3;  // median of these
};

// Times one tile (the model's patch, batch 1) per variant on this device, then marks variants
// that are slower *and* less accurate than another one as not selectable, with the reason.
Status Calibrate(ModelEntry* model, const CalibrationOptions& options);
void MarkDominatedVariants(ModelEntry* model);

}  // namespace tucker_seg::server
