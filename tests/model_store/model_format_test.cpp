#include <fstream>
#include <functional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model_store/format/bounded_json.h"
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

TEST(ModelFormat, ModelJsonFieldsAreValidated) {
  std::ifstream in(testing::SourceDir() / "models/tucker-abdomen-3mm/model.json");
  const auto valid = nlohmann::json::parse(in);
  ASSERT_TRUE(ModelInfoFromJson(valid).ok());
  const std::pair<std::function<void(nlohmann::json&)>, std::string> cases[] = {
      {[](nlohmann::json& j) { j["transpose_forward"] = {0, 1, 7}; }, "transpose_forward must be a permutation"},  // read out of bounds before
      {[](nlohmann::json& j) { j["transpose_forward"] = {0, 0, 1}; }, "transpose_forward must be a permutation"},
      {[](nlohmann::json& j) { j["transpose_forward"] = {1, 2, 0}; j["transpose_backward"] = {1, 2, 0}; }, "transpose_backward must undo"},
      {[](nlohmann::json& j) { j["spacing"] = {0, 1, 1}; }, "spacing must be finite"},
      {[](nlohmann::json& j) { j["spacing"] = {1, -3, 1}; }, "spacing must be finite"},
  };
  for (const auto& [edit, needle] : cases) {
    auto j = valid;
    edit(j);
    const auto r = ModelInfoFromJson(j);
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_THAT(r.status().message(), HasSubstr(needle));
  }
}

TEST(ModelFormat, HugeFloatsWhereIntegersGoAreRefused) {
  // fuzz/model_json found it: a manifest layer's "kernel": [2e83, ...] read with get<int64_t>().
  auto j = ParseBoundedJson(R"({"layers": [{"kernel": [2e83, 3, 3]}]})", "manifest.json");
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr("manifest.json: a floating-point number of magnitude 2^31 or more"));
  EXPECT_TRUE(ParseBoundedJson(R"({"spacing": [1.5, 0.8, 3e2], "macs": 367778037760})", "model.json").ok());
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
