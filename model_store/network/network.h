// nnU-Net's PlainConvUNet in LibTorch, inference only.
//
//   encoder stage s:  n_conv x (conv -> InstanceNorm3d -> LeakyReLU), the first conv strided
//   decoder stage d:  transposed conv (kernel = stride) -> concat [up, skip] -> n_conv x (conv -> norm -> nonlin)
//   head:             1x1x1 conv of the last decoder stage (the other deep-supervision heads are loaded, unused)
//
// Weights are keyed by nnU-Net's own state_dict names, so a checkpoint maps onto it one to one.
#pragma once

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <torch/types.h>

#include "vocabulary/status.h"
#include "model_store/format/unet_config.h"
#include "model_store/format/weight_map.h"

namespace tucker_seg {

struct EngineGraph;  // a compiled cpu_engine::Graph and the logits buffer it last filled (engine_forward.cpp)

// A state_dict entry the network expects.
struct TensorSpec {
  std::string key;
  std::vector<int64_t> shape;
};

// Time spent per kind of operation during a forward pass (benchmarks only).
class OpProfile {
 public:
  struct Entry {
    double seconds = 0;
    int64_t calls = 0;
    int64_t macs = 0;
  };
  void Add(const std::string& op, double seconds, int64_t macs) {
    auto& e = entries_[op];
    e.seconds += seconds;
    e.calls += 1;
    e.macs += macs;
  }
  const std::map<std::string, Entry>& entries() const { return entries_; }

 private:
  std::map<std::string, Entry> entries_;
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

// How layers execute. The fast paths compute the same function with faster kernels on CPU;
// turning them off gives LibTorch's own ops (the baseline the benchmark compares against).
struct ExecutionOptions {
  bool fast_paths = true;
  // Record the graph for backpropagation (training); implies LibTorch's own ops throughout.
  bool autograd = false;
  // On CPU in float32: the oneDNN engine (model_store/cpu_engine/), one compiled graph per input
  // shape. Off, or where this build has no oneDNN or oneDNN cannot serve a shape with its JIT
  // kernels: the fast paths above.
  bool cpu_engine = true;
  // The engine's activations and weights in bfloat16 (AVX-512 BF16 / AMX); statistics, bias and
  // logits stay float32.
  bool cpu_bf16 = false;
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

  torch::Tensor Forward(const torch::Tensor& x, OpProfile* profile, const ExecutionOptions& options = {}) const;
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

// Engine graphs compiled for one network's weights, kept per input shape; a graph serves one call
// at a time, so concurrent calls of one shape each get their own. Copies start empty (a copy's
// weights may change).
class EngineGraphPool {
 public:
  EngineGraphPool() = default;
  EngineGraphPool(const EngineGraphPool&) {}
  EngineGraphPool& operator=(const EngineGraphPool&) {
    Clear();
    return *this;
  }
  using Key = std::array<int64_t, 3>;
  // An idle graph for `key`, or null (then `*status` says why the shape has none when it failed before).
  std::shared_ptr<EngineGraph> Take(const Key& key, Status* status);
  void Return(const Key& key, std::shared_ptr<EngineGraph> graph);
  void RecordFailure(const Key& key, const Status& status);
  void Clear();

 private:
  struct Entry {
    Status failure;
    std::vector<std::shared_ptr<EngineGraph>> idle;
  };
  std::mutex mu_;
  std::map<Key, Entry> entries_;
};

class PlainConvUNet {
 public:
  // Every tensor the network needs, with nnU-Net's canonical names (aliases excluded).
  static std::vector<TensorSpec> StateDictSpec(const UNetConfig& config);
  // Builds the network from weights; missing, extra or mis-shaped tensors are errors naming the key.
  static Result<PlainConvUNet> Create(const UNetConfig& config, const WeightMap& weights);
  // He-initialised weights (seeded), for benchmarks and tests that need no trained model.
  static WeightMap RandomWeights(const UNetConfig& config, uint64_t seed);

  // x: (N, input_channels, Z, Y, X) float32 with Z, Y, X divisible by the total stride.
  // Returns logits (N, num_classes, Z, Y, X). Throws c10::Error on shape errors; call
  // CheckInput first at a boundary.
  torch::Tensor Forward(const torch::Tensor& x, OpProfile* profile = nullptr) const;
  Status CheckInput(const torch::Tensor& x) const;
  // Whether the CPU engine serves patches of this size (building its graph if needed); the
  // error says why not (no oneDNN in this build, a shape oneDNN has no JIT kernel for, ...).
  Status EngineStatus(const Int3& patch) const;
  // CheckInput, then Forward without gradients; LibTorch's exceptions come back as a status.
  Result<torch::Tensor> Run(const torch::Tensor& x) const;

  // A copy whose weights live on `device` as `dtype`: float32, or float16/bfloat16 for half
  // precision on a GPU (InstanceNorm then runs in that precision too). The CPU's fused kernels
  // run only for float32 on the CPU; everywhere else the layers are LibTorch's own ops.
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
  const ExecutionOptions& execution_options() const { return options_; }
  void set_execution_options(const ExecutionOptions& o) {
    options_ = o;
    if (o.autograd) options_.fast_paths = options_.cpu_engine = false;  // the fused kernels have no backward
    engine_graphs_.Clear();
  }

 private:
  torch::Tensor Block(const ConvBlock& b, const torch::Tensor& x, OpProfile* profile) const;
  bool EngineApplies(const torch::Tensor& x) const;
  Result<std::shared_ptr<EngineGraph>> BuildEngineGraph(const Int3& patch) const;
  // An idle graph for this patch from the pool, or a new one; a shape that failed to build once
  // gives its failure again without another attempt.
  Result<std::shared_ptr<EngineGraph>> AcquireEngineGraph(const Int3& patch) const;
  // Logits from the engine, or an undefined tensor when it cannot serve this shape.
  torch::Tensor EngineForward(const torch::Tensor& x, OpProfile* profile) const;

  UNetConfig config_;
  ExecutionOptions options_;
  std::vector<std::vector<ConvBlock>> encoder_;  // [stage][conv]
  std::vector<ConvLayer> transpconvs_;           // [decoder stage]
  std::vector<std::vector<ConvBlock>> decoder_;  // [decoder stage][conv]
  std::vector<ConvLayer> seg_layers_;            // [decoder stage]; only the last is applied
  mutable EngineGraphPool engine_graphs_;
};

}  // namespace tucker_seg
