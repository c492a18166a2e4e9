// A transposed convolution whose stride equals its kernel and has no padding (nnU-Net's
// upsampling): every input voxel alone makes one kz x ky x kx block of the output, so it is a
// matrix product per voxel, written straight into the channels-last output. oneDNN 2.6's
// deconvolution measured 1.0-1.2 s for a 20 -> 20 channel 2x2x2 upsampling to 112x112x128 here
// (its jit:avx512_core kernel, with or without a sum post-op); this kernel does it in a few ms.
#pragma once

#include <cstdint>

#include "vocabulary/volume.h"

namespace tucker_seg::cpu_engine {

struct StridedTransposedConv {
  const void* input = nullptr;  // channels-last (in_size voxels, in_channels)
  void* output = nullptr;       // channels-last (in_size * kernel voxels, out_channels)
  bool bf16 = false;            // input and output are bfloat16 bits, else float32
  Int3 in_size{0, 0, 0};
  int64_t in_channels = 0, out_channels = 0;
  Int3 kernel{2, 2, 2};          // = the stride
  const float* weight = nullptr;  // LibTorch's ConvTranspose3d layout (in, out, kz, ky, kx)
  const float* bias = nullptr;    // null or out_channels floats
  bool accumulate = false;        // add to the output instead of overwriting it
};

// Runs on OpenMP's threads.
void RunStridedTransposedConv(const StridedTransposedConv& c);

}  // namespace tucker_seg::cpu_engine
