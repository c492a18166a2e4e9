// What runs a network's forward pass. PlainConvUNet (network.h) is topology, weights and cost
// model only; an executor runs one network on one backend and owns whatever it compiles for those
// weights (the CPU engine: one graph per patch shape, pooled). MakeExecutor picks the executor
// for the network's device; further backends (CUDA graphs, int8) are further executors.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "model_store/network/network.h"
#include "vocabulary/status.h"

namespace tucker_seg {

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

// Runs the weights its network had when it was made: after changing a network's weights
// (training, compression), make a new executor. Safe to call from several threads at once.
class NetworkExecutor {
 public:
  virtual ~NetworkExecutor() = default;
  NetworkExecutor(const NetworkExecutor&) = delete;
  NetworkExecutor& operator=(const NetworkExecutor&) = delete;

  const PlainConvUNet& network() const { return *network_; }
  // What runs the layers ("CPU engine (float32)", "LibTorch ops", ...), for logs and benchmarks.
  virtual std::string name() const = 0;
  // x: (N, input_channels, Z, Y, X) on the network's device in its dtype, Z, Y, X divisible by
  // the total stride. Returns logits (N, num_classes, Z, Y, X), without gradients. Throws
  // c10::Error on shape errors; Run checks the input first.
  virtual torch::Tensor Forward(const torch::Tensor& x, OpProfile* profile = nullptr) const = 0;
  // volume += weight * Forward(x)[0] for one sample x (1, input_channels, Z, Y, X): weight
  // (Z, Y, X) and volume a (num_classes, Z, Y, X) view, both float32 on the network's device (the
  // sliding window's Gaussian sum). The CPU engine's head adds its logits in place.
  virtual void ForwardWeightedSum(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& volume) const;
  // Frees what the executor keeps between calls and can rebuild (the CPU engine's idle graphs and
  // their activation buffers). The parts of a composite run one after another: `predict` releases
  // each part's memory before the next runs, so that five parts need one part's activations.
  virtual void ReleaseIdleMemory() const {}
  // Whether this executor's own kernels serve patches of this size (the CPU engine builds its
  // graph to find out); the error says why not. Forward runs LibTorch's ops for such a size.
  virtual Status Serves(const Int3& patch) const;
  // CheckInput, then Forward; LibTorch's exceptions come back as a status.
  Result<torch::Tensor> Run(const torch::Tensor& x) const;

 protected:
  explicit NetworkExecutor(std::shared_ptr<const PlainConvUNet> network) : network_(std::move(network)) {}

 private:
  std::shared_ptr<const PlainConvUNet> network_;
};

enum class Backend {
  kAuto,               // the CPU engine for a float32 network on the CPU where this build has oneDNN, else kLibTorch
  kLibTorch,           // LibTorch's ops, 1x1x1 and stride = kernel transposed convolutions as matrix products
  kLibTorchReference,  // LibTorch's conv3d / conv_transpose3d for every layer (the benchmarks' baseline)
};

// For int8 inference: per convolution layer (ConvLayer::name), the bound of |input| per input
// channel that calibration found; quantization maps a source's largest bound to 127.
using ActivationBounds = std::map<std::string, std::vector<float>>;

struct ExecutorOptions {
  Backend backend = Backend::kAuto;
  // The CPU engine's activations and weights in bfloat16 (AVX-512 BF16 / AMX); statistics, bias
  // and logits stay float32. Ignored by the other executors.
  bool cpu_bf16 = false;
  // int8 (an int8 variant's calibration): the CPU engine quantizes the inputs of the layers named
  // here; null: float. Only the CPU engine runs int8: MakeExecutor gives no other executor one.
  std::shared_ptr<const ActivationBounds> int8 = nullptr;
};

// An executor for a copy of `network` (the copy shares its weight tensors).
std::shared_ptr<const NetworkExecutor> MakeExecutor(const PlainConvUNet& network, const ExecutorOptions& options = {});

}  // namespace tucker_seg
