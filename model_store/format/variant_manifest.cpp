#include "model_store/format/variant_manifest.h"
#include "model_store/format/bounded_json.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "vocabulary/atomic_file.h"
#include "model_store/format/unet_config.h"

namespace tucker_seg {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr char kManifestFile[] = "manifest.json";
// Input channels of one int8 layer at most (nnU-Net stages stop at 320; concatenations double it).
constexpr size_t kMaxChannels = 4096;

// Keys of the compression record; any other object holding "cases" is an evaluation.
const char* const kAdaptationKeys[] = {"finetuned", "distilled"};

json PerLabel(const std::map<int64_t, double>& values) {
  json out = json::object();
  for (const auto& [id, v] : values) out[std::to_string(id)] = v;
  return out;
}

std::map<int64_t, double> PerLabelFrom(const json& j) {
  std::map<int64_t, double> out;
  for (const auto& [key, v] : j.items()) out[std::stoll(key)] = v.get<double>();
  return out;
}

json ToJson(const LayerCompression& l) {
  json j = {{"name", l.name}, {"op", l.op}, {"in_channels", l.in_channels}, {"out_channels", l.out_channels},
            {"kernel", std::array<int64_t, 3>(l.kernel)}, {"rank_in", l.rank_in}, {"rank_out", l.rank_out},
            {"factorized", l.factorized}, {"relative_error", l.relative_error},
            {"parameters", l.parameters}, {"macs", l.macs}};
  if (l.factorized) {
    j["hosvd_relative_error"] = l.hosvd_relative_error;
    j["hooi_iterations"] = l.hooi_iterations;
  } else {
    j["skipped_reason"] = l.skipped_reason;
  }
  return j;
}

LayerCompression LayerFromJson(const json& j) {
  LayerCompression l;
  l.name = j.at("name").get<std::string>();
  l.op = j.at("op").get<std::string>();
  l.in_channels = j.at("in_channels").get<int64_t>();
  l.out_channels = j.at("out_channels").get<int64_t>();
  const auto kernel = j.at("kernel").get<std::array<int64_t, 3>>();
  l.kernel = Int3{kernel};
  l.rank_in = j.at("rank_in").get<int64_t>();
  l.rank_out = j.at("rank_out").get<int64_t>();
  l.factorized = j.at("factorized").get<bool>();
  l.relative_error = j.value("relative_error", 0.0);
  l.hosvd_relative_error = j.value("hosvd_relative_error", 0.0);
  l.hooi_iterations = j.value("hooi_iterations", 0);
  l.skipped_reason = j.value("skipped_reason", "");
  l.parameters = j.value("parameters", int64_t{0});
  l.macs = j.value("macs", int64_t{0});
  return l;
}

}  // namespace

std::optional<double> Evaluation::MeanAgreement() const {
  double sum = 0;
  int n = 0;
  for (const auto& c : cases)
    if (c.agreement_dice) sum += *c.agreement_dice, ++n;
  if (n == 0) return std::nullopt;
  return sum / n;
}

std::optional<double> VariantManifest::Quality() const {
  const auto it = evaluations.find(kServingEvaluation);
  if (it == evaluations.end()) return std::nullopt;
  return it->second.MeanAgreement();
}

json ToJson(const Evaluation& e) {
  json cases = json::array();
  for (const auto& c : e.cases) {
    json entry = {{"image", c.image}, {"labels", c.labels}, {"dice", PerLabel(c.dice)}, {"mean_dice", c.mean_dice}};
    if (c.agreement_dice) {
      entry["agreement_dice"] = *c.agreement_dice;
      entry["agreement"] = PerLabel(c.agreement);
    }
    cases.push_back(entry);
  }
  return {{"step", e.step}, {"cases", cases}};
}

Result<Evaluation> EvaluationFromJson(const json& j) {
  try {
    Evaluation e;
    e.step = j.value("step", 0.5);
    for (const auto& c : j.at("cases")) {
      EvaluationCase ec;
      ec.image = c.value("image", "");
      ec.labels = c.value("labels", "");
      if (c.contains("dice")) ec.dice = PerLabelFrom(c.at("dice"));
      ec.mean_dice = c.value("mean_dice", 0.0);
      if (c.contains("agreement_dice") && c.at("agreement_dice").is_number()) ec.agreement_dice = c.at("agreement_dice").get<double>();
      if (c.contains("agreement")) ec.agreement = PerLabelFrom(c.at("agreement"));
      e.cases.push_back(std::move(ec));
    }
    return e;
  } catch (const std::exception& ex) {
    return InvalidArgument(std::string("evaluation: ") + ex.what());
  }
}

VariantManifest Int8VariantManifest(VariantManifest source, Int8Calibration calibration) {
  source.method["quantization"] = "int8 static post-training: per-output-channel symmetric weights, per-tensor activations";
  source.variant += "-int8";
  source.precision = "int8";
  source.int8 = std::move(calibration);
  source.evaluations.clear();
  return source;
}

