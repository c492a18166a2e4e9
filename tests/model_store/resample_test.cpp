// Resampling as nnU-Net does it (cubic B-splines, nearest along a separate z).
#include "model_store/inference/resample.h"

#include <gtest/gtest.h>

#include <array>
#include <tuple>
#include <utility>
#include <vector>

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

// The pruned argmax labels like LibTorch's bilinear upsampling (align_corners=false: the same
// grid mapping) followed by argmax, wherever the two best interpolated classes are not tied;
// smooth logits with a large class count, up and down in size, and a plane of exact ties.
TEST(Resample, ArgmaxOfBilinearMatchesUpsamplingThenArgmax) {
  torch::manual_seed(2);
  for (const auto& [in, out] : std::vector<std::pair<std::array<int64_t, 2>, std::array<int64_t, 2>>>{
           {{23, 17}, {80, 61}}, {{40, 40}, {25, 33}}, {{9, 12}, {9, 12}}}) {
    const int64_t k = 118;
    // Smooth logits (organ-like blobs): a coarse random field upsampled, plus per-class offsets.
    torch::Tensor logits = torch::upsample_bilinear2d(torch::randn({1, k, 5, 5}) * 4, {in[0], in[1]}, false).squeeze(0);
    logits += torch::randn({k, 1, 1});
    const torch::Tensor resized = torch::upsample_bilinear2d(logits.unsqueeze(0), {out[0], out[1]}, false).squeeze(0);
    const torch::Tensor top2 = std::get<0>(resized.topk(2, 0));
    const torch::Tensor decided = (top2[0] - top2[1]) > 1e-4;
    torch::Tensor labels = torch::empty({out[0], out[1]}, torch::kUInt8);
    // A strided view, as the exporter passes rows of the sliding window's buffer: 3 columns and a
    // row of padding around each class plane.
    const torch::Tensor padded = torch::zeros({k, in[0] + 2, in[1] + 3});
    padded.narrow(1, 1, in[0]).narrow(2, 2, in[1]).copy_(logits);
    const torch::Tensor view = padded.narrow(1, 1, in[0]).narrow(2, 2, in[1]);
    ArgmaxOfBilinear(view.data_ptr<float>(), k, in[0], in[1], view.stride(0), view.stride(1), out[0], out[1], labels.data_ptr<uint8_t>());
    const torch::Tensor expected = resized.argmax(0).to(torch::kUInt8);
    EXPECT_GT(decided.sum().item<int64_t>(), out[0] * out[1] * 9 / 10);
    EXPECT_TRUE(torch::equal(labels.masked_select(decided), expected.masked_select(decided)))
        << in[0] << "x" << in[1] << " -> " << out[0] << "x" << out[1];
    EXPECT_GT(std::get<0>(torch::_unique(expected)).numel(), 3);  // several classes win somewhere
  }
  // All classes equal: the lowest wins, as argmax's first maximum does.
  const torch::Tensor flat = torch::ones({5, 6, 6});
  torch::Tensor labels = torch::empty({10, 10}, torch::kUInt8);
  ArgmaxOfBilinear(flat.data_ptr<float>(), 5, 6, 6, 36, 6, 10, 10, labels.data_ptr<uint8_t>());
  EXPECT_EQ(labels.max().item<int>(), 0);
}

}  // namespace
}  // namespace tucker_seg
