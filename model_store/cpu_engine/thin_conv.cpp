#include "model_store/cpu_engine/thin_conv.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <memory>

#include "model_store/cpu_engine/tile_math.h"

namespace tucker_seg::cpu_engine {
namespace {

using namespace tile;

// Everything here runs only where Serves found the kernels' AVX-512 version chosen (CpuIsa: AVX-512
// and FMA, not narrowed by TUCKER_SEG_KERNEL_ISA). A function attribute, which GCC and clang both
// honour; clang ignores GCC's target pragma.
#define TS_AVX512 __attribute__((target("avx512f,fma")))

constexpr int kTaps = 27;
constexpr int kMaxBlock = 12;              // two tiles x 12 outputs = 24 accumulators of AVX-512's 32 registers
constexpr int64_t kBandBudget = 512 << 10;  // bytes of input rows per band of output rows (L2 holds 1-2 MB)

struct Layout {
  int64_t d, h, w, in, out;
  int64_t row;  // RowStride(w)
  int64_t plane_in() const { return h * in * row; }  // floats of one z plane in the row layout
};

// kTiles (1 or 2) tiles of 16 voxels from x0 of one output row, kCount output channels, written
// channel-major into out[t] (channel j at out[t] + j * stride). rows[r]: the input row of tap
// r = (dz, dy) in the row layout, or null outside the volume. Loads for dx = -1 at x = 0 and
// dx = +1 at x = w - 1 are masked: the padding reads zero.
template <int kCount, int kTiles>
TS_AVX512 TS_INLINE void Tiles(const float* const* rows, const Layout& l, int64_t x0, const float* w, const float* bias, float* const* out,
                     int64_t stride) {
  Vec acc[kTiles][kCount];
  for (int t = 0; t < kTiles; ++t)
    for (int j = 0; j < kCount; ++j) acc[t][j] = Vec{} + bias[j];
  __mmask16 mask[3][kTiles];
  for (int t = 0; t < kTiles; ++t) {
    const int64_t x = x0 + t * kLanes;
    mask[0][t] = x == 0 ? 0xfffe : 0xffff;
    mask[1][t] = 0xffff;
    mask[2][t] = x + kLanes == l.w ? 0x7fff : 0xffff;
  }
  for (int r = 0; r < 9; ++r) {
    if (!rows[r]) continue;
    for (int dx = 0; dx < 3; ++dx) {
      const float* src = rows[r] + x0 + dx - 1;
      const float* wt = w + (r * 3 + dx) * l.in * kCount;
      for (int64_t c = 0; c < l.in; ++c, src += l.row, wt += kCount) {
        Vec v[kTiles];
        for (int t = 0; t < kTiles; ++t) v[t] = (Vec)_mm512_maskz_loadu_ps(mask[dx][t], src + t * kLanes);
        for (int j = 0; j < kCount; ++j)
          for (int t = 0; t < kTiles; ++t) acc[t][j] += v[t] * wt[j];
      }
    }
  }
  for (int t = 0; t < kTiles; ++t)
    for (int j = 0; j < kCount; ++j) StoreVec(out[t] + j * stride, acc[t][j]);
}

// One output row (z, y) of kCount channels from `first`: into the row layout's row `dst` (channel
// stride l.row) or into staging tiles (channel stride 16) for a channels-last output.
template <int kCount>
TS_AVX512 TS_INLINE void BlockRow(const float* const* rows, const Layout& l, const float* w, const float* bias, int64_t first, float* dst,
                        bool rows_out) {
  for (int64_t x0 = 0; x0 < l.w; x0 += 2 * kLanes) {
    float* out[2];
    for (int t = 0; t < 2; ++t) {
      const int64_t x = x0 + t * kLanes;
      out[t] = rows_out ? dst + first * l.row + x : dst + (x * l.out + first * kLanes);
    }
    const int64_t stride = rows_out ? l.row : kLanes;
    if (x0 + kLanes == l.w) {
      Tiles<kCount, 1>(rows, l, x0, w, bias, out, stride);
    } else {
      Tiles<kCount, 2>(rows, l, x0, w, bias, out, stride);
    }
  }
}

// Rows [y0, y1) of plane z of the channels-last input into the row layout.
TS_AVX512 TS_INLINE void TransposePlane(const float* input, const Layout& l, int64_t z, int64_t y0, int64_t y1, float* plane, float* tile) {
  const int64_t voxels = l.d * l.h * l.w;
  for (int64_t y = y0; y < y1; ++y) {
    for (int64_t x0 = 0; x0 < l.w; x0 += kLanes) {
      LoadTile<Avx512Lanes>(input, (z * l.h + y) * l.w + x0, kLanes, l.in, voxels, tile);
      for (int64_t c = 0; c < l.in; ++c) StoreVec(plane + (y * l.in + c) * l.row + x0, LoadVec(tile + c * kLanes));
    }
  }
}

TS_AVX512 void RunPlanes(const float* input, float* output, bool accumulate, bool input_rows, bool output_rows, const Layout& l,
                         const std::vector<ThinConv::Block>& blocks, const float* weights, const float* bias, int64_t z0, int64_t z1) {
  if (z0 >= z1) return;
  const int64_t voxels = l.d * l.h * l.w;
  // A channels-last input: three planes (z - 1, z, z + 1) transposed into the row layout, reused
  // as z advances.
  // Scratch is left uninitialised (no 3 MB memset per call): only written floats are read, and
  // the loads past the ends of x are masked.
  std::unique_ptr<float[]> ring(new float[input_rows ? 0 : static_cast<size_t>(3 * l.plane_in())]);
  int64_t held[3] = {-1, -1, -1};
  // A channels-last output: the row's tiles, channel-major, transposed on the way out; with
  // accumulate, a row-layout output's old row.
  std::unique_ptr<float[]> staging(new float[static_cast<size_t>(l.row * l.out)]);
  std::unique_ptr<float[]> tile(new float[static_cast<size_t>(std::max(l.in, l.out) * kLanes)]);
  // Output rows go in bands of y, all z of a band before the next: the band's three input planes
  // stay in L2 as z advances. Row by row over whole planes, they did not (16 channels of
  // 112 x 128 voxels: 1 MB per plane) and each input row came from L3 three times.
  const int64_t band_bytes = 3 * l.in * l.row * static_cast<int64_t>(sizeof(float));
  const int64_t band = std::clamp<int64_t>(kBandBudget / band_bytes - 2, 1, l.h);
  for (int64_t y0 = 0; y0 < l.h; y0 += band) {
    const int64_t y1 = std::min(l.h, y0 + band);
    std::fill(held, held + 3, -1);
    for (int64_t z = z0; z < z1; ++z) {
      if (!input_rows) {
        for (int64_t zz = std::max<int64_t>(0, z - 1); zz <= std::min(l.d - 1, z + 1); ++zz) {
          if (held[zz % 3] == zz) continue;
          TransposePlane(input, l, zz, std::max<int64_t>(0, y0 - 1), std::min(l.h, y1 + 1), ring.get() + zz % 3 * l.plane_in(), tile.get());
          held[zz % 3] = zz;
        }
      }
      for (int64_t y = y0; y < y1; ++y) {
        const float* rows[9];
        for (int r = 0; r < 9; ++r) {
          const int64_t zz = z + r / 3 - 1, yy = y + r % 3 - 1;
          rows[r] = nullptr;
          if (zz < 0 || zz >= l.d || yy < 0 || yy >= l.h) continue;
          const float* plane = input_rows ? input + zz * l.plane_in() : ring.get() + zz % 3 * l.plane_in();
          rows[r] = plane + yy * l.in * l.row;
        }
        float* row_out = output + (z * l.h + y) * l.out * l.row;  // the row layout's output row
        const bool direct = output_rows && !accumulate;
        float* dst = direct ? row_out : staging.get();
        const float* w = weights;
        for (const auto& b : blocks) {
          const float* bb = bias + b.first;
          switch (b.count) {
#define TS_THIN_BLOCK(n) \
  case n: BlockRow<n>(rows, l, w, bb, b.first, dst, output_rows); break;
            TS_THIN_BLOCK(1) TS_THIN_BLOCK(2) TS_THIN_BLOCK(3) TS_THIN_BLOCK(4) TS_THIN_BLOCK(5) TS_THIN_BLOCK(6)
            TS_THIN_BLOCK(7) TS_THIN_BLOCK(8) TS_THIN_BLOCK(9) TS_THIN_BLOCK(10) TS_THIN_BLOCK(11) TS_THIN_BLOCK(12)
#undef TS_THIN_BLOCK
            default: break;
          }
          w += kTaps * l.in * b.count;
        }
        if (direct) continue;
        if (output_rows) {
          for (int64_t c = 0; c < l.out; ++c)
            for (int64_t x = c * l.row; x < c * l.row + l.w; x += kLanes) StoreVec(row_out + x, LoadVec(row_out + x) + LoadVec(dst + x));
          continue;
        }
        for (int64_t x0 = 0; x0 < l.w; x0 += kLanes) {
          const int64_t v0 = (z * l.h + y) * l.w + x0;
          float* out = dst + x0 * l.out;  // tile x0 / 16, out channels of 16
          if (accumulate) {
            LoadTile<Avx512Lanes>(output, v0, kLanes, l.out, voxels, tile.get());
            for (int64_t c = 0; c < l.out; ++c) StoreVec(out + c * kLanes, LoadVec(out + c * kLanes) + LoadVec(tile.get() + c * kLanes));
          }
          StoreTileChannelsLast<Avx512Lanes>(out, v0, kLanes, l.out, output);
        }
      }
    }
  }
}

}  // namespace

bool ThinConv::Serves(int64_t in_channels, int64_t out_channels, const Int3& size) {
  // oneDNN's brgconv fills its registers when both channel counts are multiples of 16 and was
  // faster there (the original network's 32 -> 32: 0.62 s against 0.80 s here); at ranks like 10,
  // 20 or 39 this kernel took 0.6-0.7x its time. A single input channel has its own oneDNN path.
  const bool full_lanes = in_channels % kLanes == 0 && out_channels % kLanes == 0;
  return CpuIsa() == Isa::kAvx512 && !full_lanes && in_channels >= 4 && in_channels <= 128 && out_channels <= 48 && size[2] % kLanes == 0;
}

ThinConv::ThinConv(int64_t in_channels, int64_t out_channels, const Int3& size, const float* weight, const float* bias,
                   bool input_rows, bool output_rows)
    : in_(in_channels),
      out_(out_channels),
      size_(size),
      input_rows_(input_rows),
      output_rows_(output_rows),
      bias_(static_cast<size_t>(out_channels), 0.0f) {
  const int64_t count = (out_ + kMaxBlock - 1) / kMaxBlock;
  for (int64_t b = 0, first = 0; b < count; ++b) {
    const int64_t n = out_ / count + (b < out_ % count ? 1 : 0);
    blocks_.push_back({first, n});
    first += n;
  }
  weights_.reserve(static_cast<size_t>(kTaps * in_ * out_));
  for (const auto& b : blocks_)
    for (int tap = 0; tap < kTaps; ++tap)
      for (int64_t c = 0; c < in_; ++c)
        for (int64_t j = 0; j < b.count; ++j) weights_.push_back(weight[((b.first + j) * in_ + c) * kTaps + tap]);
  if (bias) std::copy(bias, bias + out_, bias_.begin());
}

void ThinConv::Run(const float* input, float* output, bool accumulate) const {
  const Layout l{size_[0], size_[1], size_[2], in_, out_, RowStride(size_[2])};
#pragma omp parallel
  {
    int64_t z0, z1;
    ThreadRange(l.d, omp_get_thread_num(), omp_get_num_threads(), &z0, &z1);
    RunPlanes(input, output, accumulate, input_rows_, output_rows_, l, blocks_, weights_.data(), bias_.data(), z0, z1);
  }
}

}  // namespace tucker_seg::cpu_engine
