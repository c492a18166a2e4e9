// Resampling of 3-D volumes as nnU-Net does it (skimage resize / scipy zoom with grid mode:
// source coordinate = (i + 0.5) * old / new - 0.5, edges clamped).
#pragma once

#include <array>

#include <torch/types.h>

#include "model_store/format/unet_config.h"

namespace tucker_seg {

// Axis whose spacing calls for nnU-Net's "separate z" treatment (max/min spacing > 3, one
// coarsest axis), checked on the current spacing first, then on the target; -1 when none.
// The grid-mode source coordinate of output voxel i when `in` voxels become `out`:
// (i + 0.5) * in / out - 0.5, clamped to [0, in - 1] (edge mode).
double GridSourceCoordinate(int64_t i, int64_t in, int64_t out);

// Linear interpolation at that coordinate: source voxels i0 and i1 = min(i0 + 1, in - 1), and
// the weight w1 of i1.
struct LinearTap {
  int64_t i0, i1;
  double w1;
};
LinearTap GridLinearTap(int64_t i, int64_t in, int64_t out);

int SeparateZAxis(const std::array<double, 3>& current, const std::array<double, 3>& target);

// Cubic B-spline interpolation (order 3, mirror-boundary prefilter) of a (D0, D1, D2) float
// volume to `shape`, separably per axis; `nearest_axis` (0..2, or -1) uses nearest neighbour
// instead, as nnU-Net's separate-z rule does along the coarse axis.
torch::Tensor ResampleCubic(const torch::Tensor& volume, const Int3& shape, int nearest_axis);

}  // namespace tucker_seg
