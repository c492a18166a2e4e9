// ListModels and DescribeModel: what the server hosts, what each variant costs and how accurate
// it is, and which variants auto selection may pick on each device.
#include "server/grpc_status.h"
#include "vocabulary/class_codes.h"
#include "vocabulary/label_palette.h"
#include "server/segmentation_service.h"
#include "server/serving/segmentation_core.h"

#include <algorithm>

namespace tucker_seg::server {

void AddLabels(const std::vector<std::pair<int64_t, std::string>>& table,
               google::protobuf::RepeatedPtrField<tuckerseg::v1::Label>* labels) {
  const auto set = [](const Code& from, tuckerseg::v1::Code* to) {
    to->set_scheme(from.scheme);
    to->set_value(from.value);
    to->set_meaning(from.meaning);
  };
  for (const auto& [id, name] : table) {
    auto* label = labels->Add();
    label->set_id(id);
    label->set_name(name);
    if (id == 0) continue;  // background: neither coded nor coloured
    const ClassCodes codes = CodesOf(name);
    set(codes.category, label->mutable_category());
    set(codes.type, label->mutable_type());
    if (!codes.type_modifier.empty()) set(codes.type_modifier, label->mutable_type_modifier());
    if (!codes.region.empty()) set(codes.region, label->mutable_region());
    if (!codes.region_modifier.empty()) set(codes.region_modifier, label->mutable_region_modifier());
    for (uint8_t channel : LabelColour(id)) label->add_display_rgb(channel);
  }
}

grpc::Status SegmentationService::ListModels(grpc::ServerContext* context, const tuckerseg::v1::ListModelsRequest*,
                                             tuckerseg::v1::ListModelsResponse* response) {
  const auto catalog = state_.devices[0]->catalog.Get();
  for (const auto& m : catalog->models) {
    auto* summary = response->add_models();
    summary->set_name(m.name);
    for (const auto& v : m.variants) summary->add_variants(v.name);
    AddLabels(m.variants[0].info.labels, summary->mutable_labels());
  }
  for (const auto& c : catalog->composites) {
    auto* summary = response->add_models();
    summary->set_name(c.spec.name);
    for (const auto& v : CommonVariants(*catalog, c)) summary->add_variants(v);
    AddLabels(c.spec.labels, summary->mutable_labels());
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

grpc::Status SegmentationService::DescribeModel(grpc::ServerContext* context, const tuckerseg::v1::DescribeModelRequest* request,
                                                tuckerseg::v1::DescribeModelResponse* response) {
  const auto catalogs = state_.Catalogs();
  if (const CompositeEntry* composite = catalogs[0]->FindComposite(request->model())) {
    DescribeComposite(*catalogs[0], *composite, response);
  } else {
    const auto model = catalogs[0]->Find(request->model());
    if (!model.ok()) return ToGrpc(model.status());
    DescribeSingle(catalogs, *model.value(), response);
  }
  SetProfile(state_.devices[0]->profile, response->mutable_device());
  for (const auto& d : state_.devices) SetProfile(d->profile, response->add_devices());
  return grpc::Status::OK;
}

void SegmentationService::DescribeSingle(const std::vector<std::shared_ptr<const ModelCatalog>>& catalogs, const ModelEntry& m,
                                         tuckerseg::v1::DescribeModelResponse* response) const {
  const auto& info = m.variants[0].info;
  response->set_name(m.name);
  response->set_model_version(m.variants[0].weights_digest);
  for (auto p : info.patch_size) response->add_patch_size(p);
  for (auto s : info.spacing) response->add_spacing(s);
  AddLabels(info.labels, response->mutable_labels());
  for (size_t i = 0; i < m.variants.size(); ++i) {
    const VariantEntry& v = m.variants[i];
    auto* out = response->add_variants();
    out->set_name(v.name);
    out->set_weights_digest(v.weights_digest);
    out->set_precision(v.precision);
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
  for (const auto& [name, why] : m.unavailable) {
    auto* out = response->add_variants();
    out->set_name(name);
    out->set_selectable(false);
    out->set_not_selectable_reason("unavailable: " + why);
  }
}

// A composite on the first device, variant by variant over the variants every part has: its
// parameters, MACs and seconds per tile summed over the parts, its quality the lowest part's,
// selectable where every part's is. Each part is also described under its own name.
void SegmentationService::DescribeComposite(const ModelCatalog& catalog, const CompositeEntry& c,
                                            tuckerseg::v1::DescribeModelResponse* response) const {
  response->set_name(c.spec.name);
  std::string version;
  for (size_t i = 0; i < c.part_models.size(); ++i) {
    version += (version.empty() ? "" : ",") + c.spec.parts[i] + ":" + catalog.Find(c.part_models[i]).value()->variants[0].weights_digest;
  }
  response->set_model_version(version);
  AddLabels(c.spec.labels, response->mutable_labels());
  const std::string device = state_.devices[0]->profile.Label();
  for (const auto& name : CommonVariants(catalog, c)) {
    auto* out = response->add_variants();
    out->set_name(name);
    double seconds = 0, quality = 1;
    bool quality_known = true, selectable = catalog.calibrated;
    std::string reason = catalog.calibrated ? "" : "calibration is still running";
    for (const auto& part : c.part_models) {
      const VariantEntry& v = *catalog.Find(part).value()->Find(name);
      out->set_parameters(out->parameters() + v.parameters);
      out->set_macs_per_tile(out->macs_per_tile() + v.macs_per_tile);
      seconds += v.seconds_per_tile;
      quality_known = quality_known && v.quality.has_value();
      quality = std::min(quality, v.quality.value_or(0));
      if (catalog.calibrated && !v.selectable && selectable) selectable = false, reason = part + ": " + v.not_selectable_reason;
    }
    out->set_quality_known(quality_known);
    out->set_quality(quality_known ? quality : 0);
    out->set_calibrated_seconds_per_tile(seconds);
    out->set_selectable(selectable);
    out->set_not_selectable_reason(reason);
    auto* figures = out->add_devices();
    figures->set_device(device);
    figures->set_calibrated_seconds_per_tile(seconds);
    figures->set_selectable(selectable);
    figures->set_not_selectable_reason(reason);
  }
}

}  // namespace tucker_seg::server
