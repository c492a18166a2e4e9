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

// Where output sample i reads: its 4 B-spline taps (mirrored into the line) and their weights.
struct CubicTaps {
  int64_t index[4];
  double weight[4];
};

// The taps are the same for every line of an axis.
std::vector<CubicTaps> TapsFor(int64_t in, int64_t out, bool nearest) {
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
  return taps;
}

// Resamples L lines at once (`lanes` <= L of them valid), which start at src and dst, neighbours in
// memory, each with its samples `stride` floats apart: the cubic B-spline prefilter (Unser's
// recursive filter, mirror boundary) in place in `c` (in x L doubles), then the taps. Each line
// gets the same arithmetic whatever L is; with L > 1 every step is one vector operation across the
// lines, and no transposed copy is needed.
template <int64_t L>
inline __attribute__((always_inline)) void ResampleLanes(const float* src, int64_t in, int64_t stride, int64_t lanes, const CubicTaps* taps,
                                                        int64_t out, double* __restrict c, float* dst) {
  for (int64_t k = 0; k < in; ++k)
    for (int64_t l = 0; l < L; ++l) c[k * L + l] = l < lanes ? static_cast<double>(src[k * stride + l]) : 0.0;
  if (in >= 2) {
    const double z = std::sqrt(3.0) - 2.0;
    for (int64_t k = 0; k < in * L; ++k) c[k] *= 6.0;  // (1 - z)(1 - 1/z)
    // Causal initialisation: sum over the mirrored signal, truncated when z^k is negligible.
    const int64_t horizon = std::min<int64_t>(in, 30);
    double sum[L];
    for (int64_t l = 0; l < L; ++l) sum[l] = c[l];
    double zk = z;
    for (int64_t k = 1; k < horizon; ++k, zk *= z)
      for (int64_t l = 0; l < L; ++l) sum[l] += zk * c[k * L + l];
    for (int64_t l = 0; l < L; ++l) c[l] = sum[l];
    for (int64_t k = 1; k < in; ++k)
      for (int64_t l = 0; l < L; ++l) c[k * L + l] += z * c[(k - 1) * L + l];
    double* last = c + (in - 1) * L;
    for (int64_t l = 0; l < L; ++l) last[l] = (z / (z * z - 1.0)) * (z * last[l - L] + last[l]);
    for (int64_t k = in - 2; k >= 0; --k)
      for (int64_t l = 0; l < L; ++l) c[k * L + l] = z * (c[(k + 1) * L + l] - c[k * L + l]);
  }
  for (int64_t i = 0; i < out; ++i) {
    const CubicTaps& tap = taps[i];
    double v[L] = {};
    for (int k = 0; k < 4; ++k)
      for (int64_t l = 0; l < L; ++l) v[l] += tap.weight[k] * c[tap.index[k] * L + l];
    for (int64_t l = 0; l < lanes; ++l) dst[i * stride + l] = static_cast<float>(v[l]);
  }
}

// Lines along the middle dimension of an (outer, in, inner) volume, kPanel neighbours along `inner`
// at a time; cloned for AVX-512 and AVX2 like the export's loops.
constexpr int64_t kPanel = 8;
__attribute__((target_clones("avx512f", "avx2", "default"))) void ResamplePanel(const float* src, int64_t in, int64_t stride, int64_t lanes,
                                                                                 const CubicTaps* taps, int64_t out, double* __restrict c,
                                                                                 float* dst) {
  ResampleLanes<kPanel>(src, in, stride, lanes, taps, out, c, dst);
}

// Resamples along the middle dimension of a contiguous (outer, in, inner) tensor to (outer, out,
// inner); inner == 1 takes the lines one at a time.
torch::Tensor ResampleAxis(const torch::Tensor& volume, int64_t out, bool nearest) {
  const int64_t outer = volume.size(0), in = volume.size(1), inner = volume.size(2);
  auto result = torch::empty({outer, out, inner}, volume.options());
  const float* src = volume.data_ptr<float>();
  float* dst = result.data_ptr<float>();
  const std::vector<CubicTaps> taps = TapsFor(in, out, nearest);
  if (nearest) {
    at::parallel_for(0, outer, 1, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o)
        for (int64_t i = 0; i < out; ++i)
          std::memcpy(dst + (o * out + i) * inner, src + (o * in + taps[static_cast<size_t>(i)].index[0]) * inner,
                      static_cast<size_t>(inner) * sizeof(float));
    });
    return result;
  }
  if (inner == 1) {  // lines contiguous: one at a time
    at::parallel_for(0, outer, 16, [&](int64_t begin, int64_t end) {
      std::vector<double> c(static_cast<size_t>(in));
      for (int64_t l = begin; l < end; ++l) ResampleLanes<1>(src + l * in, in, 1, 1, taps.data(), out, c.data(), dst + l * out);
    });
    return result;
  }
  const int64_t panels_per_row = (inner + kPanel - 1) / kPanel;
  at::parallel_for(0, outer * panels_per_row, 8, [&](int64_t begin, int64_t end) {
    std::vector<double> c(static_cast<size_t>(in * kPanel));
    for (int64_t p = begin; p < end; ++p) {
      const int64_t o = p / panels_per_row, first = p % panels_per_row * kPanel;
      ResamplePanel(src + o * in * inner + first, in, inner, std::min(kPanel, inner - first), taps.data(), out, c.data(),
                    dst + o * out * inner + first);
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
  torch::Tensor v = volume.to(torch::kFloat32).contiguous();
  // Shrinking axes first keeps the intermediate volumes small; among equal ratios the last axis
  // (whose lines are resampled one at a time) comes last, on the smallest volume.
  std::array<int, 3> order{0, 1, 2};
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return static_cast<double>(shape[a]) / volume.size(a) < static_cast<double>(shape[b]) / volume.size(b);
  });
  for (int axis : order) {
    if (v.size(axis) == shape[axis]) continue;
    std::vector<int64_t> sizes = v.sizes().vec();
    int64_t outer = 1, inner = 1;
    for (int a = 0; a < axis; ++a) outer *= sizes[static_cast<size_t>(a)];
    for (int a = axis + 1; a < 3; ++a) inner *= sizes[static_cast<size_t>(a)];
    sizes[static_cast<size_t>(axis)] = shape[axis];
    v = ResampleAxis(v.view({outer, v.size(axis), inner}), shape[axis], axis == nearest_axis).view(sizes);
  }
  return v;
}

}  // namespace tucker_seg
