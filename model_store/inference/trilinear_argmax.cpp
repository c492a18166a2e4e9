#include "model_store/inference/trilinear_argmax.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "model_store/inference/resample.h"

namespace tucker_seg {
namespace {

// How far apart two logits must be for their order to survive the interpolation's rounding.
float Rounding(float v) { return 1e-5f * (1.0f + std::abs(v)); }

// One class's values into the running best, second best and best class of n voxels. Cloned for
// AVX-512 and AVX2 (picked at load time): GCC vectorises its selects only with blend instructions,
// which the baseline x86-64 build lacks.
__attribute__((target_clones("avx512f", "avx2", "default"))) void AddClass(const float* v, int32_t c, int64_t n,
                                                                            float* __restrict best, float* __restrict second,
                                                                            int32_t* __restrict index) {
  for (int64_t j = 0; j < n; ++j) {
    const float vj = v[j], bj = best[j], sj = second[j];
    const int32_t ij = index[j];
    const bool better = vj > bj;  // strict: a tie keeps the lower class, as argmax does
    index[j] = better ? c : ij;
    second[j] = better ? bj : (vj > sj ? vj : sj);
    best[j] = better ? vj : bj;
  }
}

// The smallest and largest of each cell's 4 corners (rows p0, p1; columns x, x + 1) for cells
// first..last, each with a right neighbour. Cloned like AddClass.
__attribute__((target_clones("avx512f", "avx2", "default"))) void CornerRange(const float* p0, const float* p1, int64_t first,
                                                                               int64_t last, float* __restrict smallest,
                                                                               float* __restrict largest) {
  for (int64_t x = first; x <= last; ++x) {
    smallest[x] = std::min(std::min(p0[x], p0[x + 1]), std::min(p1[x], p1[x + 1]));
    largest[x] = std::max(std::max(p0[x], p0[x + 1]), std::max(p1[x], p1[x + 1]));
  }
}

// out[x] = a[x] + w (b[x] - a[x]) for x in from..to, in torch::lerp's two forms (so that a slice
// gets the values LibTorch's path gets), each its own loop so that both vectorise. Cloned like AddClass.
__attribute__((target_clones("avx512f", "avx2", "default"))) void LerpRow(const float* a, const float* b, float w, int64_t from,
                                                                           int64_t to, float* __restrict out) {
  if (w < 0.5f) {
    for (int64_t x = from; x <= to; ++x) out[x] = a[x] + w * (b[x] - a[x]);
  } else {
    for (int64_t x = from; x <= to; ++x) out[x] = b[x] - (b[x] - a[x]) * (1.0f - w);
  }
}

}  // namespace

TrilinearArgmax::TrilinearArgmax(int64_t classes, int64_t h, int64_t w, int64_t out_h, int64_t out_w)
    : k_(classes), h_(h), w_(w), out_h_(out_h), out_w_(out_w) {
  auto taps = [](int64_t in, int64_t n) {
    std::vector<Tap> t(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const LinearTap l = GridLinearTap(i, in, n);
      t[static_cast<size_t>(i)] = {l.i0, l.i1, static_cast<float>(l.w1)};
    }
    return t;
  };
  ty_ = taps(h, out_h);
  tx_ = taps(w, out_w);
  uniform_.assign(static_cast<size_t>(h * w), kNoTop);
  first_.assign(static_cast<size_t>(h), 0);
  last_.assign(static_cast<size_t>(h), -1);
}

std::vector<uint8_t> TrilinearArgmax::TopClasses(const LogitPlane& p) const {
  std::vector<uint8_t> top(static_cast<size_t>(h_ * w_));
  at::parallel_for(0, h_, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> best(static_cast<size_t>(w_)), second(static_cast<size_t>(w_));
    std::vector<int32_t> index(static_cast<size_t>(w_));
    for (int64_t i = begin; i < end; ++i) {
      const float* row = p.data + i * p.row_stride;
      std::copy(row, row + w_, best.begin());
      std::fill(second.begin(), second.end(), -std::numeric_limits<float>::infinity());
      std::fill(index.begin(), index.end(), 0);
      for (int64_t c = 1; c < k_; ++c) AddClass(row + c * p.class_stride, static_cast<int32_t>(c), w_, best.data(), second.data(), index.data());
      uint8_t* out = top.data() + i * w_;
      for (int64_t j = 0; j < w_; ++j) out[j] = best[j] - second[j] > Rounding(best[j]) ? static_cast<uint8_t>(index[j]) : kNoTop;
    }
  });
  return top;
}

void TrilinearArgmax::UniformCells(const uint8_t* top_a, const uint8_t* top_b) {
  for (int64_t y = 0; y < h_; ++y) {
    const int64_t y1 = std::min(y + 1, h_ - 1);
    first_[y] = w_;
    last_[y] = -1;
    for (int64_t x = 0; x < w_; ++x) {
      const int64_t x1 = std::min(x + 1, w_ - 1);
      const uint8_t t = top_a[y * w_ + x];
      const bool uniform = t != kNoTop && top_a[y * w_ + x1] == t && top_a[y1 * w_ + x] == t && top_a[y1 * w_ + x1] == t &&
                           top_b[y * w_ + x] == t && top_b[y * w_ + x1] == t && top_b[y1 * w_ + x] == t && top_b[y1 * w_ + x1] == t;
      uniform_[y * w_ + x] = uniform ? t : kNoTop;
      if (!uniform) first_[y] = std::min(first_[y], x), last_[y] = x;
    }
  }
}

