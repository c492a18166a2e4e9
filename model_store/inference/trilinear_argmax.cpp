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

// torch::lerp's formula, so that a slice between two rows gets the values LibTorch's path gets.
float Lerp(float a, float b, float w) { return w < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w); }

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
  count_.assign(static_cast<size_t>(h * w), 0);
  candidates_.assign(static_cast<size_t>(h * w * k_), 0);
}

std::vector<uint8_t> TrilinearArgmax::TopClasses(const LogitPlane& p) const {
  std::vector<uint8_t> top(static_cast<size_t>(h_ * w_));
  at::parallel_for(0, h_, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> best(static_cast<size_t>(w_)), second(static_cast<size_t>(w_));
    std::vector<uint8_t> index(static_cast<size_t>(w_));
    for (int64_t i = begin; i < end; ++i) {
      const float* row = p.data + i * p.row_stride;
      std::copy(row, row + w_, best.begin());
      std::fill(second.begin(), second.end(), -std::numeric_limits<float>::infinity());
      std::fill(index.begin(), index.end(), 0);
      for (int64_t c = 1; c < k_; ++c) {
        const float* v = row + c * p.class_stride;
        for (int64_t j = 0; j < w_; ++j) {
          const bool better = v[j] > best[j];  // strict: a tie keeps the lower class, as argmax does
          second[j] = better ? best[j] : std::max(second[j], v[j]);
          best[j] = better ? v[j] : best[j];
          index[j] = better ? static_cast<uint8_t>(c) : index[j];
        }
      }
      uint8_t* out = top.data() + i * w_;
      for (int64_t j = 0; j < w_; ++j) out[j] = best[j] - second[j] > Rounding(best[j]) ? index[j] : kNoTop;
    }
  });
  return top;
}

void TrilinearArgmax::Candidates(const LogitPlane& a, const uint8_t* top_a, const LogitPlane& b, const uint8_t* top_b) {
  at::parallel_for(0, h_, 2, [&](int64_t begin, int64_t end) {
    std::vector<float> lower(static_cast<size_t>(w_)), column_min(static_cast<size_t>(w_)), column_max(static_cast<size_t>(w_));
    std::vector<char> uniform(static_cast<size_t>(w_));
    for (int64_t y = begin; y < end; ++y) {
      const int64_t y1 = std::min(y + 1, h_ - 1);
      // Cells whose 8 corners agree on a strict best class; the others span [first, last].
      int64_t first = w_, last = -1;
      for (int64_t x = 0; x < w_; ++x) {
        const int64_t x1 = std::min(x + 1, w_ - 1);
        const uint8_t t = top_a[y * w_ + x];
        uniform[x] = t != kNoTop && top_a[y * w_ + x1] == t && top_a[y1 * w_ + x] == t && top_a[y1 * w_ + x1] == t &&
                     top_b[y * w_ + x] == t && top_b[y * w_ + x1] == t && top_b[y1 * w_ + x] == t && top_b[y1 * w_ + x1] == t;
        count_[y * w_ + x] = uniform[x] ? 1 : 0;
        candidates_[(y * w_ + x) * k_] = t;
        if (!uniform[x]) first = std::min(first, x), last = x;
      }
      if (last < 0) continue;
      // Over [first, last]: a class can win inside a cell only if its largest corner reaches the
      // largest smallest corner of any class there (every interpolated value lies between its
      // cell's corners).
      auto corners = [&](int64_t c) {
        const float* rows[4] = {a.data + c * a.class_stride + y * a.row_stride, a.data + c * a.class_stride + y1 * a.row_stride,
                                b.data + c * b.class_stride + y * b.row_stride, b.data + c * b.class_stride + y1 * b.row_stride};
        const int64_t stop = std::min(last + 1, w_ - 1);
        for (int64_t x = first; x <= stop; ++x) {
          column_min[x] = std::min(std::min(rows[0][x], rows[1][x]), std::min(rows[2][x], rows[3][x]));
          column_max[x] = std::max(std::max(rows[0][x], rows[1][x]), std::max(rows[2][x], rows[3][x]));
        }
      };
      auto cell = [&](const std::vector<float>& column, int64_t x, bool largest) {
        const int64_t x1 = std::min(x + 1, w_ - 1);
        return largest ? std::max(column[x], column[x1]) : std::min(column[x], column[x1]);
      };
      std::fill(lower.begin() + first, lower.begin() + last + 1, -std::numeric_limits<float>::infinity());
      for (int64_t c = 0; c < k_; ++c) {
        corners(c);
        for (int64_t x = first; x <= last; ++x) lower[x] = std::max(lower[x], cell(column_min, x, false));
      }
      for (int64_t x = first; x <= last; ++x) lower[x] -= Rounding(lower[x]);
      for (int64_t c = 0; c < k_; ++c) {
        corners(c);
        for (int64_t x = first; x <= last; ++x) {
          const int64_t i = y * w_ + x;
          if (uniform[x]) continue;
          if (cell(column_max, x, true) >= lower[x]) candidates_[i * k_ + count_[i]++] = static_cast<uint8_t>(c);
        }
      }
    }
  });
}

void TrilinearArgmax::Slice(int64_t r0, const LogitPlane& a, const uint8_t* top_a, int64_t r1, const LogitPlane& b,
                            const uint8_t* top_b, float wz, uint8_t* out) {
  if (r0 != r0_ || r1 != r1_) {
    Candidates(a, top_a, b, top_b);
    r0_ = r0;
    r1_ = r1;
  }
  std::atomic<int64_t> interpolated{0};
  at::parallel_for(0, out_h_, 8, [&](int64_t begin, int64_t end) {
    int64_t mine = 0;
    for (int64_t y = begin; y < end; ++y) {
      const Tap& ty = ty_[static_cast<size_t>(y)];
      for (int64_t x = 0; x < out_w_; ++x) {
        const Tap& tx = tx_[static_cast<size_t>(x)];
        const int64_t cell = ty.i0 * w_ + tx.i0;
        const uint8_t* classes = candidates_.data() + cell * k_;
        const int n = count_[cell];
        if (n == 1) {
          out[y * out_w_ + x] = classes[0];
          continue;
        }
        ++mine;
        const float w00 = (1 - ty.w1) * (1 - tx.w1), w01 = (1 - ty.w1) * tx.w1, w10 = ty.w1 * (1 - tx.w1), w11 = ty.w1 * tx.w1;
        uint8_t best = classes[0];
        float best_value = -std::numeric_limits<float>::infinity();
        for (int i = 0; i < n; ++i) {  // candidates in class order: the first maximum wins
          const uint8_t c = classes[i];
          const float* a0 = a.data + c * a.class_stride + ty.i0 * a.row_stride;
          const float* a1 = a.data + c * a.class_stride + ty.i1 * a.row_stride;
          const float* b0 = b.data + c * b.class_stride + ty.i0 * b.row_stride;
          const float* b1 = b.data + c * b.class_stride + ty.i1 * b.row_stride;
          const float v = w00 * Lerp(a0[tx.i0], b0[tx.i0], wz) + w01 * Lerp(a0[tx.i1], b0[tx.i1], wz) +
                          w10 * Lerp(a1[tx.i0], b1[tx.i0], wz) + w11 * Lerp(a1[tx.i1], b1[tx.i1], wz);
          if (v > best_value) best_value = v, best = c;
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
