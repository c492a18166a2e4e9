// Builds without oneDNN have no CPU engine: every network runs in LibTorch's ops.
#include "model_store/network/cpu_engine_executor.h"

namespace tucker_seg {

std::shared_ptr<const NetworkExecutor> MakeCpuEngineExecutor(std::shared_ptr<const PlainConvUNet>, bool, std::shared_ptr<const ActivationBounds>) {
  return nullptr;
}
bool CpuEngineBuilt() { return false; }
bool CpuEngineRunsBFloat16() { return false; }

}  // namespace tucker_seg
