// The CPU engine (model_store/cpu_engine/) as a network's executor: the network's topology
// written as a cpu_engine::Graph, compiled once per patch shape and pooled (a graph serves one
// call at a time, so concurrent calls of one shape each get their own). Shapes the engine cannot
// serve (no JIT kernel in oneDNN) run in LibTorch's ops.
#pragma once

#include <memory>

#include "model_store/network/executor.h"

namespace tucker_seg {

// For a float32 network on the CPU; null where this build has no CPU engine (no oneDNN).
// bf16: activations and weights in bfloat16.
std::shared_ptr<const NetworkExecutor> MakeCpuEngineExecutor(std::shared_ptr<const PlainConvUNet> network, bool bf16);
// Whether this build has the CPU engine, and whether this CPU runs its bf16 kernels (AVX-512 BF16 or AMX).
bool CpuEngineBuilt();
bool CpuEngineRunsBFloat16();

}  // namespace tucker_seg
