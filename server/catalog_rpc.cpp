// ListModels and DescribeModel: what the server hosts, what each variant costs and how accurate
// it is, and which variants auto selection may pick on this device.
#include "server/grpc_status.h"
#include "server/segmentation_service.h"

namespace tucker_seg::server {

void AddLabels(const std::vector<std::pair<int64_t, std::string>>& table,
               google::protobuf::RepeatedPtrField<tuckerseg::v1::Label>* labels) {
  for (const auto& [id, name] : table) {
    auto* label = labels->Add();
    label->set_id(id);
    label->set_name(name);
  }
}

grpc::Status SegmentationService::ListModels(grpc::ServerContext*, const tuckerseg::v1::ListModelsRequest*,
                                             tuckerseg::v1::ListModelsResponse* response) {
  const auto catalog = state_.catalog.Get();
  for (const auto& m : catalog->models) {
    auto* summary = response->add_models();
    summary->set_name(m.name);
    for (const auto& v : m.variants) summary->add_variants(v.name);
    AddLabels(m.variants[0].info.labels, summary->mutable_labels());
  }
  return grpc::Status::OK;
}

grpc::Status SegmentationService::DescribeModel(grpc::ServerContext*, const tuckerseg::v1::DescribeModelRequest* request,
                                                tuckerseg::v1::DescribeModelResponse* response) {
  const auto catalog = state_.catalog.Get();
  const auto model = catalog->Find(request->model());
  if (!model.ok()) return ToGrpc(model.status());
  const ModelEntry& m = *model.value();
  const auto& info = m.variants[0].info;
  response->set_name(m.name);
  for (auto p : info.patch_size) response->add_patch_size(p);
  for (auto s : info.spacing) response->add_spacing(s);
  AddLabels(info.labels, response->mutable_labels());
  const bool calibrated = catalog->calibrated;
  for (const auto& v : m.variants) {
    auto* out = response->add_variants();
    out->set_name(v.name);
    out->set_parameters(v.parameters);
    out->set_macs_per_tile(v.macs_per_tile);
    out->set_quality_known(v.quality.has_value());
    out->set_quality(v.quality.value_or(0));
    out->set_calibrated_seconds_per_tile(calibrated ? v.seconds_per_tile : 0);
    out->set_selectable(calibrated && v.selectable);
    out->set_not_selectable_reason(calibrated ? v.not_selectable_reason : "calibration is still running");
  }
  auto* d = response->mutable_device();
  d->set_kind(state_.device.kind);
  d->set_name(state_.device.name);
  d->set_cores(state_.device.cores);
  for (const auto& isa : state_.device.isa) d->add_isa(isa);
  d->set_memory_bytes(state_.device.memory_bytes);
  d->set_cuda_devices(state_.device.cuda_devices);
  d->set_nvml(state_.device.nvml);
  return grpc::Status::OK;
}

}  // namespace tucker_seg::server
