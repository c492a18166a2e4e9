#include "model_store/import/nnunet_import.h"
#include "model_store/format/bounded_json.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "model_store/import/torch_checkpoint.h"
#include "model_store/network/network.h"

namespace tucker_seg {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

Result<json> ReadJson(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return NotFound(path.string() + " does not exist");
  return ParseBoundedJson(in, path.string());
}

// nnU-Net configurations may inherit from another ("inherits_from"); resolve the chain.
Result<json> ResolveConfiguration(const json& plans, const std::string& name, int depth = 0) {
  if (!plans.contains("configurations") || !plans["configurations"].contains(name)) {
    std::string known;
    if (plans.contains("configurations"))
      for (const auto& [k, _] : plans["configurations"].items()) known += (known.empty() ? "" : ", ") + k;
    return NotFound("plans.json has no configuration '" + name + "' (it has: " + known + ")");
  }
  json cfg = plans["configurations"][name];
  if (cfg.contains("inherits_from") && depth < 8) {
    auto parent = ResolveConfiguration(plans, cfg["inherits_from"].get<std::string>(), depth + 1);
    if (!parent.ok()) return parent.status();
    json merged = parent.value();
    merged.update(cfg);
    return merged;
  }
  return cfg;
}

Result<std::vector<std::pair<int64_t, std::string>>> Labels(const json& dataset) {
  if (!dataset.contains("labels") || !dataset["labels"].is_object()) return InvalidArgument("dataset.json has no 'labels' object");
  std::vector<std::pair<int64_t, std::string>> labels;
  for (const auto& [name, id] : dataset["labels"].items()) {
    if (!id.is_number_integer()) {
      return Unimplemented("dataset.json label '" + name + "' is a region (list of labels); region-based models are not supported");
    }
    labels.emplace_back(id.get<int64_t>(), name);
  }
  std::sort(labels.begin(), labels.end());
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i].first != static_cast<int64_t>(i)) {
      return InvalidArgument("dataset.json labels must be 0..N-1 without gaps; id " + std::to_string(i) + " is missing");
    }
  }
  return labels;
}

Result<std::vector<ChannelNormalization>> Channels(const json& dataset, const json& plans, const json& cfg) {
  const json names = dataset.contains("channel_names") ? dataset["channel_names"] : dataset.value("modality", json::object());
  if (!names.is_object() || names.empty()) return InvalidArgument("dataset.json has no 'channel_names'");
  const json schemes = cfg.value("normalization_schemes", json::array());
  const json masks = cfg.value("use_mask_for_norm", json::array());
  const json props = plans.contains("foreground_intensity_properties_per_channel")
                         ? plans["foreground_intensity_properties_per_channel"]
                         : plans.value("foreground_intensity_properties_by_modality", json::object());
  std::vector<ChannelNormalization> out;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string key = std::to_string(i);
    if (!names.contains(key)) return InvalidArgument("dataset.json channel_names has no channel '" + key + "'");
    if (i >= schemes.size()) return InvalidArgument("plans.json normalization_schemes has no entry for channel " + key);
    ChannelNormalization c;
    c.name = names[key].get<std::string>();
    c.scheme = schemes[i].get<std::string>();
    c.use_mask_for_norm = i < masks.size() && masks[i].get<bool>();
    if (props.contains(key)) {
      const auto& p = props[key];
      c.intensity = {p.value("mean", 0.0), p.value("std", 1.0), p.value("median", 0.0), p.value("min", 0.0),
                     p.value("max", 0.0), p.value("percentile_00_5", 0.0), p.value("percentile_99_5", 0.0)};
    } else if (c.scheme == "CTNormalization") {
      return InvalidArgument("plans.json has no foreground intensity properties for CT channel " + key);
    }
    out.push_back(c);
  }
  return out;
}

