// Picks the variant for one request. `auto`: the most accurate selectable variant whose predicted
// finish (queue wait + seconds per tile x tiles) fits the budget (the request's deadline or the
// server's latency target, whichever is sooner); as load rises it moves to cheaper variants, and
// moves back up only with headroom (hysteresis), so choices do not flap. No gRPC here.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/serving/model_pool.h"

namespace tucker_seg::server {

struct SelectorOptions {
  double latency_target_seconds = 0;  // 0: no target, only request deadlines bound the choice
  // Moving to a more accurate variant than the last choice needs predicted <= budget x (1 - this).
  double hysteresis = 0.2;
  double cost_smoothing = 0.3;  // weight of the newest observation in the seconds-per-tile average
};

struct SelectionRequest {
  std::string variant;        // "auto" or empty: the selector decides; otherwise a variant name
  double min_quality = 0;     // auto only
  std::optional<double> deadline_seconds;  // time left until the client's deadline
  int64_t tiles = 1;          // EstimateTiles for the request's geometry
  // >= 1: how much slower than calibrated the device runs now (external GPU load, NVML).
  double slowdown = 1;
};

struct Selection {
  const VariantEntry* variant = nullptr;
  std::string reason;   // pinned | most_accurate | downgraded_for_load | held_by_hysteresis | fastest_over_budget
  std::string detail;   // the numbers behind the choice
  double predicted_seconds = 0;  // queue wait + run time estimate
  double run_seconds = 0;        // run time estimate alone (what the queue adds for later requests)
};

// One device's view of a request: the model as calibrated there, its queue, and what NVML says.
struct DeviceCandidate {
  const ModelEntry* model = nullptr;
  double queue_wait_seconds = 0;
  double slowdown = 1;                // SelectionRequest::slowdown for this device
  std::optional<int64_t> free_bytes;  // GPU memory free now (NVML); unset: not checked (CPU)
};

struct Placement {
  size_t device = 0;  // index into the candidates
  Selection selection;
};

class VariantSelector {
 public:
  explicit VariantSelector(SelectorOptions options) : options_(options) {}

  Result<Selection> Select(const ModelEntry& model, const SelectionRequest& request, double queue_wait_seconds)
      ABSL_LOCKS_EXCLUDED(mutex_);

  // Select on every device that has the memory for the request (`request_device_bytes`, what the
  // sliding window allocates there), then the best of those choices: within budget first, then
  // the more accurate variant, then the sooner predicted finish. RESOURCE_EXHAUSTED when no
  // device has the memory.
  Result<Placement> SelectDevice(const std::vector<DeviceCandidate>& devices, const SelectionRequest& request,
                                 int64_t request_device_bytes) ABSL_LOCKS_EXCLUDED(mutex_);

  // Seconds per tile of a variant as served: the calibration, then a running average of what
  // whole requests took (preprocessing and export included).
  double SecondsPerTile(const ModelEntry& model, const VariantEntry& variant) const ABSL_LOCKS_EXCLUDED(mutex_);
  void Observe(const ModelEntry& model, const VariantEntry& variant, double seconds, int64_t tiles) ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  using Key = std::tuple<std::string, std::string, std::string>;  // device, model, variant
  double SecondsPerTileLocked(const ModelEntry& model, const VariantEntry& variant) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  const SelectorOptions options_;
  mutable absl::Mutex mutex_;
  std::map<Key, double> observed_seconds_per_tile_ ABSL_GUARDED_BY(mutex_);
  std::map<std::pair<std::string, std::string>, std::string> last_choice_ ABSL_GUARDED_BY(mutex_);  // (device, model) -> variant
};

}  // namespace tucker_seg::server
