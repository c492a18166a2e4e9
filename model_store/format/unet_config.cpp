#include "model_store/format/unet_config.h"

#include <algorithm>

namespace tucker_seg {
namespace {

using nlohmann::json;

std::string Last(const std::string& dotted) { return dotted.substr(dotted.rfind('.') + 1); }

Result<std::vector<int64_t>> IntList(const json& j, const std::string& field) {
  if (!j.is_array()) return InvalidArgument(field + " must be a list of integers");
  std::vector<int64_t> out;
  for (const auto& v : j) {
    if (!v.is_number_integer()) return InvalidArgument(field + " must be a list of integers");
    out.push_back(v.get<int64_t>());
  }
  return out;
}

Result<std::vector<Int3>> Int3List(const json& j, const std::string& field) {
  if (!j.is_array()) return InvalidArgument(field + " must be a list of [z, y, x] triples");
  std::vector<Int3> out;
  for (size_t i = 0; i < j.size(); ++i) {
    auto v = ParseInt3(j[i], field + "[" + std::to_string(i) + "]");
    if (!v.ok()) return v.status();
    out.push_back(v.value());
  }
  return out;
}

// Reads `key` of `obj` with `read`, or fails naming it.
template <typename F>
auto Field(const json& obj, const std::string& key, const std::string& where, F read) -> decltype(read(obj, key)) {
  if (!obj.contains(key)) return InvalidArgument(where + "." + key + " is missing");
  return read(obj.at(key), where + "." + key);
}

Status CheckOps(const json& kw, const std::string& where, UNetConfig* c) {
  auto op_name = [&](const char* key) -> std::string {
    return kw.contains(key) && kw.at(key).is_string() ? kw.at(key).get<std::string>() : std::string();
  };
  const std::string conv = op_name("conv_op");
  if (!conv.empty() && Last(conv) != "Conv3d") {
    return Unimplemented(where + ".conv_op '" + conv + "' is not supported (only torch.nn.Conv3d)");
  }
  const std::string norm = op_name("norm_op");
  if (!norm.empty() && Last(norm) != "InstanceNorm3d") {
    return Unimplemented(where + ".norm_op '" + norm + "' is not supported (only torch.nn.InstanceNorm3d)");
  }
  const std::string nonlin = op_name("nonlin");
  if (!nonlin.empty() && Last(nonlin) != "LeakyReLU" && Last(nonlin) != "ReLU") {
    return Unimplemented(where + ".nonlin '" + nonlin + "' is not supported (LeakyReLU or ReLU)");
  }
  // Dropout is the identity at inference; any dropout op is accepted and ignored.
  if (Last(nonlin) == "ReLU") c->negative_slope = 0.0;
  if (kw.contains("nonlin_kwargs") && kw["nonlin_kwargs"].is_object() && kw["nonlin_kwargs"].contains("negative_slope")) {
    c->negative_slope = kw["nonlin_kwargs"]["negative_slope"].get<double>();
  }
  if (kw.contains("norm_op_kwargs") && kw["norm_op_kwargs"].is_object()) {
    const auto& n = kw["norm_op_kwargs"];
    if (n.contains("eps")) c->norm_eps = n["eps"].get<double>();
    if (n.contains("affine")) c->norm_affine = n["affine"].get<bool>();
  }
  if (kw.contains("conv_bias")) c->conv_bias = kw["conv_bias"].get<bool>();
  return Status::Ok();
}

}  // namespace

Result<Int3> ParseInt3(const json& j, const std::string& field) {
  if (!j.is_array() || j.size() != 3) return InvalidArgument(field + " must be [z, y, x]");
  Int3 v{};
  for (size_t i = 0; i < 3; ++i) {
    if (!j[i].is_number_integer()) return InvalidArgument(field + " must hold integers");
    v[i] = j[i].get<int64_t>();
  }
  return v;
}

std::string ToString(const Int3& v, char sep) {
  return std::to_string(v[0]) + sep + std::to_string(v[1]) + sep + std::to_string(v[2]);
}

Int3 UNetConfig::TotalStride() const {
  Int3 total{1, 1, 1};
  for (const auto& s : strides)
    for (int a = 0; a < 3; ++a) total[a] *= s[a];
  return total;
}

Status UNetConfig::Validate() const {
  const size_t n = features_per_stage.size();
  if (n < 1 || n > 12) return InvalidArgument("n_stages is " + std::to_string(n) + ", must be 1..12");
  if (kernel_sizes.size() != n) return InvalidArgument("kernel_sizes has " + std::to_string(kernel_sizes.size()) + " entries, n_stages is " + std::to_string(n));
  if (strides.size() != n) return InvalidArgument("strides has " + std::to_string(strides.size()) + " entries, n_stages is " + std::to_string(n));
  if (n_conv_per_stage.size() != n) return InvalidArgument("n_conv_per_stage has " + std::to_string(n_conv_per_stage.size()) + " entries, n_stages is " + std::to_string(n));
  if (n_conv_per_stage_decoder.size() != n - 1) return InvalidArgument("n_conv_per_stage_decoder has " + std::to_string(n_conv_per_stage_decoder.size()) + " entries, must be n_stages - 1 = " + std::to_string(n - 1));
  if (!(negative_slope >= 0.0 && negative_slope <= 1.0)) return InvalidArgument("nonlin negative_slope must be 0..1");
  if (!(norm_eps > 0.0)) return InvalidArgument("norm eps must be > 0");
  if (input_channels < 1 || input_channels > 64) return InvalidArgument("input_channels must be 1..64");
  if (num_classes < 1 || num_classes > 1024) return InvalidArgument("num_classes must be 1..1024");
  for (size_t s = 0; s < n; ++s) {
    const std::string at = "[" + std::to_string(s) + "]";
    if (features_per_stage[s] < 1 || features_per_stage[s] > 4096) return InvalidArgument("features_per_stage" + at + " must be 1..4096");
    if (n_conv_per_stage[s] < 1 || n_conv_per_stage[s] > 16) return InvalidArgument("n_conv_per_stage" + at + " must be 1..16");
    if (s + 1 < n && (n_conv_per_stage_decoder[s] < 1 || n_conv_per_stage_decoder[s] > 16)) return InvalidArgument("n_conv_per_stage_decoder" + at + " must be 1..16");
    for (int a = 0; a < 3; ++a) {
      if (kernel_sizes[s][a] < 1 || kernel_sizes[s][a] > 15 || kernel_sizes[s][a] % 2 == 0) return InvalidArgument("kernel_sizes" + at + " must be odd, 1..15");
      if (strides[s][a] < 1 || strides[s][a] > 8) return InvalidArgument("strides" + at + " must be 1..8");
    }
  }
  return Status::Ok();
}

Status UNetConfig::ValidatePatch(const Int3& patch) const {
  const Int3 total = TotalStride();
  for (int a = 0; a < 3; ++a) {
    if (patch[a] < 1 || patch[a] > 4096) return InvalidArgument("patch size " + ToString(patch) + " must be 1..4096 per axis");
    if (patch[a] % total[a] != 0) {
      return InvalidArgument("patch size " + ToString(patch) + " is not divisible by the network's total stride " + ToString(total));
    }
  }
  return Status::Ok();
}

Result<UNetConfig> UNetConfigFromPlans(const json& cfg, int64_t input_channels, int64_t num_classes) {
  UNetConfig c;
  c.input_channels = input_channels;
  c.num_classes = num_classes;
  try {
    if (cfg.contains("architecture")) {  // nnU-Net >= 2.3
      const auto& arch = cfg["architecture"];
      const std::string cls = arch.value("network_class_name", std::string());
      if (Last(cls) != "PlainConvUNet") {
        return Unimplemented("network class '" + cls + "' is not supported (only PlainConvUNet)");
      }
      const std::string where = "architecture.arch_kwargs";
      if (!arch.contains("arch_kwargs")) return InvalidArgument(where + " is missing");
      const auto& kw = arch["arch_kwargs"];
      auto features = Field(kw, "features_per_stage", where, IntList);
      auto kernels = Field(kw, "kernel_sizes", where, Int3List);
      auto strides = Field(kw, "strides", where, Int3List);
      auto n_conv = Field(kw, "n_conv_per_stage", where, IntList);
      auto n_conv_dec = Field(kw, "n_conv_per_stage_decoder", where, IntList);
      for (const Status& st : {features.status(), kernels.status(), strides.status(), n_conv.status(), n_conv_dec.status()}) {
        if (!st.ok()) return st;
      }
      c.features_per_stage = features.value();
      c.kernel_sizes = kernels.value();
      c.strides = strides.value();
      c.n_conv_per_stage = n_conv.value();
      c.n_conv_per_stage_decoder = n_conv_dec.value();
      if (kw.contains("n_stages") && kw["n_stages"].get<int64_t>() != c.n_stages()) {
        return InvalidArgument(where + ".n_stages disagrees with features_per_stage");
      }
      TS_RETURN_IF_ERROR(CheckOps(kw, where, &c));
    } else if (cfg.contains("UNet_class_name")) {  // nnU-Net 2.0 .. 2.2 (TotalSegmentator)
      const std::string cls = cfg["UNet_class_name"].get<std::string>();
      if (cls != "PlainConvUNet") return Unimplemented("network class '" + cls + "' is not supported (only PlainConvUNet)");
      auto kernels = Field(cfg, "conv_kernel_sizes", "configuration", Int3List);
      auto strides = Field(cfg, "pool_op_kernel_sizes", "configuration", Int3List);
      auto n_conv = Field(cfg, "n_conv_per_stage_encoder", "configuration", IntList);
      auto n_conv_dec = Field(cfg, "n_conv_per_stage_decoder", "configuration", IntList);
      for (const Status& st : {kernels.status(), strides.status(), n_conv.status(), n_conv_dec.status()}) {
        if (!st.ok()) return st;
      }
      const int64_t base = cfg.at("UNet_base_num_features").get<int64_t>();
      const int64_t max_features = cfg.at("unet_max_num_features").get<int64_t>();
      c.kernel_sizes = kernels.value();
      c.strides = strides.value();
      c.n_conv_per_stage = n_conv.value();
      c.n_conv_per_stage_decoder = n_conv_dec.value();
      for (size_t s = 0; s < c.kernel_sizes.size(); ++s) {
        c.features_per_stage.push_back(std::min(base << std::min<size_t>(s, 30), max_features));
      }
    } else {
      return InvalidArgument("configuration has neither 'architecture' nor 'UNet_class_name'");
    }
  } catch (const json::exception& e) {
    return InvalidArgument(std::string("plans.json architecture: ") + e.what());
  }
  TS_RETURN_IF_ERROR(c.Validate());
  return c;
}

json ToJson(const UNetConfig& c) {
  json kernels = json::array(), strides = json::array();
  for (const auto& k : c.kernel_sizes) kernels.push_back(k);
  for (const auto& s : c.strides) strides.push_back(s);
  return {{"network", "PlainConvUNet"},
          {"input_channels", c.input_channels},
          {"num_classes", c.num_classes},
          {"features_per_stage", c.features_per_stage},
          {"kernel_sizes", kernels},
          {"strides", strides},
          {"n_conv_per_stage", c.n_conv_per_stage},
          {"n_conv_per_stage_decoder", c.n_conv_per_stage_decoder},
          {"conv_bias", c.conv_bias},
          {"norm", {{"op", "InstanceNorm3d"}, {"eps", c.norm_eps}, {"affine", c.norm_affine}}},
          {"nonlin", {{"op", "LeakyReLU"}, {"negative_slope", c.negative_slope}}}};
}

Result<UNetConfig> UNetConfigFromJson(const json& j) {
  UNetConfig c;
  try {
    if (j.value("network", std::string()) != "PlainConvUNet") {
      return Unimplemented("architecture.network '" + j.value("network", std::string()) + "' is not supported (only PlainConvUNet)");
    }
    c.input_channels = j.at("input_channels").get<int64_t>();
    c.num_classes = j.at("num_classes").get<int64_t>();
    c.features_per_stage = j.at("features_per_stage").get<std::vector<int64_t>>();
    auto kernels = Int3List(j.at("kernel_sizes"), "architecture.kernel_sizes");
    auto strides = Int3List(j.at("strides"), "architecture.strides");
    if (!kernels.ok()) return kernels.status();
    if (!strides.ok()) return strides.status();
    c.kernel_sizes = kernels.value();
    c.strides = strides.value();
    c.n_conv_per_stage = j.at("n_conv_per_stage").get<std::vector<int64_t>>();
    c.n_conv_per_stage_decoder = j.at("n_conv_per_stage_decoder").get<std::vector<int64_t>>();
    c.conv_bias = j.at("conv_bias").get<bool>();
    c.norm_eps = j.at("norm").at("eps").get<double>();
    c.norm_affine = j.at("norm").at("affine").get<bool>();
    c.negative_slope = j.at("nonlin").at("negative_slope").get<double>();
  } catch (const json::exception& e) {
    return InvalidArgument(std::string("architecture: ") + e.what());
  }
  TS_RETURN_IF_ERROR(c.Validate());
  return c;
}

}  // namespace tucker_seg
