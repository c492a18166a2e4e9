// The safetensors reader and writer: exact round trips, sizes checked before allocation.
#include "model_store/format/safetensors.h"

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_paths.h"

namespace tucker_seg {
namespace {

using ::testing::HasSubstr;

// A safetensors file written by hand: the 8-byte header length, the header, then `data`.
std::string WriteRaw(const std::filesystem::path& dir, const std::string& header, const std::string& data) {
  const std::string path = (dir / "raw.safetensors").string();
  std::ofstream f(path, std::ios::binary);
  const uint64_t len = header.size();
  f.write(reinterpret_cast<const char*>(&len), 8);
  f << header << data;
  return path;
}

TEST(Safetensors, RoundTripsTensorsExactly) {
  const auto dir = testing::TempDir("safetensors");
  std::map<std::string, torch::Tensor> in = {{"a", torch::randn({2, 3, 4})}, {"b", torch::arange(7, torch::kInt64)}, {"empty", torch::zeros({0, 3})}};
  ASSERT_TRUE(WriteSafetensors((dir / "w.safetensors").string(), in).ok());
  auto out = ReadSafetensors((dir / "w.safetensors").string());
  ASSERT_TRUE(out.ok()) << out.status().message();
  ASSERT_EQ(out.value().size(), 3u);
  for (const auto& [k, v] : in) EXPECT_TRUE(torch::equal(out.value().at(k), v)) << k;
}

TEST(Safetensors, HugeHeaderLengthIsRejectedBeforeAllocation) {
  const auto dir = testing::TempDir("safetensors-bad");
  std::ofstream f(dir / "bad.safetensors", std::ios::binary);
  const uint64_t len = 1ull << 60;
  f.write(reinterpret_cast<const char*>(&len), 8);
  f << "{}";
  f.close();
  auto r = ReadSafetensors((dir / "bad.safetensors").string());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("exceeds the file"));
}

TEST(Safetensors, OffsetsOutsideTheFileAreRejected) {
  const auto dir = testing::TempDir("safetensors-offsets");
  const std::string header = R"({"w":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}})";
  auto r = ReadSafetensors(WriteRaw(dir, header, "abcd"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("data_offsets outside the file"));
}

TEST(Safetensors, OverlappingTensorsAreRejected) {
  const auto dir = testing::TempDir("safetensors-overlap");
  // Both tensors claim the same 4000 bytes: before, each was allocated and read from them.
  const std::string header = R"({"a":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]},)"
                             R"("b":{"dtype":"F32","shape":[10],"data_offsets":[3960,4000]}})";
  auto r = ReadSafetensors(WriteRaw(dir, header, std::string(4000, '\0')));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("overlap another tensor's"));
}

TEST(Safetensors, DeeplyNestedHeaderIsRejected) {
  const auto dir = testing::TempDir("safetensors-deep");
  const std::string header = "{\"__metadata__\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  auto r = ReadSafetensors(WriteRaw(dir, header, ""));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("nested deeper than 64 levels"));
}

}  // namespace
}  // namespace tucker_seg
