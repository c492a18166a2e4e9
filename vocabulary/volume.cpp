#include "vocabulary/volume.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace tucker_seg {

Status ValidateGeometry(const Geometry& g, int64_t max_voxels) {
  static const char* kAxis[] = {"x", "y", "z"};
  int64_t total = 1;
  for (int a = 0; a < 3; ++a) {
    if (g.size[a] < 1) return InvalidArgument(std::string("size.") + kAxis[a] + " is " + std::to_string(g.size[a]) + ", must be >= 1");
    if (g.size[a] > max_voxels / total) {
      return InvalidArgument("size declares more voxels than the limit max_voxels = " + std::to_string(max_voxels));
    }
    total *= g.size[a];
    if (!std::isfinite(g.spacing[a]) || g.spacing[a] <= 0) {
      return InvalidArgument(std::string("spacing.") + kAxis[a] + " is " + std::to_string(g.spacing[a]) + ", must be finite and > 0");
    }
    if (!std::isfinite(g.origin[a])) return InvalidArgument(std::string("origin.") + kAxis[a] + " is not finite");
  }
  for (double d : g.direction)
    if (!std::isfinite(d)) return InvalidArgument("direction has a value that is not finite");
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      double dot = 0;
      for (int k = 0; k < 3; ++k) dot += g.direction[k * 3 + i] * g.direction[k * 3 + j];
      if (std::abs(dot - (i == j ? 1.0 : 0.0)) > 1e-3) return InvalidArgument("direction is not orthonormal (columns must be unit and perpendicular within 1e-3)");
    }
  }
  return Status::Ok();
}

Status ValidateCt(const CtVolume& ct, int64_t max_voxels) {
  TS_RETURN_IF_ERROR(ValidateGeometry(ct.geometry, max_voxels));
  if (static_cast<int64_t>(ct.voxels.size()) != ct.geometry.NumVoxels()) {
    return InvalidArgument("voxel count " + std::to_string(ct.voxels.size()) + " does not match size " +
                           std::to_string(ct.geometry.NumVoxels()));
  }
  // A branch-free pass over the exponent bits (all ones: NaN or infinity) vectorises; the voxel to
  // name is looked for only when there is one.
  uint32_t not_finite = 0;
  for (const float v : ct.voxels) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    not_finite |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  if (not_finite) {
    const auto bad = std::find_if(ct.voxels.begin(), ct.voxels.end(), [](float v) { return !std::isfinite(v); });
    return InvalidArgument("voxel " + std::to_string(bad - ct.voxels.begin()) + " is not finite (NaN or infinity)");
  }
  return Status::Ok();
}

}  // namespace tucker_seg
