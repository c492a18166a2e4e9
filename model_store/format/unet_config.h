// The architecture of an nnU-Net PlainConvUNet, as nnU-Net's plans describe it.
#pragma once

#include <array>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vocabulary/status.h"
#include "vocabulary/volume.h"

namespace tucker_seg {


struct UNetConfig {
  int64_t input_channels = 1;
  int64_t num_classes = 2;  // network outputs, background included
  std::vector<int64_t> features_per_stage;
  std::vector<Int3> kernel_sizes;
  std::vector<Int3> strides;
  std::vector<int64_t> n_conv_per_stage;
  std::vector<int64_t> n_conv_per_stage_decoder;
  bool conv_bias = true;
  double norm_eps = 1e-5;
  bool norm_affine = true;
  double negative_slope = 0.01;  // LeakyReLU; 0 means ReLU

  int64_t n_stages() const { return static_cast<int64_t>(features_per_stage.size()); }
  // Total stride of the encoder per axis: patches must be divisible by it.
  Int3 TotalStride() const;
  // Checks internal consistency; names the offending field.
  Status Validate() const;
  // Checks that a patch size fits this network (positive, divisible by the total stride).
  Status ValidatePatch(const Int3& patch) const;
};

// Reads `configurations.<cfg>.architecture` of an nnU-Net v2 plans.json (the
// `network_class_name`/`arch_kwargs` form of nnU-Net >= 2.3, and the older
// `UNet_class_name`/`conv_kernel_sizes` form that TotalSegmentator's models use).
// Rejects other network classes and unsupported ops by name.
Result<UNetConfig> UNetConfigFromPlans(const nlohmann::json& configuration, int64_t input_channels,
                                       int64_t num_classes);

nlohmann::json ToJson(const UNetConfig& config);
Result<UNetConfig> UNetConfigFromJson(const nlohmann::json& j);

// JSON arrays [a, b, c] for the axis-ordered triples (found by nlohmann::json through ADL).
template <typename T>
void to_json(nlohmann::json& j, const Zyx<T>& v) {
  j = std::array<T, 3>(v);
}
template <typename T>
void from_json(const nlohmann::json& j, Zyx<T>& v) {
  v = Zyx<T>{j.get<std::array<T, 3>>()};
}

Result<Int3> ParseInt3(const nlohmann::json& j, const std::string& field);
std::string ToString(const Int3& v, char sep = 'x');

}  // namespace tucker_seg
