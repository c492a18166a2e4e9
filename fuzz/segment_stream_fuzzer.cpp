// Input: 2 bytes n (little-endian), n bytes of a serialized SegmentRequest (the header), then
// voxel bytes, cut into chunks whose sizes come from the voxel bytes themselves.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tuckerseg/v1/segmentation.pb.h"
#include "wire/volume_wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t header_size = std::min<size_t>(size - 2, data[0] | (data[1] << 8));
  tuckerseg::v1::SegmentRequest request;
  if (!request.ParseFromArray(data + 2, static_cast<int>(header_size)) || !request.has_header()) return 0;
  // Small limits: the harness checks the logic, not the machine's memory.
  auto header = tucker_seg::wire::ParseVolumeHeader(request.header().volume(), {1 << 16, 1 << 18}, "header.volume");
  if (!header.ok()) return 0;
  tucker_seg::wire::CtAssembler assembler(header.value());
  std::string_view rest(reinterpret_cast<const char*>(data) + 2 + header_size, size - 2 - header_size);
  while (!rest.empty()) {
    const size_t chunk = std::min<size_t>(rest.size(), 1 + static_cast<uint8_t>(rest[0]) % 13);
    if (!assembler.Append(rest.substr(0, chunk)).ok()) return 0;
    rest.remove_prefix(chunk);
  }
  auto ct = assembler.Finish();
  if (ct.ok() && static_cast<int64_t>(ct.value().voxels.size()) != header.value().voxels) __builtin_trap();
  return 0;
}
