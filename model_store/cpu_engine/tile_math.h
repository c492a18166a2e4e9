// Helpers of the engine's own kernels (norm_projection.cpp, strided_transposed_conv.cpp): a tile
// of 16 voxels held channel-major and matrix-tile products on it. Every function is always
// inlined, so it compiles for the instruction set of the target clone that calls it.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace tucker_seg::cpu_engine::tile {

// A tile is 16 voxels held channel-major (tile[c * kLanes + voxel]): every channel is one
// AVX-512 register, so a matrix-tile product is one broadcast FMA per weight, whatever the
// channel counts (ranks of 8-12 would waste most of a channels-last register).
constexpr int kLanes = 16;
constexpr int kRows = 8;              // output channels accumulated together, in registers
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
// Vec never crosses a call boundary (every helper is always inlined into one target clone), so
// GCC's note that its ABI differs between clones does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#define TS_INLINE inline __attribute__((always_inline))

TS_INLINE Vec LoadVec(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
TS_INLINE void StoreVec(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

TS_INLINE float ToFloat(float v) { return v; }
TS_INLINE float ToFloat(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
TS_INLINE void FromFloat(float v, float* p) { *p = v; }
TS_INLINE void FromFloat(float v, uint16_t* p) {  // round to nearest even, as oneDNN does
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  *p = static_cast<uint16_t>(bits >> 16);
}

// A matrix (rows, cols) with its rows padded to a multiple of kRows and packed per block of kRows
// rows as [col][row in block], so the kRows weights of one column are adjacent; bias zero-padded.
struct PackedMatrix {
  int64_t rows = 0, padded_rows = 0, cols = 0;
  std::vector<float> w, b;
};

inline PackedMatrix Pack(const float* w, const float* b, int64_t rows, int64_t cols) {
  PackedMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.padded_rows = (rows + kRows - 1) / kRows * kRows;
  m.w.assign(static_cast<size_t>(m.padded_rows * cols), 0.0f);
  m.b.assign(static_cast<size_t>(m.padded_rows), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < cols; ++k) m.w[(r / kRows) * cols * kRows + k * kRows + r % kRows] = w[r * cols + k];
    if (b) m.b[r] = b[r];
  }
  return m;
}

// out (padded_rows tiles) = m x in (cols tiles) + bias.
TS_INLINE void MultiplyTile(const PackedMatrix& m, const float* in, float* out) {
  for (int64_t r0 = 0; r0 < m.padded_rows; r0 += kRows) {
    Vec acc[kRows];
    for (int j = 0; j < kRows; ++j) acc[j] = Vec{} + m.b[r0 + j];
    const float* w = m.w.data() + r0 * m.cols;
    for (int64_t k = 0; k < m.cols; ++k) {
      const Vec x = LoadVec(in + k * kLanes);
      for (int j = 0; j < kRows; ++j) acc[j] += x * w[k * kRows + j];
    }
    for (int j = 0; j < kRows; ++j) StoreVec(out + (r0 + j) * kLanes, acc[j]);
  }
}

template <typename T>
TS_INLINE void LoadTile(const T* x, int64_t v0, int n, int64_t channels, float* tile) {
  const T* src = x + v0 * channels;
  for (int l = 0; l < n; ++l)
    for (int64_t c = 0; c < channels; ++c) tile[c * kLanes + l] = ToFloat(src[l * channels + c]);
  for (int l = n; l < kLanes; ++l)
    for (int64_t c = 0; c < channels; ++c) tile[c * kLanes + l] = 0.0f;
}

template <typename T>
TS_INLINE void StoreTileChannelsLast(const float* tile, int64_t v0, int n, int64_t channels, T* y) {
  T* dst = y + v0 * channels;
  for (int l = 0; l < n; ++l)
    for (int64_t c = 0; c < channels; ++c) FromFloat(tile[c * kLanes + l], dst + l * channels + c);
}

}  // namespace tucker_seg::cpu_engine::tile
