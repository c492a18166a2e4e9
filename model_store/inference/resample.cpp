#include "model_store/inference/resample.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace tucker_seg {
namespace {

int64_t Mirror(int64_t i, int64_t n) {
  if (n == 1) return 0;
  const int64_t period = 2 * (n - 1);
  i = std::abs(i) % period;
  return i < n ? i : period - i;
}

// In-place cubic B-spline prefilter of one line (Unser's recursive filter, mirror boundary).
void Prefilter(std::vector<double>& c) {
  const int64_t n = static_cast<int64_t>(c.size());
  if (n < 2) return;
  const double z = std::sqrt(3.0) - 2.0;
  for (auto& v : c) v *= 6.0;  // (1 - z)(1 - 1/z)
  // Causal initialisation: sum over the mirrored signal, truncated when z^k is negligible.
  const int64_t horizon = std::min<int64_t>(n, 30);
  double sum = c[0], zk = z;
  for (int64_t k = 1; k < horizon; ++k, zk *= z) sum += zk * c[k];
  c[0] = sum;
  for (int64_t k = 1; k < n; ++k) c[k] += z * c[k - 1];
  c[n - 1] = (z / (z * z - 1.0)) * (z * c[n - 2] + c[n - 1]);
  for (int64_t k = n - 2; k >= 0; --k) c[k] = z * (c[k + 1] - c[k]);
}

// Where output sample i reads: its 4 B-spline taps (mirrored into the line) and their weights.
struct CubicTaps {
  int64_t index[4];
  double weight[4];
};

// Resamples along the last dimension of a contiguous (lines, in) tensor to (lines, out).
torch::Tensor ResampleLines(const torch::Tensor& lines, int64_t out, bool nearest) {
  const int64_t count = lines.size(0), in = lines.size(1);
  auto result = torch::empty({count, out}, lines.options());
  const float* src = lines.data_ptr<float>();
  float* dst = result.data_ptr<float>();
  // The taps are the same for every line.
  std::vector<CubicTaps> taps(static_cast<size_t>(out));
  for (int64_t i = 0; i < out; ++i) {
    const double x = GridSourceCoordinate(i, in, out);
    CubicTaps& tap = taps[static_cast<size_t>(i)];
    if (nearest) {
      tap.index[0] = static_cast<int64_t>(std::floor(x + 0.5));
      continue;
    }
    const auto j = static_cast<int64_t>(std::floor(x));
    const double t = x - static_cast<double>(j);
    const double w[4] = {(1 - t) * (1 - t) * (1 - t) / 6.0, (3 * t * t * t - 6 * t * t + 4) / 6.0,
                         (-3 * t * t * t + 3 * t * t + 3 * t + 1) / 6.0, t * t * t / 6.0};
    for (int k = 0; k < 4; ++k) tap.index[k] = Mirror(j - 1 + k, in), tap.weight[k] = w[k];
  }
  at::parallel_for(0, count, 16, [&](int64_t begin, int64_t end) {
    std::vector<double> c(static_cast<size_t>(in));
    for (int64_t l = begin; l < end; ++l) {
      const float* s = src + l * in;
      float* d = dst + l * out;
      if (nearest) {
        for (int64_t i = 0; i < out; ++i) d[i] = s[taps[static_cast<size_t>(i)].index[0]];
        continue;
      }
      for (int64_t k = 0; k < in; ++k) c[k] = s[k];
      Prefilter(c);
      for (int64_t i = 0; i < out; ++i) {
        const CubicTaps& tap = taps[static_cast<size_t>(i)];
        double v = 0;
        for (int k = 0; k < 4; ++k) v += tap.weight[k] * c[static_cast<size_t>(tap.index[k])];
        d[i] = static_cast<float>(v);
      }
    }
  });
  return result;
}

}  // namespace

double GridSourceCoordinate(int64_t i, int64_t in, int64_t out) {
  const double c = (static_cast<double>(i) + 0.5) * static_cast<double>(in) / static_cast<double>(out) - 0.5;
  return std::clamp(c, 0.0, static_cast<double>(in - 1));
}

LinearTap GridLinearTap(int64_t i, int64_t in, int64_t out) {
  const double c = GridSourceCoordinate(i, in, out);
  const auto i0 = static_cast<int64_t>(std::floor(c));
  return {i0, std::min(i0 + 1, in - 1), c - static_cast<double>(i0)};
}

int SeparateZAxis(const std::array<double, 3>& current, const std::array<double, 3>& target) {
  for (const auto* s : {&current, &target}) {
    const double hi = *std::max_element(s->begin(), s->end()), lo = *std::min_element(s->begin(), s->end());
    if (hi / lo <= 3.0) continue;
    int coarse = -1, count = 0;
    for (int a = 0; a < 3; ++a)
      if ((*s)[a] == hi) coarse = a, ++count;
    return count == 1 ? coarse : -1;
  }
  return -1;
}

torch::Tensor ResampleCubic(const torch::Tensor& volume, const Int3& shape, int nearest_axis) {
  torch::Tensor v = volume.to(torch::kFloat32);
  // Shrinking axes first keeps the intermediate volumes small.
  std::array<int, 3> order{0, 1, 2};
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    return static_cast<double>(shape[a]) / volume.size(a) < static_cast<double>(shape[b]) / volume.size(b);
  });
  for (int axis : order) {
    if (v.size(axis) == shape[axis]) continue;
    auto moved = v.movedim(axis, 2).contiguous();
    const auto sizes = moved.sizes().vec();
    auto lines = ResampleLines(moved.view({-1, sizes[2]}), shape[axis], axis == nearest_axis);
    v = lines.view({sizes[0], sizes[1], shape[axis]}).movedim(2, axis);
  }
  return v.contiguous();
}

}  // namespace tucker_seg
