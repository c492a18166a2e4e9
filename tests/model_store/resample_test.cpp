// Resampling as nnU-Net does it (cubic B-splines, nearest along a separate z).
#include "model_store/inference/resample.h"

#include <gtest/gtest.h>

namespace tucker_seg {
namespace {

TEST(Resample, CubicReproducesSmoothFunctionsAndNearestKeepsValues) {
  // A quadratic along each axis is reproduced by cubic B-splines away from the boundary.
  auto z = torch::arange(20, torch::kFloat32).view({20, 1, 1});
  auto y = torch::arange(16, torch::kFloat32).view({1, 16, 1});
  auto x = torch::arange(12, torch::kFloat32).view({1, 1, 12});
  auto v = (0.1 * z * z + y - 0.5 * x).expand({20, 16, 12}).contiguous();
  auto up = ResampleCubic(v, {40, 32, 24}, -1);
  ASSERT_EQ(up.sizes(), (std::vector<int64_t>{40, 32, 24}));
  // Output voxel i sits at source coordinate (i + 0.5) * 0.5 - 0.5: z 20 -> 9.75, y 16 -> 7.75, x 12 -> 5.75.
  const double expected = 0.1 * 9.75 * 9.75 + 7.75 - 0.5 * 5.75;
  EXPECT_NEAR(up[20][16][12].item<double>(), expected, 1e-3);
  // Nearest along z, 20 -> 10: output i at (i + 0.5) * 2 - 0.5 = 2i + 0.5, rounded to 2i + 1.
  auto nn = ResampleCubic(v, {10, 16, 12}, 0);
  for (int64_t i = 0; i < 10; ++i) EXPECT_TRUE(torch::equal(nn[i], v[2 * i + 1])) << i;
}

}  // namespace
}  // namespace tucker_seg
