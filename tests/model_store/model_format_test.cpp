#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model_store/model.h"
#include "model_store/nnunet_import.h"
#include "model_store/safetensors.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

using ::testing::HasSubstr;

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
  std::ofstream f(dir / "bad.safetensors", std::ios::binary);
  const uint64_t len = header.size();
  f.write(reinterpret_cast<const char*>(&len), 8);
  f << header << "abcd";
  f.close();
  auto r = ReadSafetensors((dir / "bad.safetensors").string());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("data_offsets outside the file"));
}

TEST(ModelFormat, SaveAndLoadKeepEverything) {
  NnUNetImportOptions opt;
  opt.results_dir = testing::ResultsDir("aniso5").string();
  opt.name = "aniso5";
  auto model = ImportNnUNet(opt);
  ASSERT_TRUE(model.ok()) << model.status().message();
  const auto dir = testing::TempDir("model-format");
  ASSERT_TRUE(SaveModel(model.value(), dir.string()).ok());
  auto loaded = LoadModel(dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(ToJson(loaded.value().info), ToJson(model.value().info));
  ASSERT_EQ(loaded.value().weights.size(), model.value().weights.size());
  for (const auto& [k, v] : model.value().weights) EXPECT_TRUE(torch::equal(loaded.value().weights.at(k), v)) << k;
}

TEST(ModelFormat, NewerFormatVersionIsRefusedByName) {
  const auto dir = testing::TempDir("model-version");
  std::ofstream(dir / "model.json") << R"({"format": "tucker-seg-model", "format_version": 99})";
  auto r = LoadModelInfo(dir.string());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("format_version 99 is not supported"));
}

}  // namespace
}  // namespace tucker_seg
