// What every request shares: the devices (each with its calibrated catalog and its workers), the
// limits, the selector, the metrics and the memory budget. Built by SegmentationServer; read by
// the serving core (segmentation_core.h) and the catalogue RPCs. No gRPC here.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/serving/device_probe.h"
#include "server/serving/memory_budget.h"
#include "server/serving/metrics.h"
#include "server/serving/model_pool.h"
#include "server/serving/scheduler.h"
#include "server/serving/selector.h"

namespace tucker_seg::server {

struct ServiceLimits {
  int64_t max_voxels = 512LL * 512 * 1000;
  int64_t max_bytes = 1LL << 30;
  int64_t max_grid_voxels = 256LL << 20;  // the CT resampled to the model's spacing
  int64_t max_tiles = 20000;              // sliding-window tiles per model
  int max_streams = 16;                   // Segment streams open at once
  int64_t chunk_bytes = 1 << 20;          // label chunks sent back
};

// One device the server runs inference on: the models placed and calibrated there (replaced
// whole when its calibration finishes) and its workers (one per GPU, --workers on the CPU).
struct ServedDevice {
  DeviceProfile profile;
  torch::Device device{torch::kCPU};
  CatalogSnapshot catalog;
  std::unique_ptr<Scheduler> scheduler;
};

// Segment streams open now, against max_streams.
class StreamCounter {
 public:
  // Counts a stream in; false when `limit` were open already (it counts until Leave all the same).
  bool Enter(int limit) ABSL_LOCKS_EXCLUDED(mutex_) {
    absl::MutexLock lock(&mutex_);
    return open_++ < limit;
  }
  void Leave() ABSL_LOCKS_EXCLUDED(mutex_) {
    absl::MutexLock lock(&mutex_);
    --open_;
  }
  int open() const ABSL_LOCKS_EXCLUDED(mutex_) {
    absl::MutexLock lock(&mutex_);
    return open_;
  }
  // Blocks until exactly `streams` are open or `timeout` passes; whether they are.
  bool AwaitOpen(int streams, absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mutex_) {
    absl::MutexLock lock(&mutex_);
    const auto reached = [this, streams]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return open_ == streams; };
    return mutex_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }

 private:
  mutable absl::Mutex mutex_;
  int open_ ABSL_GUARDED_BY(mutex_) = 0;
};

// `ready` says whether Segment calls are served (every device calibrated and not shutting down).
struct ServiceState {
  // Every device's current catalog, in `devices` order; holding them keeps their entries alive.
  std::vector<std::shared_ptr<const ModelCatalog>> Catalogs() const {
    std::vector<std::shared_ptr<const ModelCatalog>> out;
    for (const auto& d : devices) out.push_back(d->catalog.Get());
    return out;
  }

  std::vector<std::unique_ptr<ServedDevice>> devices;  // never empty; [0] answers ListModels
  const Nvml* nvml = nullptr;                          // GPU load and free memory at request time
  ServiceLimits limits;
  double window_step = 0.5;
  VariantSelector* selector = nullptr;
  const Clock* clock = &Clock::Real();  // admission times and budgets; the schedulers' clock too
  ServerMetrics* metrics = nullptr;
  MemoryBudget* memory_budget = nullptr;
  std::atomic<bool> ready{false};
  StreamCounter open_streams;
};

}  // namespace tucker_seg::server
