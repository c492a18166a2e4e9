// Process-wide settings for running LibTorch on CPU.
#pragma once

#include <malloc.h>

namespace tucker_seg {

// Keeps LibTorch's large, short-lived tensors (up to 32 MiB) in glibc's heap instead of a fresh
// mmap per allocation, which the kernel must zero page by page: measured 1.6x faster training
// steps here (sys time 15 s -> 4 s over 20 steps). Call once at the start of main.
inline void TuneAllocatorForTensors() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 256 << 20);
}

}  // namespace tucker_seg
