#include "model_store/cpu_engine/norm_projection.h"

#include "model_store/cpu_engine/tile_math.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tucker_seg::cpu_engine {
namespace {

using namespace tile;
constexpr int kTilesPerPartial = 16;  // float partial sums over 256 voxels, then double


struct Job {
  const NormProjection* p = nullptr;
  bool expand = false;
  PackedMatrix expansion;
  std::vector<PackedMatrix> outputs;
  std::vector<float> shift, scale, offset;
  std::vector<float> input_shift;  // with an expansion: the first voxel's x
  int64_t tiles = 0;
  bool stream_ncdhw = false;  // 64-byte aligned NCDHW planes of whole tiles: StreamTileRows
  int64_t y_rows() const { return expand ? expansion.padded_rows : p->channels; }
};

// The input's voxels [v0, v0 + n) as a channel-major tile.
template <class V>
TS_INLINE void LoadInputTile(const NormProjection& p, int64_t v0, int n, float* tile) {
  if (p.input_row_width > 0) {
    LoadTileRows<V>(static_cast<const float*>(p.input), v0, p.input_channels, p.input_row_width, tile);
  } else if (p.bf16) {
    LoadTile<V>(static_cast<const uint16_t*>(p.input), v0, n, p.input_channels, p.voxels, tile);
  } else {
    LoadTile<V>(static_cast<const float*>(p.input), v0, n, p.input_channels, p.voxels, tile);
  }
}

// The tile of y (normalised or not) at voxel v0, in `y` (or in `in` when there is no expansion).
template <class V>
TS_INLINE const float* ComputeY(const Job& job, int64_t v0, int n, float* in, float* y) {
  LoadInputTile<V>(*job.p, v0, n, in);
  if (!job.expand) return in;
  MultiplyTile<V>(job.expansion, in, y);
  return y;
}

// Without an expansion (y = x): per-channel sums of (x - shift) and its squares over tiles [t0, t1).
template <class V>
TS_INLINE void StatisticsRangeFor(const Job& job, int64_t t0, int64_t t1, double* sum, double* square) {
  const NormProjection& p = *job.p;
  const int64_t c_count = p.channels;
  std::vector<float> in(static_cast<size_t>(c_count * kLanes));
  // Per channel, one Vec of partial sums each (std::vector<Vec> would not be 64-byte aligned).
  std::vector<float> s(static_cast<size_t>(c_count * kLanes), 0.0f), q(s.size(), 0.0f);
  int pending = 0;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t v0 = t * kLanes;
    const int n = static_cast<int>(std::min<int64_t>(kLanes, p.voxels - v0));
    LoadInputTile<V>(p, v0, n, in.data());
    const V mask = V::FirstLanesOne(n);
    for (int64_t c = 0; c < c_count; ++c) {
      const V d = (V::Load(in.data() + c * kLanes) - job.shift[c]) * mask;
      (V::Load(&s[c * kLanes]) + d).Store(&s[c * kLanes]);
      V::Load(&q[c * kLanes]).MultiplyAdd(d, d).Store(&q[c * kLanes]);
    }
    if (++pending == kTilesPerPartial || t + 1 == t1) {
      for (int64_t c = 0; c < c_count; ++c) {
        for (int l = 0; l < kLanes; ++l) {
          sum[c] += s[c * kLanes + l];
          square[c] += q[c * kLanes + l];
        }
      }
      std::fill(s.begin(), s.end(), 0.0f);
      std::fill(q.begin(), q.end(), 0.0f);
      pending = 0;
    }
  }
}
TS_KERNEL_PER_ISA(StatisticsRange, (const Job& job, int64_t t0, int64_t t1, double* sum, double* square), (job, t0, t1, sum, square))

// One full tile row per NCDHW plane (64-byte aligned), stored around the caches: the head writes
// ~120 planes at once, and ordinary stores made every line a read for ownership first (0.29 s of
// the head's 0.30 s measured; the arithmetic takes 0.10 s). Not inline: an intrinsic compiles
// only inside a function of its instruction set.
__attribute__((target("avx512f"))) void StreamTileRowsAvx512(const float* tile, int64_t rows, float* base, int64_t plane) {
  for (int64_t r = 0; r < rows; ++r) _mm512_stream_ps(base + r * plane, _mm512_loadu_ps(tile + r * kLanes));
}
__attribute__((target("avx"))) void StreamTileRowsAvx(const float* tile, int64_t rows, float* base, int64_t plane) {
  for (int64_t r = 0; r < rows; ++r) {
    _mm256_stream_ps(base + r * plane, _mm256_loadu_ps(tile + r * kLanes));
    _mm256_stream_ps(base + r * plane + 8, _mm256_loadu_ps(tile + r * kLanes + 8));
  }
}
void StreamTileRowsSse(const float* tile, int64_t rows, float* base, int64_t plane) {
  for (int64_t r = 0; r < rows; ++r)
    for (int i = 0; i < kLanes; i += 4) _mm_stream_ps(base + r * plane + i, _mm_loadu_ps(tile + r * kLanes + i));
}
template <class V>
TS_INLINE void StreamTileRows(const float* tile, int64_t rows, float* base, int64_t plane) {
  if constexpr (V::kParts == 1) {
    StreamTileRowsAvx512(tile, rows, base, plane);
  } else if constexpr (V::kParts == 2) {
    StreamTileRowsAvx(tile, rows, base, plane);
  } else {
    StreamTileRowsSse(tile, rows, base, plane);
  }
}

