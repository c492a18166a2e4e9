// A synthetic abdomen-like CT for benchmarks: air around an elliptic body of soft tissue with a
// spine and rib-like rings of bone, on a 512 x 512 x N grid at 0.8 x 0.8 x 1.5 mm by default.
#pragma once

#include <cmath>
#include <random>

#include "vocabulary/volume.h"

namespace tucker_seg::bench {

inline CtVolume SyntheticCt(int64_t slices, int64_t in_plane = 512, Xyz<double> spacing = {{0.8, 0.8, 1.5}}) {
  CtVolume ct;
  ct.geometry.size = {in_plane, in_plane, slices};
  ct.geometry.spacing = spacing;
  ct.voxels.resize(static_cast<size_t>(ct.geometry.NumVoxels()));
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.0f, 20.0f);
  const double c = in_plane / 2.0, s = in_plane / 512.0;
  size_t i = 0;
  for (int64_t z = 0; z < slices; ++z)
    for (int64_t y = 0; y < in_plane; ++y)
      for (int64_t x = 0; x < in_plane; ++x, ++i) {
        const double ex = (x - c) / (220.0 * s), ey = (y - c) / (160.0 * s);
        const double r = std::sqrt(ex * ex + ey * ey);
        const double spine = std::hypot(x - c, y - (c + 94.0 * s));
        float hu = -1000.0f;
        if (r < 1.0) hu = 40.0f + noise(rng);
        if (spine < 25.0 * s || (r > 0.85 && r < 0.9 && (z / 20) % 2 == 0)) hu = 700.0f + noise(rng);
        ct.voxels[i] = hu;
      }
  return ct;
}

}  // namespace tucker_seg::bench
