#include "model_store/inference/trilinear_argmax.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "model_store/inference/resample.h"
#include "vocabulary/cpu_isa.h"

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

// row[x] /= divisor[x]: IEEE division, so the values are those of dividing the tensors. Cloned like AddClass.
__attribute__((target_clones("avx512f", "avx2", "default"))) void DivideRow(float* __restrict row, const float* __restrict divisor, int64_t n) {
  for (int64_t x = 0; x < n; ++x) row[x] /= divisor[x];
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

// The labels of one block of up to 16 output columns of one output row: every class interpolated
// along y between its rows r0 and r1 (network columns base ..), then along x at each column's two
// taps (lane0/lane1, relative to base), kept where it beats the best so far (strict: the first
// maximum wins, as argmax's).
struct BlockRows {
  const float* r0;  // class 0's row r0 at the block's base column
  const float* r1;
  int64_t class_stride, classes;
  int64_t columns;  // valid columns from base: a load must not read past the row's end
};

// On AVX-512, when the taps lie within 16 columns of base, for R output rows that interpolate
// between the same two network rows (at weights wy): per class two loads and four permutes give
// both rows' values at the 16 columns' taps, interpolated along x once; each output row then
// takes one more interpolation along y. No gathers.
template <int R>
__attribute__((target("avx512f"))) void BlockArgmax16(const BlockRows& rows, const float* wy, const int32_t* lane0, const int32_t* lane1,
                                                      const float* weight, int lanes, uint8_t* const* out) {
  const __m512i i0 = _mm512_loadu_si512(lane0), i1 = _mm512_loadu_si512(lane1);
  const __m512 wx = _mm512_loadu_ps(weight);
  const __mmask16 valid = static_cast<__mmask16>(rows.columns >= 16 ? 0xFFFF : (1u << rows.columns) - 1);
  __m512 best[R], wys[R];
  __m512i index[R];
  for (int r = 0; r < R; ++r) {
    best[r] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    index[r] = _mm512_setzero_si512();
    wys[r] = _mm512_set1_ps(wy[r]);
  }
  for (int64_t c = 0; c < rows.classes; ++c) {
    const __m512 above = _mm512_maskz_loadu_ps(valid, rows.r0 + c * rows.class_stride);
    const __m512 below = _mm512_maskz_loadu_ps(valid, rows.r1 + c * rows.class_stride);
    // The masked form: the plain one makes GCC 12 warn about its undefined pass-through operand.
    const __m512 a0 = _mm512_mask_permutexvar_ps(above, 0xFFFF, i0, above), a1 = _mm512_mask_permutexvar_ps(above, 0xFFFF, i1, above);
    const __m512 b0 = _mm512_mask_permutexvar_ps(below, 0xFFFF, i0, below), b1 = _mm512_mask_permutexvar_ps(below, 0xFFFF, i1, below);
    const __m512 a = _mm512_fmadd_ps(wx, _mm512_sub_ps(a1, a0), a0), b = _mm512_fmadd_ps(wx, _mm512_sub_ps(b1, b0), b0);
    const __m512 d = _mm512_sub_ps(b, a);
    const __m512i class_index = _mm512_set1_epi32(static_cast<int32_t>(c));
    for (int r = 0; r < R; ++r) {
      const __m512 v = _mm512_fmadd_ps(wys[r], d, a);
      const __mmask16 better = _mm512_cmp_ps_mask(v, best[r], _CMP_GT_OQ);
      best[r] = _mm512_mask_mov_ps(best[r], better, v);
      index[r] = _mm512_mask_mov_epi32(index[r], better, class_index);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_mask_cvtepi32_storeu_epi8(out[r], static_cast<__mmask16>((1u << lanes) - 1), index[r]);
}

// On AVX2 the same in two halves of 8 columns, each loaded from its own first left tap, when
// every tap of a half lies within 8 columns of it: per class and half, two loads and four
// permutes.
template <int R>
__attribute__((target("avx2,fma"))) void BlockArgmax8x2(const BlockRows& rows, const float* wy, const int32_t* lane0, const int32_t* lane1,
                                                        const float* weight, int lanes, uint8_t* const* out) {
  for (int first = 0; first < lanes; first += 8) {
    const int32_t base = lane0[first];
    const __m256i shift = _mm256_set1_epi32(base);
    const __m256i i0 = _mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lane0 + first)), shift);
    const __m256i i1 = _mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lane1 + first)), shift);
    const __m256 wx = _mm256_loadu_ps(weight + first);
    const int columns = static_cast<int>(std::min<int64_t>(8, rows.columns - base));
    const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(columns), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 best[R], index[R], wys[R];  // index: the class's int32 bits
    for (int r = 0; r < R; ++r) {
      best[r] = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
      index[r] = _mm256_setzero_ps();
      wys[r] = _mm256_set1_ps(wy[r]);
    }
    const float* r0 = rows.r0 + base;
    const float* r1 = rows.r1 + base;
    for (int64_t c = 0; c < rows.classes; ++c) {
      const __m256 above = _mm256_maskload_ps(r0 + c * rows.class_stride, valid);
      const __m256 below = _mm256_maskload_ps(r1 + c * rows.class_stride, valid);
      const __m256 a0 = _mm256_permutevar8x32_ps(above, i0), a1 = _mm256_permutevar8x32_ps(above, i1);
      const __m256 b0 = _mm256_permutevar8x32_ps(below, i0), b1 = _mm256_permutevar8x32_ps(below, i1);
      const __m256 a = _mm256_fmadd_ps(wx, _mm256_sub_ps(a1, a0), a0), b = _mm256_fmadd_ps(wx, _mm256_sub_ps(b1, b0), b0);
      const __m256 d = _mm256_sub_ps(b, a);
      const __m256 class_index = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int32_t>(c)));
      for (int r = 0; r < R; ++r) {
        const __m256 v = _mm256_fmadd_ps(wys[r], d, a);
        const __m256 better = _mm256_cmp_ps(v, best[r], _CMP_GT_OQ);
        best[r] = _mm256_blendv_ps(best[r], v, better);
        index[r] = _mm256_blendv_ps(index[r], class_index, better);
      }
    }
    for (int r = 0; r < R; ++r) {
      alignas(32) int32_t labels[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(labels), _mm256_castps_si256(index[r]));
      for (int l = first; l < std::min(lanes, first + 8); ++l) out[r][l] = static_cast<uint8_t>(labels[l - first]);
    }
  }
}

