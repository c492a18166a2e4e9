#include "server/serving/model_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include <torch/utils.h>

#include "model_store/inference/predictor.h"
#include "model_store/network/loaded_model.h"

namespace tucker_seg::server {
namespace fs = std::filesystem;
namespace {

std::string Format(const char* fmt, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, fmt, value);
  return buffer;
}

Result<VariantEntry> LoadVariant(const std::string& name, const fs::path& dir) {
  auto loaded = LoadNetwork(dir.string());
  if (!loaded.ok()) return Annotate(loaded.status(), dir.string());
  VariantEntry v;
  v.name = name;
  v.dir = dir.string();
  v.info = loaded.value().info;
  TS_ASSIGN_OR_RETURN(v.weights_digest, WeightsDigest(dir.string()));
  const PlainConvUNet& net = loaded.value().network;
  v.parameters = net.NumParameters();
  for (const auto& layer : net.Cost(v.info.patch_size)) v.macs_per_tile += layer.macs;
  v.executor = loaded.value().Executor();
  if (name == "original") {
    v.quality = 1.0;
    return v;
  }
  if (const auto& manifest = loaded.value().manifest) {
    v.quality = manifest->Quality();
    v.precision = manifest->precision;
  }
  return v;
}

Result<ModelEntry> LoadModelFolder(const fs::path& dir) {
  ModelEntry model;
  auto original = LoadVariant("original", dir);
  if (!original.ok()) return original.status();
  model.name = original.value().info.name.empty() ? dir.filename().string() : original.value().info.name;
  model.variants.push_back(std::move(original.value()));
  std::vector<fs::path> variant_dirs;
  if (fs::is_directory(dir / "variants")) {
    for (const auto& e : fs::directory_iterator(dir / "variants"))
      if (fs::exists(e.path() / "model.json")) variant_dirs.push_back(e.path());
  }
  std::sort(variant_dirs.begin(), variant_dirs.end());
  // One broken variant (truncated weights, a bad manifest) must not take the others down.
  for (const auto& vdir : variant_dirs) {
    const std::string name = vdir.filename().string();
    auto v = LoadVariant(name, vdir);
    if (!v.ok()) {
      model.unavailable.emplace_back(name, v.status().message());
    } else if (v.value().info.labels != model.variants[0].info.labels) {
      model.unavailable.emplace_back(name, vdir.string() + ": its labels differ from the original's");
    } else {
      model.variants.push_back(std::move(v.value()));
    }
  }
  return model;
}

}  // namespace

const VariantEntry* ModelEntry::Find(const std::string& variant) const {
  for (const auto& v : variants)
    if (v.name == variant) return &v;
  return nullptr;
}

std::string ModelEntry::VariantNames() const {
  std::string names;
  for (const auto& v : variants) names += (names.empty() ? "" : ", ") + v.name;
  return names;
}

Result<const ModelEntry*> ModelCatalog::Find(const std::string& name) const {
  std::string names;
  for (const auto& m : models) {
    if (m.name == name || (name.empty() && models.size() == 1)) return &m;
    names += (names.empty() ? "" : ", ") + m.name;
  }
  if (name.empty()) return InvalidArgument("header.model is empty and this server hosts several models: " + names);
  return NotFound("model '" + name + "' is not hosted here (have: " + names + ")");
}

const CompositeEntry* ModelCatalog::FindComposite(const std::string& name) const {
  for (const auto& c : composites)
    if (c.spec.name == name || (name.empty() && models.size() == c.part_models.size())) return &c;
  return nullptr;
}

std::shared_ptr<const ModelCatalog> CatalogSnapshot::Get() const {
  absl::MutexLock lock(&mutex_);
  return current_;
}

void CatalogSnapshot::Publish(std::shared_ptr<const ModelCatalog> catalog) {
  absl::MutexLock lock(&mutex_);
  current_ = std::move(catalog);
}

Result<ModelCatalog> LoadModelPool(const std::string& store) {
  const fs::path root(store);
  if (!fs::is_directory(root)) return NotFound("model store '" + store + "' is not a directory");
  const auto is_model = [](const fs::path& dir) { return fs::exists(dir / "model.json") || IsCompositeModel(dir.string()); };
  std::vector<fs::path> model_dirs;
  if (is_model(root)) {
    model_dirs.push_back(root);
  } else {
    for (const auto& e : fs::directory_iterator(root))
      if (e.is_directory() && is_model(e.path())) model_dirs.push_back(e.path());
  }
  std::sort(model_dirs.begin(), model_dirs.end());
  if (model_dirs.empty()) return NotFound("model store '" + store + "' holds no model folder (model.json or composite.json)");
  ModelCatalog catalog;
  const auto add = [&](ModelEntry m) -> Status {
    for (const auto& other : catalog.models)
      if (other.name == m.name) return InvalidArgument("two models are named '" + other.name + "' in " + store);
    catalog.models.push_back(std::move(m));
    return Status::Ok();
  };
  for (const auto& dir : model_dirs) {
    if (!IsCompositeModel(dir.string())) {
      auto m = LoadModelFolder(dir);
      if (!m.ok()) {
        catalog.unavailable_models.emplace_back(dir.string(), m.status().message());
        continue;
      }
      TS_RETURN_IF_ERROR(add(std::move(m.value())));
      continue;
    }
    auto spec = ReadCompositeModel(dir.string());
    if (!spec.ok()) return spec.status();
    CompositeEntry composite{spec.value(), {}};
    for (size_t p = 0; p < spec.value().parts.size(); ++p) {
      auto part = LoadModelFolder(spec.value().part_dirs[p]);
      if (!part.ok()) return part.status();
      part.value().name = spec.value().name + "/" + spec.value().parts[p];
      composite.part_models.push_back(part.value().name);
      TS_RETURN_IF_ERROR(add(std::move(part.value())));
    }
    catalog.composites.push_back(std::move(composite));
  }
  if (catalog.models.empty()) {
    return Annotate(Status(StatusCode::kDataLoss, catalog.unavailable_models[0].second), "no model of '" + store + "' could be loaded");
  }
  return catalog;
}