// Keeps one name per tensor: the one the network expects. Other names of the same tensor
// are aliases (nnU-Net's all_modules.N and decoder.encoder.*); a tensor none of whose names
// the network expects is an error.
Result<WeightMap> DeAlias(const std::vector<CheckpointTensor>& tensors, const UNetConfig& config, int* aliases) {
  std::set<std::string> expected;
  for (const auto& s : PlainConvUNet::StateDictSpec(config)) expected.insert(s.key);
  std::map<std::string, std::vector<const CheckpointTensor*>> by_identity;
  for (const auto& t : tensors) by_identity[t.identity].push_back(&t);
  WeightMap out;
  *aliases = 0;
  for (const auto& [identity, group] : by_identity) {
    const CheckpointTensor* keep = nullptr;
    for (const auto* t : group)
      if (expected.count(t->name)) keep = keep ? keep : t;
    if (!keep) return InvalidArgument("unexpected tensor '" + group.front()->name + "' in network_weights: PlainConvUNet has no such parameter");
    out.emplace(keep->name, keep->tensor);
    *aliases += static_cast<int>(group.size()) - 1;
  }
  return out;
}

}  // namespace

Result<Model> ImportNnUNet(const NnUNetImportOptions& opt) {
  const fs::path dir(opt.results_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFound("results folder '" + opt.results_dir + "' does not exist");
  if (opt.checkpoint != "final" && opt.checkpoint != "best") return InvalidArgument("checkpoint must be 'final' or 'best'");

  auto plans = ReadJson(dir / "plans.json");
  if (!plans.ok()) return plans.status();
  auto dataset = ReadJson(dir / "dataset.json");
  if (!dataset.ok()) return dataset.status();

  std::string configuration = opt.configuration;
  if (configuration.empty()) {
    const std::string folder = dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string();
    const auto pos = folder.rfind("__");
    if (pos == std::string::npos) return InvalidArgument("cannot tell the configuration from folder '" + folder + "'; name the configuration");
    configuration = folder.substr(pos + 2);
  }
  auto cfg = ResolveConfiguration(plans.value(), configuration);
  if (!cfg.ok()) return cfg.status();

  auto labels = Labels(dataset.value());
  if (!labels.ok()) return labels.status();
  auto channels = Channels(dataset.value(), plans.value(), cfg.value());
  if (!channels.ok()) return channels.status();
  auto net = UNetConfigFromPlans(cfg.value(), static_cast<int64_t>(channels.value().size()),
                                 static_cast<int64_t>(labels.value().size()));
  if (!net.ok()) return Status(net.status().code(), "plans.json configuration '" + configuration + "': " + net.status().message());

  Model model;
  ModelInfo& info = model.info;
  info.name = opt.name;
  info.network = net.value();
  info.labels = labels.value();
  info.channels = channels.value();
  try {
    const json& c = cfg.value();
    auto patch = ParseInt3(c.at("patch_size"), "plans.json patch_size");
    if (!patch.ok()) return patch.status();
    info.patch_size = patch.value();
    info.spacing = c.at("spacing").get<Zyx<double>>();
    info.transpose_forward = plans.value().at("transpose_forward").get<std::array<int, 3>>();
    info.transpose_backward = plans.value().at("transpose_backward").get<std::array<int, 3>>();
    for (const char* key : {"resampling_fn_data_kwargs", "resampling_fn_seg_kwargs", "resampling_fn_probabilities_kwargs"})
      if (c.contains(key)) info.resampling[key] = c[key];
  } catch (const json::exception& e) {
    return InvalidArgument(std::string("plans.json: ") + e.what());
  }
  TS_RETURN_IF_ERROR(info.network.ValidatePatch(info.patch_size));

  const fs::path ckpt = dir / ("fold_" + opt.fold) / ("checkpoint_" + opt.checkpoint + ".pth");
  auto tensors = ReadCheckpointStateDict(ckpt.string());
  if (!tensors.ok()) return tensors.status();
  int aliases = 0;
  auto weights = DeAlias(tensors.value(), info.network, &aliases);
  if (!weights.ok()) return Status(weights.status().code(), ckpt.string() + ": " + weights.status().message());
  auto check = PlainConvUNet::Create(info.network, weights.value());
  if (!check.ok()) return Status(check.status().code(), ckpt.string() + ": " + check.status().message());
  model.weights = std::move(weights).value();

  info.provenance = {{"source", "nnU-Net v2"},
                     {"dataset", plans.value().value("dataset_name", std::string())},
                     {"plans", plans.value().value("plans_name", std::string())},
                     {"configuration", configuration},
                     {"fold", opt.fold},
                     {"checkpoint", ckpt.filename().string()},
                     {"state_dict_tensors", tensors.value().size()},
                     {"aliases", aliases}};
  return model;
}

}  // namespace tucker_seg
