// Helpers of the engine's own kernels (norm_projection.cpp, strided_transposed_conv.cpp,
// thin_conv.cpp): a tile of 16 voxels held channel-major and matrix-tile products on it, bf16
// conversions, the threads' share of the work, and the per-instruction-set versions of a kernel.
// Every function is always inlined, so it compiles for the instruction set of the kernel that
// calls it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "vocabulary/cpu_isa.h"

namespace tucker_seg::cpu_engine::tile {

// A tile is 16 voxels held channel-major (tile[c * kLanes + voxel]): every channel is one
// AVX-512 register (two AVX2 ones), so a matrix-tile product is one broadcast FMA per weight,
// whatever the channel counts (ranks of 8-12 would waste most of a channels-last register).
constexpr int kLanes = 16;
constexpr int kRows = 8;  // rows of a PackedMatrix block (below)

#define TS_INLINE inline __attribute__((always_inline))
// Lanes never crosses a call boundary (every helper is always inlined into one kernel), so GCC's
// note that a vector's ABI differs between instruction sets does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

// One channel of a tile, 16 floats, held in kParts vectors of the instruction set's own width: one
// for AVX-512, two for AVX2, four for SSE2. A 64-byte GCC vector compiled for AVX2 would live in
// memory (there is no 64-byte register to hold it): the AVX2 kernels ran at 9-13 GFLOP/s that way.
template <int kPartCount>
struct Lanes {
  static constexpr int kParts = kPartCount;
  static constexpr int kWidth = kLanes / kParts;
  // Output rows a matrix-tile product accumulates in registers: 8 of AVX-512's 32, 4 x 2 of
  // AVX2's 16, 2 x 4 of SSE2's 16 (the rest hold the input and the broadcast weight).
  static constexpr int kRegisterRows = kRows / kParts;
  typedef float Part __attribute__((vector_size(kWidth * sizeof(float))));
  typedef int32_t PartIndex __attribute__((vector_size(kWidth * sizeof(int32_t))));
  Part part[kParts];

  static TS_INLINE Lanes Load(const float* p) {
    Lanes v;
    for (int i = 0; i < kParts; ++i) std::memcpy(&v.part[i], p + i * kWidth, sizeof(Part));
    return v;
  }
  TS_INLINE void Store(float* p) const {
    for (int i = 0; i < kParts; ++i) std::memcpy(p + i * kWidth, &part[i], sizeof(Part));
  }
  static TS_INLINE Lanes Broadcast(float x) {
    Lanes v;
    for (int i = 0; i < kParts; ++i) v.part[i] = Part{} + x;
    return v;
  }
  static TS_INLINE Lanes FirstLanesOne(int n) {  // 1 in lanes [0, n), 0 beyond
    float m[kLanes];
    for (int l = 0; l < kLanes; ++l) m[l] = l < n ? 1.0f : 0.0f;
    return Load(m);
  }
  TS_INLINE float operator[](int l) const { return part[l / kWidth][l % kWidth]; }

