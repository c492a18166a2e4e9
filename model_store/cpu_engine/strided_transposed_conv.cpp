#include "model_store/cpu_engine/strided_transposed_conv.h"

#include <omp.h>

#include <algorithm>

#include "model_store/cpu_engine/tile_math.h"

namespace tucker_seg::cpu_engine {
namespace {

using namespace tile;

template <typename T>
TS_INLINE void StoreBlocks(const StridedTransposedConv& c, const float* tile, int64_t v0, int n) {
  T* out = static_cast<T*>(c.output);
  const int64_t oy = c.in_size[1] * c.kernel[1], ox = c.in_size[2] * c.kernel[2], co = c.out_channels;
  for (int l = 0; l < n; ++l) {
    const int64_t v = v0 + l;
    const int64_t x = v % c.in_size[2], y = (v / c.in_size[2]) % c.in_size[1], z = v / (c.in_size[2] * c.in_size[1]);
    int64_t tap = 0;
    for (int64_t a = 0; a < c.kernel[0]; ++a) {
      for (int64_t b = 0; b < c.kernel[1]; ++b) {
        for (int64_t d = 0; d < c.kernel[2]; ++d, ++tap) {
          T* dst = out + (((z * c.kernel[0] + a) * oy + y * c.kernel[1] + b) * ox + x * c.kernel[2] + d) * co;
          const float* src = tile + tap * co * kLanes + l;
          for (int64_t o = 0; o < co; ++o) {
            const float value = src[o * kLanes] + (c.accumulate ? ToFloat(dst[o]) : 0.0f);
            FromFloat(value, dst + o);
          }
        }
      }
    }
  }
}

// Tiles [t0, t1) of 16 input voxels: one product with the (taps * out, in) matrix each.
template <class V>
TS_INLINE void TransposeRangeFor(const StridedTransposedConv& c, const PackedMatrix& m, int64_t voxels, int64_t t0, int64_t t1) {
  std::vector<float> in(static_cast<size_t>(c.in_channels * kLanes)), out(static_cast<size_t>(m.padded_rows * kLanes));
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t v0 = t * kLanes;
    const int n = static_cast<int>(std::min<int64_t>(kLanes, voxels - v0));
    if (c.bf16) {
      LoadTile<V>(static_cast<const uint16_t*>(c.input), v0, n, c.in_channels, voxels, in.data());
    } else {
      LoadTile<V>(static_cast<const float*>(c.input), v0, n, c.in_channels, voxels, in.data());
    }
    MultiplyTile<V>(m, in.data(), out.data());
    if (c.bf16) {
      StoreBlocks<uint16_t>(c, out.data(), v0, n);
    } else {
      StoreBlocks<float>(c, out.data(), v0, n);
    }
  }
}
TS_KERNEL_PER_ISA(TransposeRange, (const StridedTransposedConv& c, const PackedMatrix& m, int64_t voxels, int64_t t0, int64_t t1),
                  (c, m, voxels, t0, t1))

}  // namespace

void RunStridedTransposedConv(const StridedTransposedConv& c) {
  const int64_t taps = c.kernel[0] * c.kernel[1] * c.kernel[2];
  const int64_t rows = taps * c.out_channels;
  // Row tap * out + o, column i: weight (i, o, tap).
  std::vector<float> w(static_cast<size_t>(rows * c.in_channels)), b(static_cast<size_t>(rows), 0.0f);
  for (int64_t i = 0; i < c.in_channels; ++i)
    for (int64_t o = 0; o < c.out_channels; ++o)
      for (int64_t tap = 0; tap < taps; ++tap) w[(tap * c.out_channels + o) * c.in_channels + i] = c.weight[(i * c.out_channels + o) * taps + tap];
  if (c.bias)
    for (int64_t tap = 0; tap < taps; ++tap) std::copy(c.bias, c.bias + c.out_channels, b.begin() + tap * c.out_channels);
  const PackedMatrix m = Pack(w.data(), b.data(), rows, c.in_channels);
  const int64_t voxels = c.in_size[0] * c.in_size[1] * c.in_size[2];
  const int64_t tiles = (voxels + kLanes - 1) / kLanes;
#pragma omp parallel
  {
    int64_t begin, end;
    ThreadRange(tiles, omp_get_thread_num(), omp_get_num_threads(), &begin, &end);
    TransposeRange(c, m, voxels, begin, end);
  }
}

}  // namespace tucker_seg::cpu_engine
