// Imported nnU-Net v2 models reproduce the reference implementation's logits.
#include <fstream>

#include <gtest/gtest.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "model_store/format/model.h"
#include "model_store/network/executor.h"
#include "model_store/import/nnunet_import.h"
#include "model_store/format/raw_tensor.h"
#include "model_store/network/network.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

using testing::ConformanceCase;
using testing::ResultsDir;

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  nlohmann::json Golden() const {
    std::ifstream in(ConformanceCase(GetParam()) / "golden.json");
    return nlohmann::json::parse(in);
  }
};

TEST_P(Conformance, ImportedModelMatchesReferenceLogits) {
  torch::set_num_threads(2);
  const auto golden = Golden();
  NnUNetImportOptions opt;
  opt.results_dir = ResultsDir(GetParam()).string();
  opt.name = GetParam();
  auto model = ImportNnUNet(opt);
  ASSERT_TRUE(model.ok()) << model.status().message();

  // Round trip through the project's own format, as the server would load it.
  const auto dir = testing::TempDir("conformance-" + GetParam());
  ASSERT_TRUE(SaveModel(model.value(), dir.string()).ok());
  auto loaded = LoadModel(dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();

  auto net = PlainConvUNet::Create(loaded.value().info.network, loaded.value().weights);
  ASSERT_TRUE(net.ok()) << net.status().message();
  EXPECT_EQ(net.value().NumParameters(), golden["num_parameters"].get<int64_t>());

  auto x = ReadRawFloat32((ConformanceCase(GetParam()) / "input.f32").string(), golden["input_shape"].get<std::vector<int64_t>>());
  auto ref = ReadRawFloat32((ConformanceCase(GetParam()) / "logits.f32").string(), golden["logits_shape"].get<std::vector<int64_t>>());
  ASSERT_TRUE(x.ok() && ref.ok());
  ASSERT_TRUE(net.value().CheckInput(x.value()).ok());
  for (const Backend backend : {Backend::kAuto, Backend::kLibTorchReference}) {
    const auto executor = MakeExecutor(net.value(), {backend});
    SCOPED_TRACE(executor->name());
    const torch::Tensor y = executor->Forward(x.value());
    ASSERT_EQ(y.sizes(), ref.value().sizes());
    const double max_abs = (y - ref.value()).abs().max().item<double>();
    EXPECT_LE(max_abs, 1e-4);
    EXPECT_TRUE(torch::equal(y.argmax(1), ref.value().argmax(1)));
  }
}

TEST_P(Conformance, EveryStateDictKeyIsUsedOrAnAlias) {
  const auto golden = Golden();
  NnUNetImportOptions opt;
  opt.results_dir = ResultsDir(GetParam()).string();
  auto model = ImportNnUNet(opt);
  ASSERT_TRUE(model.ok()) << model.status().message();
  const auto& p = model.value().info.provenance;
  EXPECT_EQ(p["state_dict_tensors"].get<size_t>(), golden["state_dict"].size());
  EXPECT_EQ(model.value().weights.size() + p["aliases"].get<size_t>(), golden["state_dict"].size());
  for (const auto& entry : golden["state_dict"]) {
    const std::string key = entry["key"];
    const bool alias = key.find("all_modules") != std::string::npos || key.rfind("decoder.encoder.", 0) == 0;
    EXPECT_EQ(model.value().weights.count(key), alias ? 0u : 1u) << key;
  }
}

TEST_P(Conformance, ImportKeepsPlansAndLabels) {
  NnUNetImportOptions opt;
  opt.results_dir = ResultsDir(GetParam()).string();
  auto model = ImportNnUNet(opt);
  ASSERT_TRUE(model.ok()) << model.status().message();
  const auto golden = Golden();
  const ModelInfo& info = model.value().info;
  EXPECT_EQ(std::vector<int64_t>(info.patch_size.begin(), info.patch_size.end()), golden["config"]["patch_size"].get<std::vector<int64_t>>());
  EXPECT_EQ(std::vector<double>(info.spacing.begin(), info.spacing.end()), golden["config"]["spacing"].get<std::vector<double>>());
  EXPECT_EQ(static_cast<int64_t>(info.labels.size()), golden["config"]["num_classes"].get<int64_t>());
  EXPECT_EQ(info.labels.front().second, "background");
  ASSERT_EQ(info.channels.size(), 1u);
  EXPECT_EQ(info.channels[0].scheme, "CTNormalization");
  EXPECT_DOUBLE_EQ(info.channels[0].intensity.percentile_00_5, -958.0);
  EXPECT_DOUBLE_EQ(info.channels[0].intensity.percentile_99_5, 1320.0);
}

INSTANTIATE_TEST_SUITE_P(NnUNetV2, Conformance, ::testing::Values("iso4", "aniso5"));

}  // namespace
}  // namespace tucker_seg