// The tile's rows (one per class) added into the sum's volume with the tile voxels' weights:
// a run of 16 voxels within one x row is one vector per class, a run that wraps to the next row
// goes voxel by voxel.
template <class V>
TS_INLINE void AccumulateTileRows(const float* tile, int64_t rows, int64_t v0, int n, const WeightedLogitsSum& sum) {
  const int64_t plane = sum.tile_height * sum.tile_width;
  const int64_t z = v0 / plane, y = v0 % plane / sum.tile_width, x = v0 % sum.tile_width;
  if (n == kLanes && x + kLanes <= sum.tile_width) {
    const V w = V::Load(sum.weight + v0);
    float* base = sum.volume + z * sum.z_stride + y * sum.y_stride + x;
    for (int64_t r = 0; r < rows; ++r) {
      float* d = base + r * sum.class_stride;
      V::Load(d).MultiplyAdd(w, V::Load(tile + r * kLanes)).Store(d);
    }
    return;
  }
  for (int l = 0; l < n; ++l) {
    const int64_t v = v0 + l, vz = v / plane, vy = v % plane / sum.tile_width, vx = v % sum.tile_width;
    float* base = sum.volume + vz * sum.z_stride + vy * sum.y_stride + vx;
    for (int64_t r = 0; r < rows; ++r) base[r * sum.class_stride] += sum.weight[v] * tile[r * kLanes + l];
  }
}

// With an expansion y = U x + b, y's statistics follow from x's first and second moments
// (mean_y = U mean_x + b, var_y[c] = U_c cov_x U_c^T), which cost r(r+1)/2 products per voxel
// instead of recomputing the r x C expansion (the first pass took as long as the second). Sums
// of d = x - x0 (the first voxel) over tiles [t0, t1): first[k] and second[i * padded + j] for
// j in the 8-blocks from i's block on (the rest of the row is not needed: cov is symmetric).
// Each lane's float partials cover 256 voxels before they go into double, as above.
template <class V>
TS_INLINE void MomentsRangeFor(const Job& job, int64_t t0, int64_t t1, double* first, double* second) {
  const NormProjection& p = *job.p;
  const int64_t r = p.input_channels, rp = (r + kRows - 1) / kRows * kRows;
  std::vector<float> block(static_cast<size_t>(kTilesPerPartial * rp * kLanes), 0.0f);  // padded rows stay 0
  std::vector<float> first_partial(static_cast<size_t>(r * kLanes), 0.0f), second_partial(static_cast<size_t>(r * rp * kLanes), 0.0f);
  int blocks = 0;
  for (int64_t t = t0; t < t1; t += kTilesPerPartial) {
    const int64_t tiles = std::min<int64_t>(kTilesPerPartial, t1 - t);
    for (int64_t j = 0; j < tiles; ++j) {
      const int64_t v0 = (t + j) * kLanes;
      const int n = static_cast<int>(std::min<int64_t>(kLanes, p.voxels - v0));
      float* d = block.data() + j * rp * kLanes;
      LoadInputTile<V>(p, v0, n, d);
      const V mask = V::FirstLanesOne(n);
      for (int64_t k = 0; k < r; ++k) ((V::Load(d + k * kLanes) - job.input_shift[k]) * mask).Store(d + k * kLanes);
    }
    for (int64_t k = 0; k < r; ++k) {
      V acc = V::Load(&first_partial[k * kLanes]);
      for (int64_t j = 0; j < tiles; ++j) acc += V::Load(block.data() + (j * rp + k) * kLanes);
      acc.Store(&first_partial[k * kLanes]);
    }
    constexpr int kGroup = V::kRegisterRows;  // divides kRows, so rp
    for (int64_t i = 0; i < r; ++i) {
      for (int64_t jb = i / kRows * kRows; jb < rp; jb += kGroup) {
        V acc[kGroup];
        for (int q = 0; q < kGroup; ++q) acc[q] = V::Broadcast(0.0f);
        for (int64_t j = 0; j < tiles; ++j) {
          const float* d = block.data() + j * rp * kLanes;
          const V di = V::Load(d + i * kLanes);
          for (int q = 0; q < kGroup; ++q) acc[q].MultiplyAdd(di, V::Load(d + (jb + q) * kLanes));
        }
        float* partial = &second_partial[(i * rp + jb) * kLanes];
        for (int q = 0; q < kGroup; ++q) (V::Load(partial + q * kLanes) + acc[q]).Store(partial + q * kLanes);
      }
    }
    if (++blocks == kTilesPerPartial || t + kTilesPerPartial >= t1) {
      for (size_t k = 0; k < first_partial.size(); ++k) first[k / kLanes] += first_partial[k];
      for (size_t k = 0; k < second_partial.size(); ++k) second[k / kLanes] += second_partial[k];
      std::fill(first_partial.begin(), first_partial.end(), 0.0f);
      std::fill(second_partial.begin(), second_partial.end(), 0.0f);
      blocks = 0;
    }
  }
}
TS_KERNEL_PER_ISA(MomentsRange, (const Job& job, int64_t t0, int64_t t1, double* first, double* second), (job, t0, t1, first, second))

