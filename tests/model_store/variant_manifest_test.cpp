// The variant manifest: the bundled manifests read into the typed form and write back unchanged;
// quality is the serving evaluation's mean agreement; broken manifests name what is wrong.
#include "model_store/format/variant_manifest.h"

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_paths.h"

namespace tucker_seg {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

fs::path BundledVariant(const std::string& name) { return testing::SourceDir() / "models/tucker-abdomen-3mm/variants" / name; }

nlohmann::json ReadJson(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

TEST(VariantManifest, BundledManifestsRoundTripThroughTheTypedForm) {
  for (const char* name : {"df0.5", "df0.3", "df0.1"}) {
    const auto original = ReadJson(BundledVariant(name) / "manifest.json");
    auto m = ReadVariantManifest(BundledVariant(name).string());
    ASSERT_TRUE(m.ok()) << m.status().message();
    EXPECT_EQ(m.value().variant, name);
    EXPECT_EQ(m.value().layers.size(), original["layers"].size());
    EXPECT_TRUE(m.value().adaptations.count("distilled"));
    EXPECT_TRUE(m.value().evaluations.count("evaluation-compressed"));
    EXPECT_EQ(ToJson(m.value()), original) << name;
  }
}

TEST(VariantManifest, QualityIsTheServingEvaluationsMeanAgreement) {
  const auto j = ReadJson(BundledVariant("df0.5") / "manifest.json");
  double sum = 0;
  for (const auto& c : j["evaluation"]["cases"]) sum += c["agreement_dice"].get<double>();
  auto m = VariantManifestFromJson(j);
  ASSERT_TRUE(m.ok()) << m.status().message();
  ASSERT_TRUE(m.value().Quality().has_value());
  EXPECT_DOUBLE_EQ(*m.value().Quality(), sum / static_cast<double>(j["evaluation"]["cases"].size()));
  m.value().evaluations.erase(kServingEvaluation);
  EXPECT_FALSE(m.value().Quality().has_value());  // the older, tagged evaluations do not count
}

TEST(VariantManifest, Int8CalibrationRoundTripsAndBadRangesAreRefused) {
  auto j = ReadJson(BundledVariant("df0.3") / "manifest.json");
  EXPECT_EQ(VariantManifestFromJson(j).value().precision, "float32");  // no precision field: float32
  j["precision"] = "int8";
  j["int8_calibration"] = {{"statistic", "percentile"}, {"percentile", 99.99}, {"images", {"a.nii.gz"}}, {"tiles", 3},
                           {"input_bounds", {{"encoder.stages.0.0.convs.1.conv", {1.5, 2.0}}}}};
  auto m = VariantManifestFromJson(j);
  ASSERT_TRUE(m.ok()) << m.status().message();
  ASSERT_TRUE(m.value().int8.has_value());
  EXPECT_EQ(m.value().int8->input_bounds.at("encoder.stages.0.0.convs.1.conv"), (std::vector<float>{1.5f, 2.0f}));
  EXPECT_EQ(ToJson(m.value()), j);
  j["int8_calibration"]["input_bounds"]["encoder.stages.0.0.convs.1.conv"][1] = -1.0;
  EXPECT_THAT(VariantManifestFromJson(j).status().message(), HasSubstr("int8_calibration.input_bounds.encoder.stages.0.0.convs.1.conv"));
  j["precision"] = "int4";
  EXPECT_THAT(VariantManifestFromJson(j).status().message(), HasSubstr("precision must be float32 or int8"));
  j["precision"] = "int8";
  j.erase("int8_calibration");
  EXPECT_THAT(VariantManifestFromJson(j).status().message(), HasSubstr("int8_calibration"));
}

TEST(VariantManifest, BrokenManifestsNameTheField) {
  auto j = ReadJson(BundledVariant("df0.3") / "manifest.json");
  j.erase("mac_ratio");
  EXPECT_THAT(VariantManifestFromJson(j).status().message(), HasSubstr("mac_ratio"));
  j = ReadJson(BundledVariant("df0.3") / "manifest.json");
  j["patch_size"] = {1, 2};
  EXPECT_THAT(VariantManifestFromJson(j).status().message(), HasSubstr("patch_size"));
  j = ReadJson(BundledVariant("df0.3") / "manifest.json");
  j["evaluation"]["cases"] = "many";
  EXPECT_THAT(VariantManifestFromJson(j).status().message(), HasSubstr("evaluation"));
  const auto dir = testing::TempDir("manifest-missing");
  EXPECT_EQ(ReadVariantManifest(dir.string()).status().code(), StatusCode::kNotFound);
  std::ofstream(dir / "manifest.json") << "{ not json";
  EXPECT_THAT(ReadVariantManifest(dir.string()).status().message(), HasSubstr("not valid JSON"));
}

}  // namespace
}  // namespace tucker_seg
