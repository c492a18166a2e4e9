// A 3x3x3 convolution with stride 1 and padding 1 over few channels (Tucker cores, ranks of
// 8-77), float32, on AVX-512. oneDNN's brgconv runs such cores at 63-76% of its rate on 32 or
// more channels, since 10 or 20 channels fill a 16-float register badly. Here the 16 lanes are 16
// voxels along x instead: the input is read in the row layout (tile_math.h: (z, y, channel, x)),
// so that every tap of every input channel is one unaligned load (masked at the ends of x, where
// the padding reads zero), multiplied by one broadcast weight per output channel. A channels-last
// input is transposed into that layout band by band; values that only this kernel and the fused
// norm kernel touch are kept in it and need no transpose at all.
#pragma once

#include <cstdint>
#include <vector>

#include "vocabulary/volume.h"

namespace tucker_seg::cpu_engine {

class ThinConv {
 public:
  // Whether this kernel serves the shape on this CPU (the kernels' AVX-512 version, few channels,
  // rows of x a multiple of 16 voxels).
  static bool Serves(int64_t in_channels, int64_t out_channels, const Int3& size);

  // weight: LibTorch's (out, in, 3, 3, 3); bias: null or out_channels floats. Packed once here.
  // input_rows / output_rows: that side is in the row layout, else channels-last.
  ThinConv(int64_t in_channels, int64_t out_channels, const Int3& size, const float* weight, const float* bias, bool input_rows,
           bool output_rows);

  // input: (size, in_channels); output: (size, out_channels), overwritten or, with `accumulate`,
  // added to. Runs on OpenMP's threads.
  void Run(const float* input, float* output, bool accumulate) const;

  // Output channels computed together (in registers, for two tiles of 16 voxels at once).
  struct Block {
    int64_t first = 0, count = 0;
  };

 private:
  int64_t in_ = 0, out_ = 0;
  Int3 size_{0, 0, 0};
  bool input_rows_ = false, output_rows_ = false;
  std::vector<Block> blocks_;
  std::vector<float> weights_;  // per block: [tap (dz, dy, dx)][in][block's outputs]
  std::vector<float> bias_;     // out_ floats, zero without a bias
};

}  // namespace tucker_seg::cpu_engine