// Up to kRowsPerPass output rows at once, with the kernel of this CPU's instruction set.
constexpr int kRowsPerPass = 4;
template <int R>
void BlockArgmaxInRegister(const BlockRows& rows, const float* wy, const int32_t* lane0, const int32_t* lane1, const float* weight, int lanes,
                           uint8_t* const* out) {
  (CpuIsa() == Isa::kAvx512 ? BlockArgmax16<R> : BlockArgmax8x2<R>)(rows, wy, lane0, lane1, weight, lanes, out);
}
void BlockArgmaxRows(const BlockRows& rows, const float* wy, int count, const int32_t* lane0, const int32_t* lane1, const float* weight,
                     int lanes, uint8_t* const* out) {
  switch (count) {
    case 1: return BlockArgmaxInRegister<1>(rows, wy, lane0, lane1, weight, lanes, out);
    case 2: return BlockArgmaxInRegister<2>(rows, wy, lane0, lane1, weight, lanes, out);
    case 3: return BlockArgmaxInRegister<3>(rows, wy, lane0, lane1, weight, lanes, out);
    default: return BlockArgmaxInRegister<kRowsPerPass>(rows, wy, lane0, lane1, weight, lanes, out);
  }
}

// The same for any block whose taps lie further apart (the output is smaller than the network
// grid) and for CPUs without AVX2: classes outer, the block's columns inner, so that
// the columns vectorise (gathers on AVX2). Compiled with FMA where the CPU has it: without, each
// std::fma is a library call, and on an AVX2 CPU this loop took 0.7 s of a one-tile request of
// 118 classes.
inline __attribute__((always_inline)) void BlockArgmaxBody(const BlockRows& rows, float wy, const int32_t* lane0, const int32_t* lane1,
                                                           const float* weight, int lanes, uint8_t* out) {
  float best[16];
  int32_t index[16];
  for (int l = 0; l < 16; ++l) best[l] = -std::numeric_limits<float>::infinity(), index[l] = 0;
  for (int64_t c = 0; c < rows.classes; ++c) {
    const float* r0 = rows.r0 + c * rows.class_stride;
    const float* r1 = rows.r1 + c * rows.class_stride;
    for (int l = 0; l < lanes; ++l) {
      const float a = std::fma(wy, r1[lane0[l]] - r0[lane0[l]], r0[lane0[l]]);
      const float b = std::fma(wy, r1[lane1[l]] - r0[lane1[l]], r0[lane1[l]]);
      const float v = std::fma(weight[l], b - a, a);
      const bool better = v > best[l];  // strict: the first maximum wins, as argmax's
      best[l] = better ? v : best[l];
      index[l] = better ? static_cast<int32_t>(c) : index[l];
    }
  }
  for (int l = 0; l < lanes; ++l) out[l] = static_cast<uint8_t>(index[l]);
}
__attribute__((target("avx2,fma"))) void BlockArgmaxFma(const BlockRows& rows, float wy, const int32_t* lane0, const int32_t* lane1,
                                                        const float* weight, int lanes, uint8_t* out) {
  BlockArgmaxBody(rows, wy, lane0, lane1, weight, lanes, out);
}
void BlockArgmaxBaseline(const BlockRows& rows, float wy, const int32_t* lane0, const int32_t* lane1, const float* weight, int lanes,
                         uint8_t* out) {
  BlockArgmaxBody(rows, wy, lane0, lane1, weight, lanes, out);
}
void BlockArgmax(const BlockRows& rows, float wy, const int32_t* lane0, const int32_t* lane1, const float* weight, int lanes, uint8_t* out) {
  (CpuIsa() == Isa::kSse2 ? BlockArgmaxBaseline : BlockArgmaxFma)(rows, wy, lane0, lane1, weight, lanes, out);
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
  // Output columns in blocks of 16, each tap relative to the block's first left tap.
  const Isa isa = CpuIsa();
  const int64_t blocks = (out_w + kLanes - 1) / kLanes;
  blocks_.resize(static_cast<size_t>(blocks));
  lane0_.assign(static_cast<size_t>(blocks * kLanes), 0);
  lane1_.assign(static_cast<size_t>(blocks * kLanes), 0);
  lane_weight_.assign(static_cast<size_t>(blocks * kLanes), 0.0f);
  for (int64_t b = 0; b < blocks; ++b) {
    Block& block = blocks_[static_cast<size_t>(b)];
    block.first = b * kLanes;
    block.lanes = static_cast<int>(std::min(kLanes, out_w - block.first));
    block.base = tx_[static_cast<size_t>(block.first)].i0;
    // How far each lane's right tap lies from its vector's first left tap: the block's (AVX-512) or
    // its half's (AVX2).
    const int64_t width = isa == Isa::kAvx512 ? kLanes : 8;
    int64_t reach = 0;
    for (int l = 0; l < block.lanes; ++l) {
      const Tap& t = tx_[static_cast<size_t>(block.first + l)];
      lane0_[static_cast<size_t>(b * kLanes + l)] = static_cast<int32_t>(t.i0 - block.base);
      lane1_[static_cast<size_t>(b * kLanes + l)] = static_cast<int32_t>(t.i1 - block.base);
      lane_weight_[static_cast<size_t>(b * kLanes + l)] = t.w1;
      reach = std::max(reach, t.i1 - tx_[static_cast<size_t>(block.first + l / width * width)].i0);
    }
    block.in_register = isa != Isa::kSse2 && reach < width;
  }
  for (int64_t y = 0; y < out_h; ++y) {
    const Tap& t = ty_[static_cast<size_t>(y)];
    const bool same_rows = y > 0 && ty_[static_cast<size_t>(y - 1)].i0 == t.i0 && ty_[static_cast<size_t>(y - 1)].i1 == t.i1;
    if (same_rows) {
      ++row_groups_.back().second;
    } else {
      row_groups_.emplace_back(y, 1);
    }
  }
  uniform_.assign(static_cast<size_t>(h * w), kNoTop);
  first_.assign(static_cast<size_t>(h), 0);
  last_.assign(static_cast<size_t>(h), -1);
}

