// nnU-Net's PlainConvUNet: its topology, its weights (LibTorch tensors) and its cost model.
// It runs nothing itself: an executor (executor.h) runs it on one backend.
//
//   encoder stage s:  n_conv x (conv -> InstanceNorm3d -> LeakyReLU), the first conv strided
//   decoder stage d:  transposed conv (kernel = stride) -> concat [up, skip] -> n_conv x (conv -> norm -> nonlin)
//   head:             1x1x1 conv of the last decoder stage (the other deep-supervision heads are loaded, unused)
//
// Weights are keyed by nnU-Net's own state_dict names, so a checkpoint maps onto it one to one.
#pragma once

#include <string>
#include <vector>

#include <torch/types.h>

#include "vocabulary/status.h"
#include "model_store/format/unet_config.h"
#include "model_store/format/weight_map.h"

namespace tucker_seg {

// A state_dict entry the network expects.
struct TensorSpec {
  std::string key;
  std::vector<int64_t> shape;
};

// Cost of one layer for a given input size.
struct LayerCost {
  std::string name;
  std::string op;
  int64_t rank_in = 0;   // Tucker ranks, 0 when the layer is dense
  int64_t rank_out = 0;
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  Int3 kernel{1, 1, 1};
  Int3 stride{1, 1, 1};
  Int3 output_size{0, 0, 0};
  int64_t parameters = 0;
  int64_t macs = 0;
  bool applied = true;  // false for the deep-supervision heads that inference skips
};

// A Conv3d or ConvTranspose3d with nnU-Net's padding rule.
struct ConvLayer {
  std::string name;  // state_dict prefix, e.g. "encoder.stages.0.0.convs.0.conv"
  bool transposed = false;
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  Int3 kernel{1, 1, 1};
  Int3 stride{1, 1, 1};
  Int3 padding{0, 0, 0};
  torch::Tensor weight;  // Conv3d: (out, in, kz, ky, kx); ConvTranspose3d: (in, out, kz, ky, kx)
  torch::Tensor bias;    // undefined when the layer has none
  // Tucker-2 factorized form, when set (weight is then undefined): a 1x1x1 conv C_in -> r_in,
  // the core conv r_in -> r_out with this layer's kernel/stride/padding, a 1x1x1 conv
  // r_out -> C_out carrying the bias. Stored as <name>.tucker_{in,core,out}.weight.
  std::vector<ConvLayer> tucker_parts;

  bool factorized() const { return !tucker_parts.empty(); }
  // Sets the Tucker-2 form from the factors of the weight's two channel modes (see tucker.h).
  // Conv3d: u0 factors C_out, u1 factors C_in. ConvTranspose3d: u0 factors C_in, u1 factors C_out.
  void SetTucker(const torch::Tensor& core, const torch::Tensor& u0, const torch::Tensor& u1);
  // The weights of this layer under their state_dict names (dense or factorized).
  void AppendWeights(WeightMap* out) const;

  Int3 OutputSize(const Int3& input) const;
  LayerCost Cost(const Int3& input) const;
  std::vector<TensorSpec> Spec() const;
};

struct NormLayer {
  std::string name;
  int64_t channels = 0;
  double eps = 1e-5;
  bool affine = true;
  torch::Tensor weight, bias;
};

// conv -> InstanceNorm3d -> LeakyReLU
struct ConvBlock {
  ConvLayer conv;
  NormLayer norm;
};

class PlainConvUNet {
 public:
  // Every tensor the network needs, with nnU-Net's canonical names (aliases excluded).
  static std::vector<TensorSpec> StateDictSpec(const UNetConfig& config);
  // Builds the network from weights; missing, extra or mis-shaped tensors are errors naming the key.
  static Result<PlainConvUNet> Create(const UNetConfig& config, const WeightMap& weights);
  // He-initialised weights (seeded), for benchmarks and tests that need no trained model.
  static WeightMap RandomWeights(const UNetConfig& config, uint64_t seed);

  // Whether x is an input this network takes: (N, input_channels, Z, Y, X) on its device in its
  // dtype, with Z, Y, X divisible by the total stride.
  Status CheckInput(const torch::Tensor& x) const;

  // A copy whose weights live on `device` as `dtype`: float32, or float16/bfloat16 for half
  // precision on a GPU.
  PlainConvUNet To(const torch::Device& device, torch::ScalarType dtype = torch::kFloat32) const;
  torch::Device device() const;
  torch::ScalarType dtype() const;

  // Per-layer parameters and MACs for one patch, in execution order.
  std::vector<LayerCost> Cost(const Int3& patch) const;
  int64_t NumParameters() const;
  const UNetConfig& config() const { return config_; }
  // Every convolution in state_dict order: encoder, decoder, transposed convs, heads.
  std::vector<ConvLayer*> MutableConvs();
  // The weights under their state_dict names (factorized layers as tucker_{in,core,out}).
  WeightMap Weights() const;

  // The layers, for executors.
  const std::vector<std::vector<ConvBlock>>& encoder() const { return encoder_; }  // [stage][conv]
  const std::vector<ConvLayer>& transpconvs() const { return transpconvs_; }      // [decoder stage]
  const std::vector<std::vector<ConvBlock>>& decoder() const { return decoder_; }  // [decoder stage][conv]
  // [decoder stage]: the deep-supervision heads; inference applies only the last.
  const std::vector<ConvLayer>& seg_layers() const { return seg_layers_; }

 private:
  UNetConfig config_;
  std::vector<std::vector<ConvBlock>> encoder_;  // [stage][conv]
  std::vector<ConvLayer> transpconvs_;           // [decoder stage]
  std::vector<std::vector<ConvBlock>> decoder_;  // [decoder stage][conv]
  std::vector<ConvLayer> seg_layers_;            // [decoder stage]; only the last is applied
};

}  // namespace tucker_seg
