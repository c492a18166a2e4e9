// The CPU engine (model_store/cpu_engine/) as a network's executor: the network's topology
// written as a cpu_engine::Graph, compiled once per patch shape and pooled (a graph serves one
// call at a time, so concurrent calls of one shape each get their own). Shapes the engine cannot
// serve (no JIT kernel in oneDNN) run in LibTorch's ops.
#pragma once

#include <memory>

#include "model_store/network/executor.h"

namespace tucker_seg {

// For a float32 network on the CPU; null where this build has no CPU engine (no oneDNN).
// bf16: activations and weights in bfloat16. int8 (non-null): the layers it names run as int8
// convolutions where oneDNN has an int8 kernel (3x3x3 convolutions and Tucker cores; thin and
// transposed ones, norms and 1x1x1 projections stay float32); a shape the engine cannot build is
// then an error, not LibTorch's float32 ops.
std::shared_ptr<const NetworkExecutor> MakeCpuEngineExecutor(std::shared_ptr<const PlainConvUNet> network, bool bf16,
                                                              std::shared_ptr<const ActivationBounds> int8 = nullptr);
// Whether this build has the CPU engine, and whether this CPU runs its bf16 kernels (AVX-512 BF16 or AMX).
bool CpuEngineBuilt();
bool CpuEngineRunsBFloat16();

}  // namespace tucker_seg