// Normalise, LeakyReLU and project tiles [t0, t1).
template <class V>
TS_INLINE void ProjectRangeFor(const Job& job, int64_t t0, int64_t t1) {
  const NormProjection& p = *job.p;
  const int64_t c_count = p.channels;
  std::vector<float> in(static_cast<size_t>(p.input_channels * kLanes)), y(static_cast<size_t>(job.y_rows() * kLanes));
  int64_t out_rows = 0;
  for (const auto& m : job.outputs) out_rows = std::max(out_rows, m.padded_rows);
  std::vector<float> out(static_cast<size_t>(out_rows * kLanes));
  const float slope = static_cast<float>(p.slope);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t v0 = t * kLanes;
    const int n = static_cast<int>(std::min<int64_t>(kLanes, p.voxels - v0));
    float* yt = const_cast<float*>(ComputeY<V>(job, v0, n, in.data(), y.data()));
    for (int64_t c = 0; c < c_count; ++c) {
      const V v = V::Load(yt + c * kLanes) * job.scale[c] + job.offset[c];
      Max(v, v * slope).Store(yt + c * kLanes);  // LeakyReLU for 0 <= slope <= 1
    }
    for (size_t o = 0; o < job.outputs.size(); ++o) {
      const PackedMatrix& m = job.outputs[o];
      const NormProjectionOutput& dst = p.outputs[o];
      MultiplyTile<V>(m, yt, out.data());
      if (dst.ncdhw && dst.sum) {
        AccumulateTileRows<V>(out.data(), m.rows, v0, n, *dst.sum);
      } else if (dst.ncdhw) {
        float* base = static_cast<float*>(dst.data) + v0;
        if (job.stream_ncdhw && n == kLanes) {
          StreamTileRows<V>(out.data(), m.rows, base, p.voxels);
          continue;
        }
        for (int64_t r = 0; r < m.rows; ++r) {
          if (n == kLanes) {
            V::Load(out.data() + r * kLanes).Store(base + r * p.voxels);
          } else {
            for (int l = 0; l < n; ++l) base[r * p.voxels + l] = out[r * kLanes + l];
          }
        }
      } else if (dst.row_width > 0) {
        StoreTileRows<V>(out.data(), v0, m.rows, dst.row_width, static_cast<float*>(dst.data));
      } else if (p.bf16) {
        StoreTileChannelsLast<V>(out.data(), v0, n, m.rows, static_cast<uint16_t*>(dst.data));
      } else {
        StoreTileChannelsLast<V>(out.data(), v0, n, m.rows, static_cast<float*>(dst.data));
      }
    }
  }
}
TS_KERNEL_PER_ISA(ProjectRange, (const Job& job, int64_t t0, int64_t t1), (job, t0, t1))

float FirstInput(const NormProjection& p, int64_t c) {
  if (p.input_row_width > 0) return static_cast<const float*>(p.input)[c * RowStride(p.input_row_width)];  // voxel 0's channel c
  return p.bf16 ? ToFloat(static_cast<const uint16_t*>(p.input)[c]) : static_cast<const float*>(p.input)[c];
}

}  // namespace

