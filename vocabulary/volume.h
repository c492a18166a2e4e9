// A CT or a label map on its grid: voxels plus ITK/LPS geometry. Dependency-free: the client
// (no LibTorch), the server and model_store all speak it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "vocabulary/status.h"

namespace tucker_seg {

// Two axis orders meet in this project, and each has its own type so that a mix-up does not
// compile; ToZyx/ToXyz convert between them (no code reverses a geometry's axes by hand).
// Zyx: along the voxel array's axes, slowest first (z, y, x for an image as stored, x fastest in
// memory). LibTorch tensors and nnU-Net's plans (patch, kernels, strides, spacing) use it.
template <typename T>
struct Zyx : std::array<T, 3> {};
// Xyz: along x, y, z, ITK's order. Geometry's size and spacing use it.
template <typename T>
struct Xyz : std::array<T, 3> {};

template <typename T>
Zyx<T> ToZyx(const Xyz<T>& v) {
  return {{v[2], v[1], v[0]}};
}
template <typename T>
Xyz<T> ToXyz(const Zyx<T>& v) {
  return {{v[2], v[1], v[0]}};
}

// Shapes, patches, kernel sizes and strides, (z, y, x).
using Int3 = Zyx<int64_t>;

struct Geometry {
  Xyz<int64_t> size{{0, 0, 0}};              // voxels along x, y, z; x varies fastest in memory
  Xyz<double> spacing{{1, 1, 1}};            // mm along x, y, z
  std::array<double, 3> origin{0, 0, 0};     // mm, LPS, centre of the first voxel
  std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};  // row-major 3x3; column i = axis i's direction

  int64_t NumVoxels() const { return size[0] * size[1] * size[2]; }
  bool operator==(const Geometry& o) const {
    return size == o.size && spacing == o.spacing && origin == o.origin && direction == o.direction;
  }
};

template <typename T>
struct Volume {
  Geometry geometry;
  std::vector<T> voxels;  // NumVoxels() values, x fastest
};

using CtVolume = Volume<float>;       // Hounsfield units
using LabelMap = Volume<uint8_t>;     // class ids
using LabelTable = std::vector<std::pair<int64_t, std::string>>;  // class id -> name; 0 = background

// Checks sizes (each >= 1, total <= max_voxels), spacing (finite, > 0), origin (finite) and
// direction (finite, orthonormal within 1e-3). Messages name the field and the limit.
Status ValidateGeometry(const Geometry& g, int64_t max_voxels);

// Geometry plus: voxel count matches the size, every voxel is finite.
Status ValidateCt(const CtVolume& ct, int64_t max_voxels);

}  // namespace tucker_seg
