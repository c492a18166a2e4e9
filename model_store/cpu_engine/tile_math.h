// Helpers of the engine's own kernels (norm_projection.cpp, strided_transposed_conv.cpp,
// norm_kernels.cpp): a tile of 16 voxels held channel-major and matrix-tile products on it,
// bf16 conversions, the threads' share of the work. Every function is always
// inlined, so it compiles for the instruction set of the target clone that calls it.
#pragma once

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <type_traits>
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

// [begin, end) of `total` work items for thread `t` of `n`: contiguous, equal chunks.
inline void ThreadRange(int64_t total, int t, int n, int64_t* begin, int64_t* end) {
  const int64_t chunk = (total + n - 1) / n;
  *begin = std::min(total, chunk * t);
  *end = std::min(total, *begin + chunk);
}

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

// A matrix (rows, cols) packed per block of kRows rows as [col][row in block], so the weights of
// one column are adjacent; the last block has the remaining rows rounded up to 1, 2, 4 or 8 (a
// rank of 10 computes 10 + 0 rows, not 16). Padding rows and bias entries are zero.
struct PackedMatrix {
  int64_t rows = 0, padded_rows = 0, cols = 0;
  int64_t full_rows = 0, tail = 0;  // rows in whole blocks of kRows; rows of the last block
  std::vector<float> w, b;
};

inline PackedMatrix Pack(const float* w, const float* b, int64_t rows, int64_t cols) {
  PackedMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.full_rows = rows / kRows * kRows;
  const int64_t rest = rows - m.full_rows;
  m.tail = rest == 0 ? 0 : rest <= 1 ? 1 : rest <= 2 ? 2 : rest <= 4 ? 4 : kRows;
  m.padded_rows = m.full_rows + m.tail;
  m.w.assign(static_cast<size_t>(m.padded_rows * cols), 0.0f);
  m.b.assign(static_cast<size_t>(m.padded_rows), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t block = r < m.full_rows ? r / kRows * kRows : m.full_rows, width = r < m.full_rows ? kRows : m.tail;
    for (int64_t k = 0; k < cols; ++k) m.w[block * cols + k * width + (r - block)] = w[r * cols + k];
    if (b) m.b[r] = b[r];
  }
  return m;
}

template <int kBlock>
TS_INLINE void MultiplyBlock(const PackedMatrix& m, int64_t r0, const float* in, float* out) {
  Vec acc[kBlock];
  for (int j = 0; j < kBlock; ++j) acc[j] = Vec{} + m.b[r0 + j];
  const float* w = m.w.data() + r0 * m.cols;
  for (int64_t k = 0; k < m.cols; ++k) {
    const Vec x = LoadVec(in + k * kLanes);
    for (int j = 0; j < kBlock; ++j) acc[j] += x * w[k * kBlock + j];
  }
  for (int j = 0; j < kBlock; ++j) StoreVec(out + (r0 + j) * kLanes, acc[j]);
}

// out (padded_rows tiles) = m x in (cols tiles) + bias.
TS_INLINE void MultiplyTile(const PackedMatrix& m, const float* in, float* out) {
  for (int64_t r0 = 0; r0 < m.full_rows; r0 += kRows) MultiplyBlock<kRows>(m, r0, in, out);
  switch (m.tail) {
    case 1: MultiplyBlock<1>(m, m.full_rows, in, out); break;
    case 2: MultiplyBlock<2>(m, m.full_rows, in, out); break;
    case 4: MultiplyBlock<4>(m, m.full_rows, in, out); break;
    case kRows: MultiplyBlock<kRows>(m, m.full_rows, in, out); break;
    default: break;
  }
}

// Transposes the 16 x 16 matrix rows[] in registers: for s = 8, 4, 2, 1, rows i and i + s swap the
// off-diagonal s x s blocks of every 2s x 2s block (one two-source shuffle per row and step).
typedef int32_t ShuffleIndex __attribute__((vector_size(kLanes * sizeof(int32_t))));

TS_INLINE void SwapBlocks(Vec* rows, int s, ShuffleIndex keep, ShuffleIndex take) {
  for (int i = 0; i < kLanes; ++i) {
    if (i & s) continue;
    const Vec a = rows[i], b = rows[i + s];
    rows[i] = __builtin_shuffle(a, b, keep);
    rows[i + s] = __builtin_shuffle(a, b, take);
  }
}