json ToJson(const VariantManifest& m) {
  json layers = json::array();
  for (const auto& l : m.layers) layers.push_back(ToJson(l));
  json j = {{"variant", m.variant},
            {"model", m.model},
            {"method", m.method},
            {"patch_size", std::array<int64_t, 3>(m.patch_size)},
            {"parameters", m.parameters},
            {"macs", m.macs},
            {"original_parameters", m.original_parameters},
            {"original_macs", m.original_macs},
            {"parameters_removed_fraction", m.parameters_removed_fraction},
            {"mac_ratio", m.mac_ratio},
            {"layers", layers}};
  for (const auto& [key, record] : m.adaptations) j[key] = record;
  for (const auto& [tag, evaluation] : m.evaluations) j[tag] = ToJson(evaluation);
  if (m.precision != "float32") j["precision"] = m.precision;  // absent: float32, as every manifest before int8
  if (m.int8) {
    j["int8_calibration"] = {{"statistic", m.int8->statistic}, {"percentile", m.int8->percentile}, {"images", m.int8->images},
                             {"tiles", m.int8->tiles},         {"input_bounds", m.int8->input_bounds}};
  }
  return j;
}

Result<VariantManifest> VariantManifestFromJson(const json& j) {
  if (!j.is_object()) return InvalidArgument("a variant manifest must be a JSON object");
  VariantManifest m;
  try {
    m.variant = j.at("variant").get<std::string>();
    m.model = j.at("model").get<std::string>();
    m.method = j.value("method", json::object());
    TS_ASSIGN_OR_RETURN(m.patch_size, ParseInt3(j.at("patch_size"), "patch_size"));
    m.parameters = j.at("parameters").get<int64_t>();
    m.macs = j.at("macs").get<int64_t>();
    m.original_parameters = j.at("original_parameters").get<int64_t>();
    m.original_macs = j.at("original_macs").get<int64_t>();
    m.parameters_removed_fraction = j.at("parameters_removed_fraction").get<double>();
    m.mac_ratio = j.at("mac_ratio").get<double>();
    for (const auto& layer : j.at("layers")) m.layers.push_back(LayerFromJson(layer));
    for (const char* key : kAdaptationKeys)
      if (j.contains(key)) m.adaptations[key] = j.at(key);
    m.precision = j.value("precision", std::string("float32"));
    if (m.precision != "float32" && m.precision != "int8") return InvalidArgument("variant manifest: precision must be float32 or int8, not '" + m.precision + "'");
    if (m.precision == "int8") {
      const json& c = j.at("int8_calibration");
      Int8Calibration calibration;
      calibration.statistic = c.at("statistic").get<std::string>();
      calibration.percentile = c.at("percentile").get<double>();
      calibration.images = c.at("images").get<std::vector<std::string>>();
      calibration.tiles = c.at("tiles").get<int64_t>();
      for (const auto& [layer, bounds] : c.at("input_bounds").items()) {
        if (!bounds.is_array() || bounds.empty() || bounds.size() > kMaxChannels) {
          return InvalidArgument("variant manifest: int8_calibration.input_bounds." + layer + " must hold 1 to " +
                                 std::to_string(kMaxChannels) + " bounds");
        }
        std::vector<float>& values = calibration.input_bounds[layer];
        for (const auto& b : bounds) {
          const double v = b.get<double>();
          if (!std::isfinite(v) || v < 0 || v > 1e30) return InvalidArgument("variant manifest: int8_calibration.input_bounds." + layer + " holds " + b.dump() + " (finite, >= 0)");
          values.push_back(static_cast<float>(v));
        }
      }
      m.int8 = std::move(calibration);
    }
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("variant manifest: ") + e.what());
  }
  for (const auto& [key, value] : j.items()) {
    if (!value.is_object() || !value.contains("cases") || m.adaptations.count(key)) continue;
    auto evaluation = EvaluationFromJson(value);
    if (!evaluation.ok()) return Annotate(evaluation.status(), "variant manifest: " + key);
    m.evaluations[key] = std::move(evaluation).value();
  }
  return m;
}

Result<VariantManifest> ReadVariantManifest(const std::string& dir) {
  const fs::path path = fs::path(dir) / kManifestFile;
  std::ifstream in(path);
  if (!in) return NotFound(path.string() + " is missing");
  TS_ASSIGN_OR_RETURN(const json j, ParseBoundedJson(in, path.string()));
  auto m = VariantManifestFromJson(j);
  if (!m.ok()) return Annotate(m.status(), path.string());
  return m;
}

Status WriteVariantManifest(const VariantManifest& manifest, const std::string& dir) {
  return WriteFileAtomically((fs::path(dir) / kManifestFile).string(), ToJson(manifest).dump(2) + "\n");
}

}  // namespace tucker_seg
