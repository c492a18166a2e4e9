// Volumes on the wire (tuckerseg.v1.VolumeGeometry + raw voxel bytes) <-> vocabulary types.
// Shared by the server and the client library; no LibTorch, no gRPC calls.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tuckerseg/v1/segmentation.pb.h"
#include "vocabulary/status.h"
#include "vocabulary/volume.h"

namespace tucker_seg::wire {

struct VolumeLimits {
  int64_t max_voxels = 0;
  int64_t max_bytes = 0;
};

// A header that passed every check: its geometry and how many voxel bytes must follow.
struct VolumeHeader {
  Geometry geometry;
  tuckerseg::v1::VoxelType voxel_type = tuckerseg::v1::VOXEL_TYPE_UNSPECIFIED;
  int64_t voxels = 0;
  int64_t bytes = 0;
};

int64_t VoxelBytes(tuckerseg::v1::VoxelType type);  // 0 for unknown types

// Checks everything before any allocation: voxel type, size (overflow-safe against max_voxels),
// byte count against max_bytes, finite positive spacing, finite origin, orthonormal direction.
// Messages name the field as `<field_prefix>.<name>` and the limit.
Result<VolumeHeader> ParseVolumeHeader(const tuckerseg::v1::VolumeGeometry& wire, const VolumeLimits& limits,
                                       const std::string& field_prefix);

void ToWire(const Geometry& geometry, tuckerseg::v1::VoxelType type, tuckerseg::v1::VolumeGeometry* wire);

// Raw little-endian voxels (bytes.size() == header.bytes) -> a CT in Hounsfield units; float
// voxels must be finite.
Result<CtVolume> DecodeCt(const VolumeHeader& header, const std::string& bytes);

// Decodes voxel chunks as they arrive straight into the CT's float voxels (no copy of the raw
// bytes beside them); a voxel may straddle two chunks. The voxel buffer is allocated on the
// first chunk, after the caller has admitted header.bytes.
class CtAssembler {
 public:
  explicit CtAssembler(const VolumeHeader& header) : header_(header) {}
  // INVALID_ARGUMENT when the chunks would exceed the declared bytes or a float is not finite.
  Status Append(std::string_view chunk);
  int64_t received_bytes() const { return received_; }
  // The CT, once exactly header.bytes have arrived.
  Result<CtVolume> Finish();

 private:
  VolumeHeader header_;
  std::vector<float> voxels_;
  int64_t received_ = 0;
  char partial_[4] = {};
  int partial_bytes_ = 0;
};

// A CT -> raw voxels of `type` (int16 rounds and clamps; float32 as is).
std::string EncodeCt(const CtVolume& ct, tuckerseg::v1::VoxelType type);

}  // namespace tucker_seg::wire
