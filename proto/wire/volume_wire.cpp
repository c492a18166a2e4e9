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

Status CtAssembler::Append(std::string_view chunk) {
  if (static_cast<int64_t>(chunk.size()) > header_.bytes - received_) {
    return InvalidArgument("voxels: more than the " + std::to_string(header_.bytes) + " bytes the header declares (size x voxel_type)");
  }
  if (voxels_.empty()) voxels_.resize(static_cast<size_t>(header_.voxels));
  const int width = static_cast<int>(VoxelBytes(header_.voxel_type));
  auto decode = [this](const char* bytes, int64_t index) -> Status {
    float value;
    switch (header_.voxel_type) {
      case tuckerseg::v1::VOXEL_TYPE_INT16: {
        int16_t v;
        std::memcpy(&v, bytes, 2);
        value = v;
        break;
      }
      case tuckerseg::v1::VOXEL_TYPE_FLOAT32:
        std::memcpy(&value, bytes, 4);
        if (!std::isfinite(value)) return InvalidArgument("voxels: value at index " + std::to_string(index) + " is not finite");
        break;
      default:
        value = static_cast<uint8_t>(bytes[0]);
    }
    voxels_[static_cast<size_t>(index)] = value;
    return Status::Ok();
  };
  size_t offset = 0;
  if (partial_bytes_ > 0) {  // finish the voxel the last chunk began
    while (partial_bytes_ < width && offset < chunk.size()) partial_[partial_bytes_++] = chunk[offset++];
    if (partial_bytes_ < width) {
      received_ += static_cast<int64_t>(chunk.size());
      return Status::Ok();
    }
    TS_RETURN_IF_ERROR(decode(partial_, received_ / width));
    partial_bytes_ = 0;
  }
  int64_t index = (received_ + static_cast<int64_t>(offset)) / width;
  for (; offset + static_cast<size_t>(width) <= chunk.size(); offset += static_cast<size_t>(width)) TS_RETURN_IF_ERROR(decode(chunk.data() + offset, index++));
  while (offset < chunk.size()) partial_[partial_bytes_++] = chunk[offset++];
  received_ += static_cast<int64_t>(chunk.size());
  return Status::Ok();
}

Result<CtVolume> CtAssembler::Finish() {
  if (received_ != header_.bytes) {
    return InvalidArgument("voxels: the stream ended after " + std::to_string(received_) + " of the " + std::to_string(header_.bytes) +
                           " bytes the header declares (size x voxel_type)");
  }
  CtVolume ct;
  ct.geometry = header_.geometry;
  ct.voxels = std::move(voxels_);
  return ct;
}

Result<CtVolume> DecodeCt(const VolumeHeader& header, const std::string& bytes) {
  CtAssembler assembler(header);
  TS_RETURN_IF_ERROR(assembler.Append(bytes));
  return assembler.Finish();
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
