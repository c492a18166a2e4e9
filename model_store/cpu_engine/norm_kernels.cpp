#include "model_store/cpu_engine/norm_kernels.h"

#include "model_store/cpu_engine/tile_math.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace tucker_seg::cpu_engine {
namespace {

using tile::FromFloat;
using tile::ThreadRange;
using tile::ToFloat;

template <typename T>
void Run(T* x, int64_t voxels, int64_t c_count, const float* gamma, const float* beta, double eps, double slope) {
  std::vector<float> shift(c_count);
  for (int64_t c = 0; c < c_count; ++c) shift[c] = ToFloat(x[c]);
  const int threads = omp_get_max_threads();
  std::vector<double> sums(static_cast<size_t>(threads) * c_count, 0.0), squares(sums.size(), 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    int64_t begin, end;
    ThreadRange(voxels, t, omp_get_num_threads(), &begin, &end);
    std::vector<float> s(c_count), q(c_count);
    double* sum = &sums[static_cast<size_t>(t) * c_count];
    double* sq = &squares[static_cast<size_t>(t) * c_count];
    constexpr int64_t kBlock = 256;  // float partial sums over at most this many voxels
    for (int64_t b = begin; b < end; b += kBlock) {
      std::fill(s.begin(), s.end(), 0.0f);
      std::fill(q.begin(), q.end(), 0.0f);
      const int64_t e = std::min(end, b + kBlock);
      for (int64_t v = b; v < e; ++v) {
        const T* row = x + v * c_count;
        for (int64_t c = 0; c < c_count; ++c) {
          const float d = ToFloat(row[c]) - shift[c];
          s[c] += d;
          q[c] += d * d;
        }
      }
      for (int64_t c = 0; c < c_count; ++c) {
        sum[c] += s[c];
        sq[c] += q[c];
      }
    }
  }
  std::vector<float> scale(c_count), offset(c_count);
  for (int64_t c = 0; c < c_count; ++c) {
    double sum = 0, sq = 0;
    for (int t = 0; t < threads; ++t) {
      sum += sums[static_cast<size_t>(t) * c_count + c];
      sq += squares[static_cast<size_t>(t) * c_count + c];
    }
    const double mean_shifted = sum / static_cast<double>(voxels);
    const double var = std::max(0.0, sq / static_cast<double>(voxels) - mean_shifted * mean_shifted);
    const double inv_std = 1.0 / std::sqrt(var + eps);
    const double g = gamma ? gamma[c] : 1.0;
    scale[c] = static_cast<float>(inv_std * g);
    offset[c] = static_cast<float>((beta ? beta[c] : 0.0) - (mean_shifted + shift[c]) * inv_std * g);
  }
  const float neg = static_cast<float>(slope);
#pragma omp parallel num_threads(threads)
  {
    int64_t begin, end;
    ThreadRange(voxels, omp_get_thread_num(), omp_get_num_threads(), &begin, &end);
    for (int64_t v = begin; v < end; ++v) {
      T* row = x + v * c_count;
      for (int64_t c = 0; c < c_count; ++c) {
        const float t = ToFloat(row[c]) * scale[c] + offset[c];
        FromFloat(std::max(t, t * neg), row + c);  // LeakyReLU for 0 <= slope <= 1
      }
    }
  }
}

}  // namespace

void InstanceNormLeakyReluChannelsLast(void* data, bool bf16, int64_t voxels, int64_t channels, const float* gamma,
                                       const float* beta, double eps, double slope) {
  if (bf16) {
    Run(static_cast<uint16_t*>(data), voxels, channels, gamma, beta, eps, slope);
  } else {
    Run(static_cast<float*>(data), voxels, channels, gamma, beta, eps, slope);
  }
}

}  // namespace tucker_seg::cpu_engine
