// The tuckerseg.v1.Segmentation service (gRPC sync API): one handler thread per open stream,
// inference on the scheduler's workers. Segment is in segment_rpc.cpp, the catalogue RPCs in
// catalog_rpc.cpp.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "server/caller_auth.h"
#include "server/device_probe.h"
#include "server/memory_budget.h"
#include "server/metrics.h"
#include "server/model_pool.h"
#include "server/scheduler.h"
#include "server/selector.h"
#include "server/stream_watchdog.h"
#include "tuckerseg/v1/segmentation.grpc.pb.h"

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

// What the handlers share. `ready` says whether Segment calls are served (every device
// calibrated and not shutting down).
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
  ServerMetrics* metrics = nullptr;
  MemoryBudget* memory_budget = nullptr;
  StreamWatchdog* watchdog = nullptr;
  const CallerAuth* auth = nullptr;
  std::atomic<bool> ready{false};
  std::atomic<int> open_streams{0};
};

class SegmentationService final : public tuckerseg::v1::Segmentation::Service {
 public:
  explicit SegmentationService(ServiceState* state) : state_(*state) {}

  grpc::Status Segment(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<tuckerseg::v1::SegmentResponse, tuckerseg::v1::SegmentRequest>* stream) override;
  grpc::Status ListModels(grpc::ServerContext* context, const tuckerseg::v1::ListModelsRequest* request,
                          tuckerseg::v1::ListModelsResponse* response) override;
  grpc::Status DescribeModel(grpc::ServerContext* context, const tuckerseg::v1::DescribeModelRequest* request,
                             tuckerseg::v1::DescribeModelResponse* response) override;

 private:
  void DescribeSingle(const std::vector<std::shared_ptr<const ModelCatalog>>& catalogs, const ModelEntry& model,
                      tuckerseg::v1::DescribeModelResponse* response) const;
  void DescribeComposite(const ModelCatalog& catalog, const CompositeEntry& composite, tuckerseg::v1::DescribeModelResponse* response) const;
  ServiceState& state_;
};

// The variant names every part of a composite has, in the first part's order.
std::vector<std::string> CommonVariants(const ModelCatalog& catalog, const CompositeEntry& composite);

// Appends a label table (id -> name) to a repeated tuckerseg.v1.Label field.
void AddLabels(const std::vector<std::pair<int64_t, std::string>>& table,
               google::protobuf::RepeatedPtrField<tuckerseg::v1::Label>* labels);

}  // namespace tucker_seg::server
