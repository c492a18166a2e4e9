// The x86 instruction set the hand-written CPU kernels run with (the engine's tile kernels, the
// export's trilinear argmax): the widest this CPU has, or a narrower one named by
// TUCKER_SEG_KERNEL_ISA (avx2 or sse2), so that tests run every version this CPU can.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace tucker_seg {

enum class Isa { kAvx512, kAvx2, kSse2 };  // widest first
inline Isa CpuIsa() {
  static const Isa isa = [] {
    // Both wide versions are compiled with FMA.
    const bool fma = __builtin_cpu_supports("fma");
    const Isa widest = fma && __builtin_cpu_supports("avx512f") ? Isa::kAvx512
                       : fma && __builtin_cpu_supports("avx2")  ? Isa::kAvx2
                                                                : Isa::kSse2;
    const char* asked = std::getenv("TUCKER_SEG_KERNEL_ISA");
    const Isa narrower = asked && std::strcmp(asked, "sse2") == 0   ? Isa::kSse2
                         : asked && std::strcmp(asked, "avx2") == 0 ? Isa::kAvx2
                                                                     : Isa::kAvx512;
    return std::max(widest, narrower);
  }();
  return isa;
}

}  // namespace tucker_seg
