#include "wire/volume_wire.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tucker_seg::wire {

using tuckerseg::v1::VoxelType;

int64_t VoxelBytes(VoxelType type) {
  switch (type) {
    case tuckerseg::v1::VOXEL_TYPE_INT16: return 2;
    case tuckerseg::v1::VOXEL_TYPE_FLOAT32: return 4;
    case tuckerseg::v1::VOXEL_TYPE_UINT8: return 1;
    default: return 0;
  }
}

Result<VolumeHeader> ParseVolumeHeader(const tuckerseg::v1::VolumeGeometry& wire, const VolumeLimits& limits,
                                       const std::string& field_prefix) {
  const std::string f = field_prefix.empty() ? "" : field_prefix + ".";
  VolumeHeader h;
  h.voxel_type = wire.voxel_type();
  const int64_t voxel_bytes = VoxelBytes(h.voxel_type);
  if (voxel_bytes == 0) {
    return InvalidArgument(f + "voxel_type " + std::to_string(static_cast<int>(wire.voxel_type())) +
                           " is not supported (VOXEL_TYPE_INT16, VOXEL_TYPE_FLOAT32 or VOXEL_TYPE_UINT8)");
  }
  if (wire.size_size() != 3) return InvalidArgument(f + "size has " + std::to_string(wire.size_size()) + " entries, must have 3 (x, y, z)");
  if (wire.spacing_size() != 3) return InvalidArgument(f + "spacing has " + std::to_string(wire.spacing_size()) + " entries, must have 3");
  if (wire.origin_size() != 3) return InvalidArgument(f + "origin has " + std::to_string(wire.origin_size()) + " entries, must have 3");
  if (wire.direction_size() != 9) {
    return InvalidArgument(f + "direction has " + std::to_string(wire.direction_size()) + " entries, must have 9 (3x3 row-major)");
  }
  for (int a = 0; a < 3; ++a) {
    h.geometry.size[a] = wire.size(a);
    h.geometry.spacing[a] = wire.spacing(a);
    h.geometry.origin[a] = wire.origin(a);
  }
  for (int i = 0; i < 9; ++i) h.geometry.direction[i] = wire.direction(i);
  if (Status s = ValidateGeometry(h.geometry, limits.max_voxels); !s.ok()) {
    return InvalidArgument(f + s.message());
  }
  h.voxels = h.geometry.size[0] * h.geometry.size[1] * h.geometry.size[2];
  if (h.voxels > limits.max_bytes / voxel_bytes) {
    return InvalidArgument(f + "size declares " + std::to_string(h.voxels) + " voxels x " + std::to_string(voxel_bytes) +
                           " bytes, more than max_bytes " + std::to_string(limits.max_bytes));
  }
  h.bytes = h.voxels * voxel_bytes;
  return h;
}

void ToWire(const Geometry& geometry, VoxelType type, tuckerseg::v1::VolumeGeometry* wire) {
  wire->Clear();
  for (int a = 0; a < 3; ++a) {
    wire->add_size(geometry.size[a]);
    wire->add_spacing(geometry.spacing[a]);
    wire->add_origin(geometry.origin[a]);
  }
  for (double d : geometry.direction) wire->add_direction(d);
  wire->set_voxel_type(type);
}

Result<CtVolume> DecodeCt(const VolumeHeader& header, const std::string& bytes) {
  if (static_cast<int64_t>(bytes.size()) != header.bytes) {
    return InvalidArgument("voxels: received " + std::to_string(bytes.size()) + " bytes, the header declares " + std::to_string(header.bytes));
  }
  CtVolume ct;
  ct.geometry = header.geometry;
  ct.voxels.resize(static_cast<size_t>(header.voxels));
  switch (header.voxel_type) {
    case tuckerseg::v1::VOXEL_TYPE_INT16:
      for (size_t i = 0; i < ct.voxels.size(); ++i) {
        int16_t v;
        std::memcpy(&v, bytes.data() + 2 * i, 2);
        ct.voxels[i] = v;
      }
      break;
    case tuckerseg::v1::VOXEL_TYPE_FLOAT32:
      std::memcpy(ct.voxels.data(), bytes.data(), bytes.size());
      for (size_t i = 0; i < ct.voxels.size(); ++i)
        if (!std::isfinite(ct.voxels[i])) return InvalidArgument("voxels: value at index " + std::to_string(i) + " is not finite");
      break;
    case tuckerseg::v1::VOXEL_TYPE_UINT8:
      for (size_t i = 0; i < ct.voxels.size(); ++i) ct.voxels[i] = static_cast<uint8_t>(bytes[i]);
      break;
    default:
      return InvalidArgument("voxel_type is not supported");
  }
  return ct;
}

std::string EncodeCt(const CtVolume& ct, VoxelType type) {
  std::string bytes;
  if (type == tuckerseg::v1::VOXEL_TYPE_INT16) {
    bytes.resize(ct.voxels.size() * 2);
    for (size_t i = 0; i < ct.voxels.size(); ++i) {
      const auto v = static_cast<int16_t>(std::clamp(std::nearbyint(ct.voxels[i]), -32768.0f, 32767.0f));
      std::memcpy(bytes.data() + 2 * i, &v, 2);
    }
  } else {
    bytes.resize(ct.voxels.size() * 4);
    std::memcpy(bytes.data(), ct.voxels.data(), bytes.size());
  }
  return bytes;
}

}  // namespace tucker_seg::wire
