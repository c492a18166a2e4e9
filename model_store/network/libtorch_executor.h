// A network's layers in LibTorch's own ops: the reference, the GPU path, training (autograd) and
// the CPU's fallback for shapes the engine cannot serve.
#pragma once

#include <memory>
#include <string>

#include <torch/types.h>

#include "model_store/network/executor.h"
#include "model_store/network/network.h"

namespace tucker_seg {

struct LibTorchOps {
  // 1x1x1 convolutions and transposed convolutions with stride = kernel as matrix products
  // (LibTorch's CPU kernels for them are several times slower); off: conv3d for every layer.
  bool matmul_rewrites = true;
  // Record the graph for backpropagation (training).
  bool autograd = false;
  // Called with every convolution (a Tucker variant's parts one by one) and its input, before it
  // runs: int8 calibration records the inputs' ranges.
  std::function<void(const ConvLayer& layer, const torch::Tensor& input)> observe_input = nullptr;
  static LibTorchOps Training() { return {false, true, nullptr}; }
};

// x: as NetworkExecutor::Forward takes it. Throws c10::Error on shape errors.
torch::Tensor LibTorchForward(const PlainConvUNet& net, const torch::Tensor& x, const LibTorchOps& ops, OpProfile* profile = nullptr);
// One layer (dense or its Tucker parts in turn).
torch::Tensor ConvForward(const ConvLayer& layer, const torch::Tensor& x, const LibTorchOps& ops, OpProfile* profile = nullptr);

class LibTorchExecutor final : public NetworkExecutor {
 public:
  LibTorchExecutor(std::shared_ptr<const PlainConvUNet> network, const LibTorchOps& ops)
      : NetworkExecutor(std::move(network)), ops_(ops) {}
  std::string name() const override { return ops_.matmul_rewrites ? "LibTorch ops" : "LibTorch reference ops"; }
  torch::Tensor Forward(const torch::Tensor& x, OpProfile* profile = nullptr) const override {
    return LibTorchForward(network(), x, ops_, profile);
  }

 private:
  LibTorchOps ops_;
};

}  // namespace tucker_seg
