// Picks the variant for one request, from numbers the server measures: a request of `tiles` tiles
// runs fixed_seconds + seconds_per_tile x tiles with a variant on a device (both calibrated per
// device, idle), times the device's load factor: how much longer than calibrated requests there
// have taken lately (the other requests' receiving, sending and preprocessing share its cores),
// a smoothed mean plus twice its smoothed deviation, so that every variant, the ones that have
// not run lately included, is predicted as the device runs now and not as it ran idle. `auto` allows every selectable variant
// that reaches min_quality, most accurate first; the choice is made when a worker takes the
// request (Dispatch, with the queue behind it: dispatch_policy.h). Select makes the same choice
// for a request about to be queued, with the queue ahead of it as a wait: for picking a device
// and for the progress message. No gRPC here.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/serving/dispatch_policy.h"
#include "server/serving/model_pool.h"

namespace tucker_seg::server {

struct SelectorOptions {
  double latency_target_seconds = 0;  // 0: no target, only request deadlines bound the choice
  double cost_smoothing = 0.3;        // weight of the newest request in the load factor's mean and deviation
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
  std::string reason;   // pinned | most_accurate | downgraded_for_load | fastest_over_budget
  std::string detail;   // the numbers behind the choice
  double predicted_seconds = 0;  // wait + run time estimate
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

  // The server's latency target and the request's deadline, whichever is sooner; none: nullopt.
  std::optional<double> BudgetSeconds(const SelectionRequest& request) const;
  // The variants the request allows, most accurate first: the pinned one, or for auto every
  // selectable variant with a known quality >= min_quality. NOT_FOUND / INVALID_ARGUMENT naming
  // the field otherwise.
  Result<std::vector<const VariantEntry*>> Candidates(const ModelEntry& model, const SelectionRequest& request) const;
  // The choice at dispatch: `view.seconds_left` is what remains of the request's budget.
  Result<Selection> Dispatch(const ModelEntry& model, const SelectionRequest& request, const DispatchView& view) const
      ABSL_LOCKS_EXCLUDED(mutex_);
  // The choice for a request that would start after `queue_wait_seconds`, nothing behind it.
  Result<Selection> Select(const ModelEntry& model, const SelectionRequest& request, double queue_wait_seconds) const
      ABSL_LOCKS_EXCLUDED(mutex_);

  // Select on every device that has the memory for the request (`request_device_bytes`, what the
  // sliding window allocates there), then the best of those choices: within budget first, then
  // the more accurate variant, then the sooner predicted finish. RESOURCE_EXHAUSTED when no
  // device has the memory.
  Result<Placement> SelectDevice(const std::vector<DeviceCandidate>& devices, const SelectionRequest& request,
                                 int64_t request_device_bytes) const ABSL_LOCKS_EXCLUDED(mutex_);

  // The allowed variant (Candidates) that runs `request` soonest on this device, and its RunSeconds.
  struct Fastest {
    const VariantEntry* variant = nullptr;
    double seconds = 0;
  };
  Result<Fastest> FastestCandidate(const ModelEntry& model, const SelectionRequest& request) const ABSL_LOCKS_EXCLUDED(mutex_);

  // Seconds a request of `tiles` tiles takes on a worker with this variant (x slowdown).
  double RunSeconds(const ModelEntry& model, const VariantEntry& variant, int64_t tiles, double slowdown = 1) const
      ABSL_LOCKS_EXCLUDED(mutex_);
  // What a request took on its worker: the device's load factor follows (seconds / calibrated).
  void Observe(const ModelEntry& model, const VariantEntry& variant, double seconds, int64_t tiles) ABSL_LOCKS_EXCLUDED(mutex_);

  // The part of a request's time that is neither queued nor on a worker: receiving its volume,
  // sending its labels back. The schedule plans when workers finish; a request is done this much
  // later, so its budget ends this much sooner for the schedule (a smoothed mean plus twice its
  // smoothed deviation; 0 until a request has been observed).
  double OffWorkerSeconds() const ABSL_LOCKS_EXCLUDED(mutex_);
  void ObserveOffWorker(double seconds) ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  struct Learned {
    double mean = 1;
    double deviation = 0;  // mean absolute deviation from `mean`
  };
  const SelectorOptions options_;
  mutable absl::Mutex mutex_;
  std::map<std::string, Learned> observed_load_ ABSL_GUARDED_BY(mutex_);  // by device label
  std::optional<Learned> off_worker_ ABSL_GUARDED_BY(mutex_);            // seconds
};

}  // namespace tucker_seg::server
