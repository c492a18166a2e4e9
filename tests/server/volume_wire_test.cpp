// Header checks happen before any allocation and name the field and the limit.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "wire/volume_wire.h"

namespace tucker_seg::wire {
namespace {

tuckerseg::v1::VolumeGeometry Valid(int64_t x = 4, int64_t y = 3, int64_t z = 2) {
  Geometry g;
  g.size = {x, y, z};
  g.spacing = {0.8, 0.8, 2.5};
  g.origin = {-10, 20, 30};
  tuckerseg::v1::VolumeGeometry w;
  ToWire(g, tuckerseg::v1::VOXEL_TYPE_INT16, &w);
  return w;
}

const VolumeLimits kLimits{1000, 4000};

TEST(VolumeWire, AcceptsAValidHeader) {
  auto h = ParseVolumeHeader(Valid(), kLimits, "header.volume");
  ASSERT_TRUE(h.ok()) << h.status().message();
  EXPECT_EQ(h.value().voxels, 24);
  EXPECT_EQ(h.value().bytes, 48);
  EXPECT_DOUBLE_EQ(h.value().geometry.spacing[2], 2.5);
}

void ExpectRejected(const tuckerseg::v1::VolumeGeometry& w, const std::string& needle, const VolumeLimits& limits = kLimits) {
  auto h = ParseVolumeHeader(w, limits, "header.volume");
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(h.status().message().find(needle), std::string::npos) << h.status().message();
}

TEST(VolumeWire, RejectsBadHeadersNamingTheFieldAndLimit) {
  auto w = Valid();
  w.set_voxel_type(tuckerseg::v1::VOXEL_TYPE_UNSPECIFIED);
  ExpectRejected(w, "header.volume.voxel_type");
  // Dims whose product overflows int64 are refused without computing (or allocating) it.
  ExpectRejected(Valid(int64_t{1} << 40, int64_t{1} << 40, int64_t{1} << 40), "max_voxels = 1000");
  ExpectRejected(Valid(0, 3, 2), "header.volume.size.x is 0");
  ExpectRejected(Valid(), "max_bytes 40", {1000, 40});
  w = Valid();
  w.set_spacing(1, std::nan(""));
  ExpectRejected(w, "header.volume.spacing.y");
  w = Valid();
  w.set_origin(0, std::numeric_limits<double>::infinity());
  ExpectRejected(w, "header.volume.origin.x");
  w = Valid();
  w.set_direction(0, 2.0);
  ExpectRejected(w, "orthonormal");
  w = Valid();
  w.add_size(5);
  ExpectRejected(w, "header.volume.size has 4 entries");
}

TEST(VolumeWire, EncodesAndDecodesCtVoxels) {
  CtVolume ct;
  ct.geometry.size = {3, 1, 1};
  ct.voxels = {-1024.4f, 0.0f, 3071.6f};
  auto h = ParseVolumeHeader(Valid(3, 1, 1), kLimits, "v");
  ASSERT_TRUE(h.ok());
  auto back = DecodeCt(h.value(), EncodeCt(ct, tuckerseg::v1::VOXEL_TYPE_INT16));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back.value().voxels, (std::vector<float>{-1024, 0, 3072}));
  auto short_bytes = DecodeCt(h.value(), "abc");
  EXPECT_EQ(short_bytes.status().code(), StatusCode::kInvalidArgument);

  auto wf = Valid(3, 1, 1);
  wf.set_voxel_type(tuckerseg::v1::VOXEL_TYPE_FLOAT32);
  auto hf = ParseVolumeHeader(wf, kLimits, "v");
  ASSERT_TRUE(hf.ok());
  ct.voxels[1] = std::nanf("");
  auto nan = DecodeCt(hf.value(), EncodeCt(ct, tuckerseg::v1::VOXEL_TYPE_FLOAT32));
  ASSERT_FALSE(nan.ok());
  EXPECT_NE(nan.status().message().find("index 1"), std::string::npos);
}

TEST(VolumeWire, AssemblesVoxelsSplitAcrossChunksAnywhere) {
  CtVolume ct;
  ct.geometry.size = {5, 1, 1};
  ct.voxels = {-1000, -1.5f, 0, 42.25f, 3000};
  for (auto type : {tuckerseg::v1::VOXEL_TYPE_INT16, tuckerseg::v1::VOXEL_TYPE_FLOAT32}) {
    auto w = Valid(5, 1, 1);
    w.set_voxel_type(type);
    auto h = ParseVolumeHeader(w, kLimits, "v");
    ASSERT_TRUE(h.ok());
    const std::string bytes = EncodeCt(ct, type);
    const auto whole = DecodeCt(h.value(), bytes).value().voxels;
    for (size_t chunk = 1; chunk <= bytes.size(); ++chunk) {  // 1-byte chunks split every voxel
      CtAssembler assembler(h.value());
      for (size_t offset = 0; offset < bytes.size(); offset += chunk) ASSERT_TRUE(assembler.Append(std::string_view(bytes).substr(offset, chunk)).ok());
      auto back = assembler.Finish();
      ASSERT_TRUE(back.ok()) << back.status().message();
      EXPECT_EQ(back.value().voxels, whole) << "chunk " << chunk;
    }
    CtAssembler over(h.value());
    ASSERT_TRUE(over.Append(bytes.substr(0, 3)).ok());
    const Status too_many = over.Append(bytes);
    EXPECT_NE(too_many.message().find("more than the " + std::to_string(bytes.size()) + " bytes"), std::string::npos) << too_many.message();
    CtAssembler under(h.value());
    ASSERT_TRUE(under.Append(bytes.substr(0, 3)).ok());
    EXPECT_NE(under.Finish().status().message().find("ended after 3 of the"), std::string::npos);
  }
}

}  // namespace
}  // namespace tucker_seg::wire
