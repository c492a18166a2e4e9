#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model_store/format/model.h"
#include "model_store/import/nnunet_import.h"
#include "model_store/format/safetensors.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

using ::testing::HasSubstr;

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

TEST(ModelFormat, DeeplyNestedModelJsonIsRefused) {
  const auto dir = testing::TempDir("model-deep");
  std::ofstream(dir / "model.json") << R"({"format": "tucker-seg-model", "provenance": )" << std::string(1000000, '[') << std::string(1000000, ']') << "}";
  auto r = LoadModelInfo(dir.string());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("nested deeper than 64 levels"));
}

}  // namespace
}  // namespace tucker_seg
