// The machine's compute limit as benchmarks state it: oneDNN's single-precision matmul (it picks
// its kernel for this CPU by itself, unlike OpenBLAS under OPENBLAS_CORETYPE).
#pragma once

#include <cstdint>
#include <string>

namespace tucker_seg::cpu_engine {

struct GemmPeak {
  double gflops = 0;   // best of the repeats
  std::string kernel;  // oneDNN's implementation name, e.g. "brg:avx512_core"
};

// n x n x n float32 (bf16 = true: bfloat16 inputs, float32 accumulation) matmul on OpenMP's threads.
GemmPeak MeasureGemmPeak(int64_t n = 4096, int repeats = 3, bool bf16 = false);

}  // namespace tucker_seg::cpu_engine