  TS_INLINE Lanes& operator+=(const Lanes& o) {
    for (int i = 0; i < kParts; ++i) part[i] += o.part[i];
    return *this;
  }
  TS_INLINE Lanes& operator*=(const Lanes& o) {
    for (int i = 0; i < kParts; ++i) part[i] *= o.part[i];
    return *this;
  }
  TS_INLINE Lanes& operator+=(float x) {
    for (int i = 0; i < kParts; ++i) part[i] += x;
    return *this;
  }
  TS_INLINE Lanes& operator*=(float x) {
    for (int i = 0; i < kParts; ++i) part[i] *= x;
    return *this;
  }
  TS_INLINE Lanes& MultiplyAdd(const Lanes& x, float w) {  // this += x * w
    for (int i = 0; i < kParts; ++i) part[i] += x.part[i] * w;
    return *this;
  }
  TS_INLINE Lanes& MultiplyAdd(const Lanes& x, const Lanes& y) {  // this += x * y
    for (int i = 0; i < kParts; ++i) part[i] += x.part[i] * y.part[i];
    return *this;
  }
  friend TS_INLINE Lanes operator+(Lanes a, const Lanes& b) { return a += b; }
  friend TS_INLINE Lanes operator*(Lanes a, const Lanes& b) { return a *= b; }
  friend TS_INLINE Lanes operator+(Lanes a, float x) { return a += x; }
  friend TS_INLINE Lanes operator-(Lanes a, float x) { return a += -x; }
  friend TS_INLINE Lanes operator*(Lanes a, float x) { return a *= x; }
  friend TS_INLINE Lanes Max(const Lanes& a, const Lanes& b) {
    Lanes v;
    for (int i = 0; i < kParts; ++i) v.part[i] = a.part[i] > b.part[i] ? a.part[i] : b.part[i];
    return v;
  }
};

using Avx512Lanes = Lanes<1>;
using Avx2Lanes = Lanes<2>;
using Sse2Lanes = Lanes<4>;

// The instruction set the kernels run with (vocabulary/cpu_isa.h).
using tucker_seg::CpuIsa;
using tucker_seg::Isa;

// Defines `void name params`, which runs name##For<V>(args) compiled for this CPU's instruction
// set with its own Lanes type V. (target_clones compiles one body for every target, so every
// target would get the same vector type.)
#define TS_KERNEL_PER_ISA(name, params, args)                                                             \
  __attribute__((target("avx512f,fma"))) void name##Avx512 params { name##For<tile::Avx512Lanes> args; } \
  __attribute__((target("avx2,fma"))) void name##Avx2 params { name##For<tile::Avx2Lanes> args; }    \
  void name##Sse2 params { name##For<tile::Sse2Lanes> args; }                                          \
  void name params {                                                                                    \
    switch (tile::CpuIsa()) {                                                                           \
      case tile::Isa::kAvx512: return name##Avx512 args;                                               \
      case tile::Isa::kAvx2: return name##Avx2 args;                                                   \
      default: return name##Sse2 args;                                                                 \
    }                                                                                                   \
  }

// A 64-byte vector with loads and stores, for code compiled for AVX-512 only (thin_conv.cpp).
typedef Avx512Lanes::Part Vec;
TS_INLINE Vec LoadVec(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
TS_INLINE void StoreVec(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

// [begin, end) of `total` work items for thread `t` of `n`: contiguous, equal chunks.
inline void ThreadRange(int64_t total, int t, int n, int64_t* begin, int64_t* end) {
  const int64_t chunk = (total + n - 1) / n;
  *begin = std::min(total, chunk * t);
  *end = std::min(total, *begin + chunk);
}

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

// Rows [r0, r0 + kBlock) of m (one packed block) times the tile, in groups of rows that fit the
// registers (each group reads the input tile again, from L1).
template <class V, int kBlock>
TS_INLINE void MultiplyBlock(const PackedMatrix& m, int64_t r0, const float* in, float* out) {
  constexpr int kGroup = std::min(kBlock, V::kRegisterRows);
  for (int g = 0; g < kBlock; g += kGroup) {
    V acc[kGroup];
    for (int j = 0; j < kGroup; ++j) acc[j] = V::Broadcast(m.b[r0 + g + j]);
    const float* w = m.w.data() + r0 * m.cols + g;
    for (int64_t k = 0; k < m.cols; ++k) {
      const V x = V::Load(in + k * kLanes);
      for (int j = 0; j < kGroup; ++j) acc[j].MultiplyAdd(x, w[k * kBlock + j]);
    }
    for (int j = 0; j < kGroup; ++j) acc[j].Store(out + (r0 + g + j) * kLanes);
  }
}

// out (padded_rows tiles) = m x in (cols tiles) + bias.
template <class V>
TS_INLINE void MultiplyTile(const PackedMatrix& m, const float* in, float* out) {
  for (int64_t r0 = 0; r0 < m.full_rows; r0 += kRows) MultiplyBlock<V, kRows>(m, r0, in, out);
  switch (m.tail) {
    case 1: MultiplyBlock<V, 1>(m, m.full_rows, in, out); break;
    case 2: MultiplyBlock<V, 2>(m, m.full_rows, in, out); break;
    case 4: MultiplyBlock<V, 4>(m, m.full_rows, in, out); break;
    case kRows: MultiplyBlock<V, kRows>(m, m.full_rows, in, out); break;
    default: break;
  }
}

// Transposes the 16 x 16 matrix rows[] in registers: for s = 8, 4, 2, 1, rows i and i + s swap the
// off-diagonal s x s blocks of every 2s x 2s block. Where s spans whole vectors that is a swap of
// vectors; within a vector, one two-source shuffle per row, with these indices into the
// concatenation (vector of row i, vector of row i + s).
template <class V, int s, int... k>
TS_INLINE typename V::PartIndex KeepIndex(std::integer_sequence<int, k...>) {
  return typename V::PartIndex{((k & s) ? k - s + V::kWidth : k)...};
}
template <class V, int s, int... k>
TS_INLINE typename V::PartIndex TakeIndex(std::integer_sequence<int, k...>) {
  return typename V::PartIndex{((k & s) ? k + V::kWidth : k + s)...};
}

template <class V, int s>
TS_INLINE void SwapBlocks(V* rows) {
  for (int i = 0; i < kLanes; ++i) {
    if (i & s) continue;
    V& a = rows[i];
    V& b = rows[i + s];
    if constexpr (s >= V::kWidth) {
      constexpr int d = s / V::kWidth;
      for (int p = 0; p < V::kParts; ++p)
        if (p & d) std::swap(a.part[p], b.part[p - d]);
    } else {
      const auto keep = KeepIndex<V, s>(std::make_integer_sequence<int, V::kWidth>());
      const auto take = TakeIndex<V, s>(std::make_integer_sequence<int, V::kWidth>());
      for (int p = 0; p < V::kParts; ++p) {
        const typename V::Part x = a.part[p], y = b.part[p];
        a.part[p] = __builtin_shuffle(x, y, keep);
        b.part[p] = __builtin_shuffle(x, y, take);
      }
    }
  }
}

template <class V>
TS_INLINE void Transpose16(V* rows) {
  SwapBlocks<V, 8>(rows);
  SwapBlocks<V, 4>(rows);
  SwapBlocks<V, 2>(rows);
  SwapBlocks<V, 1>(rows);
}

// The channels-last voxels [v0, v0 + n) of x (voxels x channels) into a channel-major tile, zero
// beyond n.
template <class V, typename T>
TS_INLINE void LoadTile(const T* x, int64_t v0, int n, int64_t channels, int64_t voxels, float* tile) {
  const T* src = x + v0 * channels;
  if constexpr (std::is_same_v<T, float>) {
    // 16 voxels' channels at a time, transposed in registers; a row read may run up to 16
    // floats into the next voxels, so only where the tensor goes on that far.
    if (n == kLanes && (v0 + kLanes) * channels + kLanes <= voxels * channels) {
      for (int64_t c0 = 0; c0 < channels; c0 += kLanes) {
        V rows[kLanes];
        for (int l = 0; l < kLanes; ++l) rows[l] = V::Load(src + l * channels + c0);
        Transpose16(rows);
        const int64_t m = std::min<int64_t>(kLanes, channels - c0);
        for (int64_t c = 0; c < m; ++c) rows[c].Store(tile + (c0 + c) * kLanes);
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
template <class V, typename T>
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
        V rows[kLanes];
        for (int c = 0; c < kLanes; ++c) rows[c] = c < m ? V::Load(tile + (c0 + c) * kLanes) : V::Broadcast(0.0f);
        Transpose16(rows);
        for (int l = 0; l < kLanes; ++l) {
          if (l * channels + c0 + kLanes <= kLanes * channels) {
            rows[l].Store(dst + l * channels + c0);
          } else {
            for (int64_t c = 0; c < m; ++c) dst[l * channels + c0 + c] = rows[l][static_cast<int>(c)];
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

template <class V>
TS_INLINE void LoadTileRows(const float* x, int64_t v0, int64_t channels, int64_t width, float* tile) {
  const float* src = RowsAt(x, v0, channels, width);
  for (int64_t c = 0; c < channels; ++c) V::Load(src + c * RowStride(width)).Store(tile + c * kLanes);
}

template <class V>
TS_INLINE void StoreTileRows(const float* tile, int64_t v0, int64_t channels, int64_t width, float* y) {
  float* dst = const_cast<float*>(RowsAt(y, v0, channels, width));
  for (int64_t c = 0; c < channels; ++c) V::Load(tile + c * kLanes).Store(dst + c * RowStride(width));
}

}  // namespace tucker_seg::cpu_engine::tile
