// Resampling as nnU-Net does it (cubic B-splines, nearest along a separate z).
#include "model_store/inference/resample.h"

#include <gtest/gtest.h>

#include <array>
#include <tuple>
#include <utility>
#include <vector>

#include "model_store/inference/trilinear_argmax.h"

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

TEST(Resample, CubicLinesAlongAnyAxisAgree) {
  // Lines along the first two axes are resampled kPanel neighbours at a time, lines along the last
  // axis one by one: one axis resampled both ways (by permuting the volume) must agree, growing and
  // shrinking, with a partial panel (19 = 2 x 8 + 3).
  torch::manual_seed(4);
  const torch::Tensor v = torch::randn({13, 21, 19}) * 100;
  for (int64_t size : {30, 9}) {
    const torch::Tensor panels = ResampleCubic(v, {13, size, 19}, -1);
    const torch::Tensor lines = ResampleCubic(v.permute({0, 2, 1}).contiguous(), {13, 19, size}, -1).permute({0, 2, 1});
    ASSERT_EQ(panels.sizes(), lines.sizes());
    EXPECT_LT((panels - lines).abs().max().item<float>(), 1e-3f) << size;
    EXPECT_GT(panels.abs().max().item<float>(), 100.0f);  // not all zeros
  }
}

// The export labels like LibTorch's trilinear resize (align_corners=false: the same grid mapping)
// followed by argmax, wherever the two best interpolated classes are not tied: smooth logits with a
// large class count, up and down in size, on strided views of the sliding window's buffer.
TEST(Resample, TrilinearArgmaxMatchesResizingThenArgmax) {
  torch::manual_seed(2);
  for (const auto& [in, out] : std::vector<std::pair<std::array<int64_t, 3>, std::array<int64_t, 3>>>{
           {{6, 23, 17}, {11, 80, 61}}, {{5, 40, 40}, {4, 25, 33}}, {{4, 9, 12}, {4, 9, 12}}}) {
    const int64_t k = 118;
    // Smooth logits (organ-like blobs): a coarse random field resized, plus per-class offsets.
    torch::Tensor logits = torch::upsample_trilinear3d(torch::randn({1, k, 3, 5, 5}) * 4, {in[0], in[1], in[2]}, false).squeeze(0);
    logits += torch::randn({k, 1, 1, 1});
    const torch::Tensor resized = torch::upsample_trilinear3d(logits.unsqueeze(0), {out[0], out[1], out[2]}, false).squeeze(0);
    const torch::Tensor top2 = std::get<0>(resized.topk(2, 0));
    const torch::Tensor decided = (top2[0] - top2[1]) > 1e-4;
    // Rows as the exporter has them: (K, Y, X) views with 3 columns and a row of padding around.
    const torch::Tensor padded = torch::zeros({k, in[0], in[1] + 2, in[2] + 3});
    padded.narrow(2, 1, in[1]).narrow(3, 2, in[2]).copy_(logits);
    const torch::Tensor view = padded.narrow(2, 1, in[1]).narrow(3, 2, in[2]);
    TrilinearArgmax argmax(k, in[1], in[2], out[1], out[2]);
    std::vector<std::vector<uint8_t>> tops;
    auto plane = [&](int64_t r) {
      const torch::Tensor row = view.select(1, r);
      return LogitPlane{row.data_ptr<float>(), row.stride(0), row.stride(1)};
    };
    for (int64_t r = 0; r < in[0]; ++r) tops.push_back(argmax.TopClasses(plane(r)));
    torch::Tensor labels = torch::empty({out[0], out[1], out[2]}, torch::kUInt8);
    for (int64_t o = 0; o < out[0]; ++o) {
      const LinearTap t = GridLinearTap(o, in[0], out[0]);
      argmax.Slice(t.i0, plane(t.i0), tops[t.i0].data(), t.i1, plane(t.i1), tops[t.i1].data(), static_cast<float>(t.w1),
                   labels[o].data_ptr<uint8_t>());
    }
    const torch::Tensor expected = resized.argmax(0).to(torch::kUInt8);
    const std::string shape = std::to_string(in[1]) + "x" + std::to_string(in[2]) + " -> " + std::to_string(out[1]) + "x" + std::to_string(out[2]);
    EXPECT_GT(decided.sum().item<int64_t>(), expected.numel() * 9 / 10) << shape;
    EXPECT_TRUE(torch::equal(labels.masked_select(decided), expected.masked_select(decided))) << shape;
    EXPECT_GT(std::get<0>(torch::_unique(expected)).numel(), 3) << shape;  // several classes win somewhere
    EXPECT_EQ(argmax.labelled(), expected.numel());
  }
}