std::vector<uint8_t> TrilinearArgmax::TopClasses(const LogitPlane& p) const { return TopClasses(p, nullptr, nullptr, 0); }

std::vector<uint8_t> TrilinearArgmax::NormalizedTopClasses(float* data, int64_t class_stride, int64_t row_stride, const float* weights,
                                                          int64_t weight_row_stride) const {
  return TopClasses({data, class_stride, row_stride}, data, weights, weight_row_stride);
}

std::vector<uint8_t> TrilinearArgmax::TopClasses(const LogitPlane& p, float* divide, const float* weights, int64_t weight_row_stride) const {
  std::vector<uint8_t> top(static_cast<size_t>(h_ * w_));
  at::parallel_for(0, h_, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> best(static_cast<size_t>(w_)), second(static_cast<size_t>(w_));
    std::vector<int32_t> index(static_cast<size_t>(w_));
    for (int64_t i = begin; i < end; ++i) {
      if (divide) {
        for (int64_t c = 0; c < k_; ++c)
          DivideRow(divide + c * p.class_stride + i * p.row_stride, weights + i * weight_row_stride, w_);
      }
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
  // The boundary cells interpolate in row a itself, or in a and b interpolated along z (torch::lerp's
  // formula): per row of cells, its two network rows, into a buffer of each thread's that stays in
  // its cache (a whole interpolated plane, 8.8 MB at 118 x 137 x 137, was written and read back
  // from memory for every output slice).
  const bool along_z = r1 != r0 && wz != 0;
  // A block of 16 output columns at a time, for the output rows that interpolate between the same
  // two network rows together: every class interpolated along y and x and argmaxed. Blocks whose
  // cells all have one class take it without interpolation.
  std::atomic<int64_t> interpolated{0};
  at::parallel_for(0, static_cast<int64_t>(row_groups_.size()), 2, [&](int64_t begin, int64_t end) {
    int64_t mine = 0;
    std::vector<float> rows_along_z(along_z ? static_cast<size_t>(k_ * 2 * w_) : 0);  // (k, 2, w)
    for (int64_t g = begin; g < end; ++g) {
      const auto [first_row, row_count] = row_groups_[static_cast<size_t>(g)];
      const Tap& ty = ty_[static_cast<size_t>(first_row)];
      const uint8_t* uniform = uniform_.data() + ty.i0 * w_;
      LogitPlane plane = a;
      int64_t y0 = ty.i0, y1 = ty.i1;
      if (along_z && last_[ty.i0] >= 0) {
        const int64_t from = first_[ty.i0], to = std::min(w_ - 1, last_[ty.i0] + 1);
        for (int64_t c = 0; c < k_; ++c) {
          for (int64_t r = 0; r < 2; ++r) {
            const int64_t i = r == 0 ? ty.i0 : ty.i1;
            LerpRow(a.data + c * a.class_stride + i * a.row_stride, b.data + c * b.class_stride + i * b.row_stride, wz, from, to,
                    rows_along_z.data() + (c * 2 + r) * w_);
          }
        }
        plane = {rows_along_z.data(), 2 * w_, w_};
        y0 = 0, y1 = 1;
      }
      for (size_t b = 0; b < blocks_.size(); ++b) {
        const Block& block = blocks_[b];
        const int32_t* lane0 = lane0_.data() + b * kLanes;
        const int32_t* lane1 = lane1_.data() + b * kLanes;
        int boundary = 0;
        for (int l = 0; l < block.lanes; ++l) boundary += uniform[block.base + lane0[l]] == kNoTop;
        for (int64_t y = first_row; y < first_row + row_count; ++y) {
          uint8_t* out_block = out + y * out_w_ + block.first;
          for (int l = 0; l < block.lanes; ++l) out_block[l] = uniform[block.base + lane0[l]];
        }
        if (boundary == 0) continue;
        mine += boundary * row_count;
        const BlockRows rows{plane.data + y0 * plane.row_stride + block.base, plane.data + y1 * plane.row_stride + block.base,
                             plane.class_stride, k_, w_ - block.base};
        const float* weight = lane_weight_.data() + b * kLanes;
        uint8_t labels[kRowsPerPass][kLanes];
        for (int64_t y = first_row; y < first_row + row_count; y += kRowsPerPass) {
          const int count = static_cast<int>(std::min<int64_t>(kRowsPerPass, first_row + row_count - y));
          float wy[kRowsPerPass];
          uint8_t* label_rows[kRowsPerPass];
          for (int r = 0; r < count; ++r) wy[r] = ty_[static_cast<size_t>(y + r)].w1, label_rows[r] = labels[r];
          if (block.in_register) {
            BlockArgmaxRows(rows, wy, count, lane0, lane1, weight, block.lanes, label_rows);
          } else {
            for (int r = 0; r < count; ++r) BlockArgmax(rows, wy[r], lane0, lane1, weight, block.lanes, label_rows[r]);
          }
          // Only the boundary cells' voxels: the plane holds no values for the uniform cells' corners.
          for (int r = 0; r < count; ++r) {
            uint8_t* out_block = out + (y + r) * out_w_ + block.first;
            for (int l = 0; l < block.lanes; ++l)
              if (out_block[l] == kNoTop) out_block[l] = labels[r][l];
          }
        }
      }
    }
    interpolated += mine;
  });
  labelled_ += out_h_ * out_w_;
  interpolated_ += interpolated.load();
}

}  // namespace tucker_seg
