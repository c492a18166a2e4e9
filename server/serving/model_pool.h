// The models a server hosts: every model folder under the model store with all of its variants,
// loaded once and calibrated on this device. Request threads read an immutable ModelCatalog
// through a CatalogSnapshot; calibration builds a new catalog and publishes it whole. No gRPC here.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "model_store/format/composite.h"
#include "model_store/format/model.h"
#include "model_store/network/executor.h"
#include "vocabulary/status.h"

namespace tucker_seg::server {

struct VariantEntry {
  std::string name;  // "original" or the variant folder's name
  std::string dir;
  std::string weights_digest;  // WeightsDigest: the model version a response names
  ModelInfo info;
  std::shared_ptr<const NetworkExecutor> executor;  // runs the variant's network on the served device
  int64_t parameters = 0;
  int64_t macs_per_tile = 0;
  // Mean agreement Dice with the original from the manifest's evaluation; 1 for the original,
  // empty when the variant was never evaluated.
  std::optional<double> quality;
  double seconds_per_tile = 0;  // calibrated on this device
  // A request's run time besides its tiles (preprocessing, aggregation, export), calibrated on
  // this device with a one-tile CT; a request of n tiles runs fixed_seconds + n x seconds_per_tile.
  double fixed_seconds = 0;
  // GPU only: device memory this process held (NVML) once the variant had run a tile; 0 elsewhere.
  int64_t device_memory_bytes = 0;
  bool selectable = true;
  std::string not_selectable_reason;
  std::string precision = "float32";  // the manifest's: "float32" or "int8"
  // Why this device cannot run the variant (an int8 variant off the CPU, or one whose int8
  // kernels this CPU lacks); empty: it can. Such a variant is neither selected nor pinned here.
  std::string cannot_run;
};

struct ModelEntry {
  std::string name;
  std::string device;  // the label of the device its networks live on (DeviceProfile::Label)
  std::vector<VariantEntry> variants;  // [0] is the original
  // Variants whose folder could not be loaded (name, why): not served, the others are.
  std::vector<std::pair<std::string, std::string>> unavailable;
  const VariantEntry* Find(const std::string& variant) const;
  std::string VariantNames() const;  // "original, df0.5, ..." for messages
};

// A composite model (model_store/format/composite.h): its parts are ordinary entries of the
// catalog named "<composite>/<part>", calibrated and selected on their own; a request for the
// composite runs every part and merges their labels.
struct CompositeEntry {
  CompositeModel spec;
  std::vector<std::string> part_models;  // ModelEntry names, in merge order
};

// Every model the server hosts, as of one calibration. Never changed once published: a request
// holds the shared_ptr for its whole life, so the entries it points into stay valid.
struct ModelCatalog {
  std::vector<ModelEntry> models;
  // Model folders that could not be loaded (folder, why): not served, the others are.
  std::vector<std::pair<std::string, std::string>> unavailable_models;
  std::vector<CompositeEntry> composites;
  bool calibrated = false;
  // The model a request names; an empty name means the only model.
  Result<const ModelEntry*> Find(const std::string& name) const;
  const CompositeEntry* FindComposite(const std::string& name) const;  // nullptr: not a composite
};

// The current catalog: readers take a reference-counted snapshot, writers swap in a new one.
class CatalogSnapshot {
 public:
  std::shared_ptr<const ModelCatalog> Get() const ABSL_LOCKS_EXCLUDED(mutex_);
  void Publish(std::shared_ptr<const ModelCatalog> catalog) ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  mutable absl::Mutex mutex_;
  std::shared_ptr<const ModelCatalog> current_ ABSL_GUARDED_BY(mutex_) = std::make_shared<const ModelCatalog>();
};

// `store` is a folder of model folders, or a single model folder. Each model folder holds
// model.json, weights.safetensors and optionally variants/<name>/ (docs/model-format.md), or is
// a composite (composite.json and parts/<part>/ model folders).
Result<ModelCatalog> LoadModelPool(const std::string& store);

// The catalog with every network copied onto `device` as `dtype` (shared when that is where they
// are already), each model tagged with the device's label.
Result<ModelCatalog> PlaceOnDevice(const ModelCatalog& catalog, const torch::Device& device, torch::ScalarType dtype,
                                   const std::string& label);

struct CalibrationOptions {
  int warmup = 1;
  int repeats = 3;  // median of these
  // Device memory in use now (NVML), for GPU footprints; unset or nullopt where unknown.
  std::function<std::optional<int64_t>()> memory_used;
};

// Times one tile (the model's patch, batch 1) and one whole prediction of a one-tile CT per
// variant on this device, then marks variants that are slower *and* less accurate than another
// one as not selectable, with the reason.
Status Calibrate(ModelEntry* model, const CalibrationOptions& options);
void MarkDominatedVariants(ModelEntry* model);

}  // namespace tucker_seg::server