TS_INLINE void Transpose16(Vec* rows) {
  // Indices into the concatenation (row i, row i + s): 0-15 row i, 16-31 row i + s.
  SwapBlocks(rows, 8, ShuffleIndex{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
             ShuffleIndex{8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31});
  SwapBlocks(rows, 4, ShuffleIndex{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
             ShuffleIndex{4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31});
  SwapBlocks(rows, 2, ShuffleIndex{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
             ShuffleIndex{2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31});
  SwapBlocks(rows, 1, ShuffleIndex{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
             ShuffleIndex{1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31});
}

// The channels-last voxels [v0, v0 + n) of x (voxels x channels) into a channel-major tile, zero
// beyond n.
template <typename T>
TS_INLINE void LoadTile(const T* x, int64_t v0, int n, int64_t channels, int64_t voxels, float* tile) {
  const T* src = x + v0 * channels;
  if constexpr (std::is_same_v<T, float>) {
    // 16 voxels' channels at a time, transposed in registers; a row read may run up to 16
    // floats into the next voxels, so only where the tensor goes on that far.
    if (n == kLanes && (v0 + kLanes) * channels + kLanes <= voxels * channels) {
      for (int64_t c0 = 0; c0 < channels; c0 += kLanes) {
        Vec rows[kLanes];
        for (int l = 0; l < kLanes; ++l) rows[l] = LoadVec(src + l * channels + c0);
        Transpose16(rows);
        const int64_t m = std::min<int64_t>(kLanes, channels - c0);
        for (int64_t c = 0; c < m; ++c) StoreVec(tile + (c0 + c) * kLanes, rows[c]);
      }
      return;
    }
  }
  for (int l = 0; l < n; ++l)
    for (int64_t c = 0; c < channels; ++c) tile[c * kLanes + l] = ToFloat(src[l * channels + c]);
  for (int l = n; l < kLanes; ++l)
    for (int64_t c = 0; c < channels; ++c) tile[c * kLanes + l] = 0.0f;
}

// The tile's first n voxels into y (channels-last) at voxel v0.
template <typename T>
TS_INLINE void StoreTileChannelsLast(const float* tile, int64_t v0, int n, int64_t channels, T* y) {
  T* dst = y + v0 * channels;
  if constexpr (std::is_same_v<T, float>) {
    if (n == kLanes) {
      // Transposed in registers, each voxel's 16 channels stored at once. A store past the
      // voxel's channels spills into the next voxels' lower channels, which later stores rewrite:
      // chunks go from the highest down and voxels upwards; a store that would leave the tile is
      // written element by element.
      for (int64_t c0 = (channels - 1) / kLanes * kLanes; c0 >= 0; c0 -= kLanes) {
        const int64_t m = std::min<int64_t>(kLanes, channels - c0);
        Vec rows[kLanes];
        for (int c = 0; c < kLanes; ++c) rows[c] = c < m ? LoadVec(tile + (c0 + c) * kLanes) : Vec{};
        Transpose16(rows);
        for (int l = 0; l < kLanes; ++l) {
          if (l * channels + c0 + kLanes <= kLanes * channels) {
            StoreVec(dst + l * channels + c0, rows[l]);
          } else {
            for (int64_t c = 0; c < m; ++c) dst[l * channels + c0 + c] = rows[l][c];
          }
        }
      }
      return;
    }
  }
  for (int l = 0; l < n; ++l)
    for (int64_t c = 0; c < channels; ++c) FromFloat(tile[c * kLanes + l], dst + l * channels + c);
}

// The row layout (z, y, channel, x): each row of x holds one channel, `width` voxels (a multiple
// of 16) and RowStride(width) floats, so a tile of 16 voxels (v0 a multiple of 16) lies in one row
// and each of its channels is one contiguous load, with no transpose. The 16 floats of padding
// per row (never read as data) keep the stride off powers of two (512 bytes at 128 voxels), where
// a 3x3x3 convolution's 9 x C input rows would share few L1 sets; its effect alone was not
// measured apart from the other changes of the thin-core kernel.
TS_INLINE int64_t RowStride(int64_t width) { return width + kLanes; }

TS_INLINE const float* RowsAt(const float* x, int64_t v0, int64_t channels, int64_t width) {
  return x + (v0 / width * channels) * RowStride(width) + v0 % width;
}

TS_INLINE void LoadTileRows(const float* x, int64_t v0, int64_t channels, int64_t width, float* tile) {
  const float* src = RowsAt(x, v0, channels, width);
  for (int64_t c = 0; c < channels; ++c) StoreVec(tile + c * kLanes, LoadVec(src + c * RowStride(width)));
}

TS_INLINE void StoreTileRows(const float* tile, int64_t v0, int64_t channels, int64_t width, float* y) {
  float* dst = const_cast<float*>(RowsAt(y, v0, channels, width));
  for (int64_t c = 0; c < channels; ++c) StoreVec(dst + c * RowStride(width), LoadVec(tile + c * kLanes));
}

}  // namespace tucker_seg::cpu_engine::tile