Result<ModelCatalog> PlaceOnDevice(const ModelCatalog& catalog, const torch::Device& device, torch::ScalarType dtype,
                                   const std::string& label) {
  ModelCatalog placed = catalog;
  for (auto& model : placed.models) {
    model.device = label;
    for (auto& v : model.variants) {
      const PlainConvUNet& network = v.executor->network();
      if (network.device() == device && network.dtype() == dtype) continue;
      if (v.precision == "int8") {  // its executor stays the CPU engine's, never used here
        v.cannot_run = "an int8 variant runs on the CPU engine only, not on " + device.str();
        continue;
      }
      TS_ASSIGN_OR_RETURN(PlainConvUNet moved,
                          StatusFromExceptions("placing " + model.name + "/" + v.name + " on " + device.str(),
                                               [&]() -> Result<PlainConvUNet> { return network.To(device, dtype); }));
      v.executor = MakeExecutor(moved);
    }
  }
  return placed;
}

Status Calibrate(ModelEntry* model, const CalibrationOptions& options) {
  using Clock = std::chrono::steady_clock;
  torch::NoGradGuard no_grad;
  for (auto& v : model->variants) {
    if (!v.cannot_run.empty()) continue;
    if (v.precision == "int8") {  // this CPU may lack the int8 kernels: the variant is not offered, the others are
      const Status served = v.executor->Serves(v.info.patch_size);
      if (!served.ok()) {
        v.cannot_run = served.message();
        continue;
      }
    }
    const auto& p = v.info.patch_size;
    const auto x = torch::randn({1, v.info.network.input_channels, p[0], p[1], p[2]})
                       .to(torch::TensorOptions().device(v.executor->network().device()).dtype(v.executor->network().dtype()));
    std::vector<double> times;
    for (int i = 0; i < options.warmup + std::max(1, options.repeats); ++i) {
      const auto start = Clock::now();
      const auto y = v.executor->Run(x);
      if (!y.ok()) return Annotate(y.status(), "calibrating " + model->name + "/" + v.name);
      // Reading one value back waits for a GPU to finish the tile (a no-op wait on the CPU).
      auto done = StatusFromExceptions("calibrating " + model->name + "/" + v.name,
                                       [&]() -> Result<double> { return y.value().flatten()[0].item<double>(); });
      if (!done.ok()) return done.status();
      if (i >= options.warmup) times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    std::sort(times.begin(), times.end());
    v.seconds_per_tile = times[times.size() / 2];
    // The fixed part: a CT of one tile at the model's spacing, predicted whole, less its tiles.
    CtVolume ct;
    ct.geometry.size = ToXyz(v.info.patch_size);
    ct.geometry.spacing = ToXyz(v.info.spacing);
    ct.voxels.assign(static_cast<size_t>(ct.geometry.NumVoxels()), 40.0f);
    const UNetPatchNetwork net(*v.executor);
    const auto start = Clock::now();
    const auto whole = Predict(v.info, net, ct, {});
    if (!whole.ok()) return Annotate(whole.status(), "calibrating " + model->name + "/" + v.name + " on a one-tile CT");
    const double tiles = static_cast<double>(EstimateTiles(v.info, ct.geometry));
    v.fixed_seconds = std::max(0.0, std::chrono::duration<double>(Clock::now() - start).count() - v.seconds_per_tile * tiles);
    if (v.executor->network().device().is_cuda() && options.memory_used) {
      if (const auto used = options.memory_used()) v.device_memory_bytes = *used;
    }
  }
  MarkDominatedVariants(model);
  return Status::Ok();
}

void MarkDominatedVariants(ModelEntry* model) {
  for (auto& v : model->variants) {
    v.selectable = true;
    v.not_selectable_reason.clear();
    if (!v.cannot_run.empty()) {
      v.selectable = false;
      v.not_selectable_reason = "cannot run on this device: " + v.cannot_run;
      continue;
    }
    if (!v.quality) {
      v.selectable = false;
      v.not_selectable_reason = "no agreement Dice in its manifest (run `tucker-seg-models evaluate`)";
      continue;
    }
    for (const auto& other : model->variants) {
      if (&other == &v || !other.quality || !other.cannot_run.empty()) continue;
      if (other.seconds_per_tile < v.seconds_per_tile && *other.quality > *v.quality) {
        v.selectable = false;
        v.not_selectable_reason = "slower (" + Format("%.4f", v.seconds_per_tile) + " s/tile) and less accurate (" +
                                  Format("%.3f", *v.quality) + ") than " + other.name + " (" +
                                  Format("%.4f", other.seconds_per_tile) + " s/tile, " + Format("%.3f", *other.quality) + ")";
        break;
      }
    }
  }
}

}  // namespace tucker_seg::server
