// InstanceNorm + LeakyReLU whose result is only ever read through 1x1x1 projections, computed
// per block of voxels in cache so that the normalised C-channel activation is never written.
//
// This is how a Tucker chain runs in rank space: the output factor of one layer (r -> C, the
// "expansion"), the norm, the LeakyReLU and the input factors of every layer that reads the result
// (C -> r', one projection each: the next convolution, the skip connection) become one kernel that
// reads the r-channel core output and writes r'-channel values. The norm's statistics come from a
// first pass that recomputes the expansion block by block, so no C-channel tensor is written in
// either pass. The segmentation head is a projection too, writing the logits in NCDHW directly.
#pragma once

#include <cstdint>
#include <vector>

namespace tucker_seg::cpu_engine {

// nnU-Net's Gaussian-weighted sum over overlapping tiles, done by the head itself:
// volume[k, z, y, x] += weight[z, y, x] * logit[k, z, y, x] for the tile's voxels (z, y, x), the
// volume a larger float32 array (the sliding window's slab) addressed by these strides in floats.
// No tile-sized array of logits is written.
struct WeightedLogitsSum {
  float* volume = nullptr;
  const float* weight = nullptr;  // one per tile voxel
  int64_t class_stride = 0, z_stride = 0, y_stride = 0;
  int64_t tile_height = 0, tile_width = 0;  // the tile's y and x sizes
};

struct NormProjectionOutput {
  int64_t channels = 0;
  const float* weight = nullptr;  // (channels, C) row-major
  const float* bias = nullptr;    // null or `channels` floats
  void* data = nullptr;           // channels-last (voxels, channels) in the activation type, or float32 NCDHW
  bool ncdhw = false;
  int64_t row_width = 0;          // > 0: float32 in the row layout (tile_math.h) with rows of this width
  const WeightedLogitsSum* sum = nullptr;  // with ncdhw: added into its volume instead of written to data
};

struct NormProjection {
  const void* input = nullptr;  // channels-last (voxels, input_channels)
  bool bf16 = false;            // input and channels-last outputs are bfloat16 bits, else float32
  int64_t input_row_width = 0;  // > 0: the input is float32 in the row layout (tile_math.h)
  int64_t voxels = 0;
  int64_t input_channels = 0;
  // y = expansion_weight x + expansion_bias: (channels, input_channels) row-major; null: y = x.
  const float* expansion_weight = nullptr;
  const float* expansion_bias = nullptr;
  int64_t channels = 0;  // C, y's channels
  const float* gamma = nullptr;  // null or C floats (InstanceNorm's affine)
  const float* beta = nullptr;
  double eps = 1e-5;
  double slope = 0.01;  // LeakyReLU, 0 <= slope <= 1
  std::vector<NormProjectionOutput> outputs;
};

// Runs on OpenMP's threads. Statistics are shifted by the first voxel's y and accumulated in
// double per block of 256 voxels, as InstanceNormLeakyReluChannelsLast does.
void RunNormProjection(const NormProjection& p);

}  // namespace tucker_seg::cpu_engine