// Classes that form regions (a trained model's peaked logits): only voxels in cells across a
// region's border are interpolated, and the labels are still the resized argmax.
TEST(Resample, TrilinearArgmaxInterpolatesOnlyAtRegionBorders) {
  torch::manual_seed(3);
  const int64_t k = 9, depth = 6, side = 24;
  const torch::Tensor y = torch::arange(side).div(8, "floor").view({1, side, 1}), x = torch::arange(side).div(8, "floor").view({1, 1, side});
  const torch::Tensor regions = (y * 3 + x).expand({depth, side, side});  // 3 x 3 boxes of 8 x 8
  const torch::Tensor logits = (5 * torch::one_hot(regions, k).permute({3, 0, 1, 2}).to(torch::kFloat32) + 0.1 * torch::randn({k, depth, side, side})).contiguous();
  const std::array<int64_t, 3> out{11, 70, 70};
  const torch::Tensor expected = torch::upsample_trilinear3d(logits.unsqueeze(0), {out[0], out[1], out[2]}, false).squeeze(0).argmax(0).to(torch::kUInt8);
  TrilinearArgmax argmax(k, side, side, out[1], out[2]);
  auto plane = [&](int64_t r) { return LogitPlane{logits.data_ptr<float>() + r * side * side, depth * side * side, side}; };
  std::vector<std::vector<uint8_t>> tops;
  for (int64_t r = 0; r < depth; ++r) tops.push_back(argmax.TopClasses(plane(r)));
  torch::Tensor labels = torch::empty({out[0], out[1], out[2]}, torch::kUInt8);
  for (int64_t o = 0; o < out[0]; ++o) {
    const LinearTap t = GridLinearTap(o, depth, out[0]);
    argmax.Slice(t.i0, plane(t.i0), tops[t.i0].data(), t.i1, plane(t.i1), tops[t.i1].data(), static_cast<float>(t.w1), labels[o].data_ptr<uint8_t>());
  }
  EXPECT_TRUE(torch::equal(labels, expected));
  // The cells across the two inner borders of each axis: about 2 x 2 / 23 of the rows and columns.
  EXPECT_GT(argmax.interpolated(), 0);
  EXPECT_LT(argmax.interpolated(), argmax.labelled() * 3 / 10);
}

TEST(Resample, NormalizedTopClassesDividesInPlaceLikeTheTensors) {
  // The export divides the sliding window's weighted sums by the Gaussian's sums as it first reads
  // a row: afterwards the row must hold exactly what dividing the tensors gives, and the top
  // classes must be those of the divided row. Weights vary per voxel, so the division matters.
  torch::manual_seed(5);
  const int64_t k = 20, h = 9, w = 37;
  const torch::Tensor sums = torch::randn({k, h, w + 3}) * 10;  // a strided view, as the window's rows are
  const torch::Tensor weights = torch::rand({h, w + 5}) * 8 + 0.5;
  const torch::Tensor row = sums.narrow(2, 1, w).clone(), weight = weights.narrow(1, 2, w);
  const torch::Tensor expected = row / weight;
  const torch::Tensor view = sums.narrow(2, 1, w);
  view.copy_(row);
  TrilinearArgmax argmax(k, h, w, h, w);
  const std::vector<uint8_t> top =
      argmax.NormalizedTopClasses(view.data_ptr<float>(), view.stride(0), view.stride(1), weight.data_ptr<float>(), weight.stride(0));
  EXPECT_TRUE(torch::equal(view, expected));
  const torch::Tensor divided = expected.contiguous();
  EXPECT_EQ(top, argmax.TopClasses({divided.data_ptr<float>(), h * w, w}));
  int64_t decided = 0;
  for (uint8_t t : top) decided += t != TrilinearArgmax::kNoTop;
  EXPECT_GT(decided, h * w * 9 / 10);
}

TEST(Resample, TrilinearArgmaxBreaksTiesLikeArgmax) {
  // All classes equal: the lowest wins, as argmax's first maximum does.
  const torch::Tensor flat = torch::ones({5, 6, 6});
  TrilinearArgmax argmax(5, 6, 6, 10, 10);
  const LogitPlane plane{flat.data_ptr<float>(), 36, 6};
  const std::vector<uint8_t> top = argmax.TopClasses(plane);
  EXPECT_EQ(top[0], TrilinearArgmax::kNoTop);
  torch::Tensor labels = torch::empty({10, 10}, torch::kUInt8);
  argmax.Slice(0, plane, top.data(), 0, plane, top.data(), 0.0f, labels.data_ptr<uint8_t>());
  EXPECT_EQ(labels.max().item<int>(), 0);
  EXPECT_EQ(argmax.interpolated(), 100);
}

}  // namespace
}  // namespace tucker_seg
