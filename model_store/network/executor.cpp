#include "model_store/network/executor.h"

#include "model_store/network/cpu_engine_executor.h"
#include "model_store/network/libtorch_executor.h"

namespace tucker_seg {

Status NetworkExecutor::Serves(const Int3& patch) const { return network().config().ValidatePatch(patch); }

void NetworkExecutor::ForwardWeightedSum(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& volume) const {
  volume.addcmul_(Forward(x)[0], weight);
}

Result<torch::Tensor> NetworkExecutor::Run(const torch::Tensor& x) const {
  TS_RETURN_IF_ERROR(network().CheckInput(x));
  return StatusFromExceptions("forward pass", [&]() -> Result<torch::Tensor> { return Forward(x); });
}

std::shared_ptr<const NetworkExecutor> MakeExecutor(const PlainConvUNet& network, const ExecutorOptions& options) {
  auto shared = std::make_shared<const PlainConvUNet>(network);
  if (options.backend == Backend::kAuto && shared->device().is_cpu() && shared->dtype() == torch::kFloat32) {
    if (auto engine = MakeCpuEngineExecutor(shared, options.cpu_bf16, options.int8)) return engine;
  }
  LibTorchOps ops;
  ops.matmul_rewrites = options.backend != Backend::kLibTorchReference;
  return std::make_shared<LibTorchExecutor>(std::move(shared), ops);
}

}  // namespace tucker_seg
