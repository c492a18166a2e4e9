// InstanceNorm + LeakyReLU over one channels-last activation, in place (the engine's only op that
// oneDNN has no primitive for: its normalisations take statistics over other axes).
#pragma once

#include <cstdint>

namespace tucker_seg::cpu_engine {

// data: `voxels` x `channels` values, float32 or (bf16 = true) bfloat16 bits. Statistics are per
// channel over all voxels (biased variance), shifted by the first voxel's value and accumulated
// in double per block, so they stay accurate when the mean is large compared with the spread.
// gamma/beta: null or `channels` floats. Runs on OpenMP's threads.
void InstanceNormLeakyReluChannelsLast(void* data, bool bf16, int64_t voxels, int64_t channels, const float* gamma,
                                       const float* beta, double eps, double slope);

}  // namespace tucker_seg::cpu_engine
