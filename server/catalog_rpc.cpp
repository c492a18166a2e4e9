// ListModels and DescribeModel: what the server hosts, what each variant costs and how accurate
// it is, and which variants auto selection may pick on each device.
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
  const auto catalog = state_.devices[0]->catalog.Get();
  for (const auto& m : catalog->models) {
    auto* summary = response->add_models();
    summary->set_name(m.name);
    for (const auto& v : m.variants) summary->add_variants(v.name);
    AddLabels(m.variants[0].info.labels, summary->mutable_labels());
  }
  return grpc::Status::OK;
}

namespace {

void SetProfile(const DeviceProfile& p, tuckerseg::v1::DeviceProfile* d) {
  d->set_kind(p.kind);
  d->set_label(p.Label());
  d->set_name(p.name);
  d->set_cores(p.cores);
  for (const auto& isa : p.isa) d->add_isa(isa);
  d->set_memory_bytes(p.memory_bytes);
  d->set_cuda_devices(p.cuda_devices);
  d->set_nvml(p.nvml);
}

}  // namespace

grpc::Status SegmentationService::DescribeModel(grpc::ServerContext*, const tuckerseg::v1::DescribeModelRequest* request,
                                                tuckerseg::v1::DescribeModelResponse* response) {
  const auto catalogs = state_.Catalogs();
  const auto model = catalogs[0]->Find(request->model());
  if (!model.ok()) return ToGrpc(model.status());
  const ModelEntry& m = *model.value();
  const auto& info = m.variants[0].info;
  response->set_name(m.name);
  for (auto p : info.patch_size) response->add_patch_size(p);
  for (auto s : info.spacing) response->add_spacing(s);
  AddLabels(info.labels, response->mutable_labels());
  for (size_t i = 0; i < m.variants.size(); ++i) {
    const VariantEntry& v = m.variants[i];
    auto* out = response->add_variants();
    out->set_name(v.name);
    out->set_parameters(v.parameters);
    out->set_macs_per_tile(v.macs_per_tile);
    out->set_quality_known(v.quality.has_value());
    out->set_quality(v.quality.value_or(0));
    for (size_t d = 0; d < catalogs.size(); ++d) {
      const bool calibrated = catalogs[d]->calibrated;
      auto on_device = catalogs[d]->Find(m.name);
      if (!on_device.ok() || on_device.value()->variants.size() != m.variants.size()) continue;
      const VariantEntry& there = on_device.value()->variants[i];
      auto* figures = out->add_devices();
      figures->set_device(state_.devices[d]->profile.Label());
      figures->set_calibrated_seconds_per_tile(calibrated ? there.seconds_per_tile : 0);
      figures->set_selectable(calibrated && there.selectable);
      figures->set_not_selectable_reason(calibrated ? there.not_selectable_reason : "calibration is still running");
      figures->set_device_memory_bytes(there.device_memory_bytes);
      if (d == 0) {
        out->set_calibrated_seconds_per_tile(figures->calibrated_seconds_per_tile());
        out->set_selectable(figures->selectable());
        out->set_not_selectable_reason(figures->not_selectable_reason());
      }
    }
  }
  SetProfile(state_.devices[0]->profile, response->mutable_device());
  for (const auto& d : state_.devices) SetProfile(d->profile, response->add_devices());
  return grpc::Status::OK;
}

}  // namespace tucker_seg::server