void RunNormProjection(const NormProjection& p) {
  Job job;
  job.p = &p;
  job.expand = p.expansion_weight != nullptr;
  const int64_t c_count = p.channels;
  if (job.expand) job.expansion = Pack(p.expansion_weight, p.expansion_bias, c_count, p.input_channels);
  for (const auto& o : p.outputs) job.outputs.push_back(Pack(o.weight, o.bias, o.channels, c_count));
  job.tiles = (p.voxels + kLanes - 1) / kLanes;
  job.stream_ncdhw = p.voxels % kLanes == 0;
  for (const auto& o : p.outputs) {
    if (o.ncdhw && (o.sum || reinterpret_cast<uintptr_t>(o.data) % 64 != 0)) job.stream_ncdhw = false;
  }
  const int threads = omp_get_max_threads();
  const double voxels = static_cast<double>(p.voxels);
  std::vector<double> mean(c_count), var(c_count);
  if (job.expand) {
    const int64_t r = p.input_channels, rp = (r + kRows - 1) / kRows * kRows;
    job.input_shift.resize(r);
    for (int64_t k = 0; k < r; ++k) job.input_shift[k] = FirstInput(p, k);
    std::vector<double> first(static_cast<size_t>(threads * r), 0.0), second(static_cast<size_t>(threads * r * rp), 0.0);
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num();
      int64_t begin, end;
      ThreadRange(job.tiles, t, omp_get_num_threads(), &begin, &end);
      MomentsRange(job, begin, end, &first[static_cast<size_t>(t * r)], &second[static_cast<size_t>(t * r * rp)]);
    }
    std::vector<double> mean_d(r, 0.0), cov(static_cast<size_t>(r * r), 0.0);
    for (int t = 0; t < threads; ++t)
      for (int64_t k = 0; k < r; ++k) mean_d[k] += first[static_cast<size_t>(t * r + k)] / voxels;
    for (int64_t i = 0; i < r; ++i) {
      for (int64_t j = i; j < r; ++j) {
        double sum = 0;
        for (int t = 0; t < threads; ++t) sum += second[static_cast<size_t>(t * r * rp + i * rp + j)];
        cov[i * r + j] = cov[j * r + i] = sum / voxels - mean_d[i] * mean_d[j];
      }
    }
    for (int64_t c = 0; c < c_count; ++c) {
      const float* u = p.expansion_weight + c * r;
      double m = p.expansion_bias ? p.expansion_bias[c] : 0.0, v = 0;
      for (int64_t i = 0; i < r; ++i) {
        m += u[i] * (mean_d[i] + job.input_shift[i]);
        double row = 0;
        for (int64_t j = 0; j < r; ++j) row += cov[i * r + j] * u[j];
        v += u[i] * row;
      }
      mean[c] = m;
      var[c] = std::max(0.0, v);
    }
  } else {
    job.shift.resize(c_count);
    for (int64_t c = 0; c < c_count; ++c) job.shift[c] = FirstInput(p, c);
    std::vector<double> sums(static_cast<size_t>(threads * c_count), 0.0), squares(sums.size(), 0.0);
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num();
      int64_t begin, end;
      ThreadRange(job.tiles, t, omp_get_num_threads(), &begin, &end);
      StatisticsRange(job, begin, end, &sums[static_cast<size_t>(t * c_count)], &squares[static_cast<size_t>(t * c_count)]);
    }
    for (int64_t c = 0; c < c_count; ++c) {
      double sum = 0, square = 0;
      for (int t = 0; t < threads; ++t) {
        sum += sums[static_cast<size_t>(t * c_count + c)];
        square += squares[static_cast<size_t>(t * c_count + c)];
      }
      const double mean_shifted = sum / voxels;
      mean[c] = mean_shifted + job.shift[c];
      var[c] = std::max(0.0, square / voxels - mean_shifted * mean_shifted);
    }
  }
  job.scale.resize(c_count);
  job.offset.resize(c_count);
  for (int64_t c = 0; c < c_count; ++c) {
    const double inv_std = 1.0 / std::sqrt(var[c] + p.eps);
    const double g = p.gamma ? p.gamma[c] : 1.0;
    job.scale[c] = static_cast<float>(inv_std * g);
    job.offset[c] = static_cast<float>((p.beta ? p.beta[c] : 0.0) - mean[c] * inv_std * g);
  }
#pragma omp parallel num_threads(threads)
  {
    int64_t begin, end;
    ThreadRange(job.tiles, omp_get_thread_num(), omp_get_num_threads(), &begin, &end);
    ProjectRange(job, begin, end);
    if (job.stream_ncdhw) _mm_sfence();  // the streamed stores are visible before the call returns
  }
}

}  // namespace tucker_seg::cpu_engine