void TrilinearArgmax::Slice(int64_t r0, const LogitPlane& a, const uint8_t* top_a, int64_t r1, const LogitPlane& b,
                            const uint8_t* top_b, float wz, uint8_t* out) {
  if (r0 != r0_ || r1 != r1_) {
    UniformCells(top_a, top_b);
    r0_ = r0;
    r1_ = r1;
  }
  // The plane the boundary cells interpolate in: row a itself, or a and b interpolated along z
  // (torch::lerp's formula) for the rows that the cells which are not uniform touch.
  LogitPlane plane = a;
  if (r1 != r0 && wz != 0) {
    if (plane_.empty()) plane_.resize(static_cast<size_t>(k_ * h_ * w_));
    plane = {plane_.data(), h_ * w_, w_};
    at::parallel_for(0, h_, 4, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t above = std::max<int64_t>(i - 1, 0);
        const bool needed = last_[i] >= 0 || last_[above] >= 0;  // cell rows i and i - 1 have corners on row i
        if (!needed) continue;
        const int64_t from = std::min(first_[i], first_[above]), to = std::min(w_ - 1, std::max(last_[i], last_[above]) + 1);
        for (int64_t c = 0; c < k_; ++c) {
          const float* ra = a.data + c * a.class_stride + i * a.row_stride;
          const float* rb = b.data + c * b.class_stride + i * b.row_stride;
          LerpRow(ra, rb, wz, from, to, plane_.data() + (c * h_ + i) * w_);
        }
      }
    });
  }
  std::atomic<int64_t> interpolated{0};
  at::parallel_for(0, out_h_, 8, [&](int64_t begin, int64_t end) {
    // The candidates of the cells of one row of cells (source rows cy, cy + 1), over the span of
    // cells that are not uniform: a class can win inside a cell only if its largest corner reaches
    // the largest smallest corner of any class there (every interpolated value lies between its
    // cell's corners). All cells of the span at once, so that the loops over x vectorise.
    std::vector<float> lower(static_cast<size_t>(w_)), corner_min(static_cast<size_t>(w_)), corner_max(static_cast<size_t>(w_));
    std::vector<uint8_t> candidates(static_cast<size_t>(w_ * k_));
    std::vector<int> counts(static_cast<size_t>(w_));
    int64_t cell_row = -1;
    int64_t mine = 0;
    for (int64_t y = begin; y < end; ++y) {
      const Tap& ty = ty_[static_cast<size_t>(y)];
      const int64_t cy = ty.i0, first = first_[cy], last = last_[cy];
      if (last >= 0 && cy != cell_row) {
        cell_row = cy;
        auto corners = [&](int64_t c) {
          const float* p0 = plane.data + c * plane.class_stride + ty.i0 * plane.row_stride;
          const float* p1 = plane.data + c * plane.class_stride + ty.i1 * plane.row_stride;
          CornerRange(p0, p1, first, std::min(last, w_ - 2), corner_min.data(), corner_max.data());
          if (last == w_ - 1) {
            corner_min[last] = std::min(p0[last], p1[last]);
            corner_max[last] = std::max(p0[last], p1[last]);
          }
        };
        std::fill(lower.begin() + first, lower.begin() + last + 1, -std::numeric_limits<float>::infinity());
        for (int64_t c = 0; c < k_; ++c) {
          corners(c);
          for (int64_t x = first; x <= last; ++x) lower[x] = std::max(lower[x], corner_min[x]);
        }
        for (int64_t x = first; x <= last; ++x) lower[x] -= Rounding(lower[x]);
        std::fill(counts.begin() + first, counts.begin() + last + 1, 0);
        for (int64_t c = 0; c < k_; ++c) {
          corners(c);
          for (int64_t x = first; x <= last; ++x) {
            if (corner_max[x] >= lower[x]) candidates[x * k_ + counts[x]++] = static_cast<uint8_t>(c);
          }
        }
      }
      for (int64_t x = 0; x < out_w_; ++x) {
        const Tap& tx = tx_[static_cast<size_t>(x)];
        const uint8_t uniform = uniform_[cy * w_ + tx.i0];
        if (uniform != kNoTop) {
          out[y * out_w_ + x] = uniform;
          continue;
        }
        const uint8_t* cell = candidates.data() + tx.i0 * k_;
        const int n = counts[tx.i0];
        uint8_t best = cell[0];
        if (n > 1) {
          ++mine;
          const float w00 = (1 - ty.w1) * (1 - tx.w1), w01 = (1 - ty.w1) * tx.w1, w10 = ty.w1 * (1 - tx.w1), w11 = ty.w1 * tx.w1;
          float best_value = -std::numeric_limits<float>::infinity();
          for (int i = 0; i < n; ++i) {  // candidates in class order: the first maximum wins
            const uint8_t c = cell[i];
            const float* p0 = plane.data + c * plane.class_stride + ty.i0 * plane.row_stride;
            const float* p1 = plane.data + c * plane.class_stride + ty.i1 * plane.row_stride;
            const float v = w00 * p0[tx.i0] + w01 * p0[tx.i1] + w10 * p1[tx.i0] + w11 * p1[tx.i1];
            if (v > best_value) best_value = v, best = c;
          }
        }
        out[y * out_w_ + x] = best;
      }
    }
    interpolated += mine;
  });
  labelled_ += out_h_ * out_w_;
  interpolated_ += interpolated.load();
}

}  // namespace tucker_seg
