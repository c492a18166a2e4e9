// The tuckerseg.v1.Segmentation service (gRPC sync API): one handler thread per open stream,
// inference on the scheduler's workers. The handlers move bytes and convert statuses; what a
// request means lives in the serving library (server/serving/segmentation_core.h). Segment is in
// segment_rpc.cpp, the catalogue RPCs in catalog_rpc.cpp.
#pragma once

#include <vector>

#include "server/serving/service_state.h"
#include "server/stream_watchdog.h"
#include "tuckerseg/v1/segmentation.grpc.pb.h"

namespace tucker_seg::server {

class SegmentationService final : public tuckerseg::v1::Segmentation::Service {
 public:
  SegmentationService(ServiceState* state, StreamWatchdog* watchdog) : state_(*state), watchdog_(*watchdog) {}

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
  StreamWatchdog& watchdog_;
};

// Appends a label table (id -> name) to a repeated tuckerseg.v1.Label field.
void AddLabels(const std::vector<std::pair<int64_t, std::string>>& table,
               google::protobuf::RepeatedPtrField<tuckerseg::v1::Label>* labels);

}  // namespace tucker_seg::server
