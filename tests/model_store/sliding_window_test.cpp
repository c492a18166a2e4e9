// nnU-Net's sliding window: steps, Gaussian importance, golden logits.
#include "model_store/inference/sliding_window.h"

#include <fstream>
#include <regex>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "model_store/format/raw_tensor.h"
#include "model_store/import/nnunet_import.h"
#include "model_store/inference/predictor.h"
#include "model_store/network/network.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

namespace fs = std::filesystem;

fs::path Golden() { return testing::ConformanceCase("iso4") / "sliding_window"; }

nlohmann::json ReadJson(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

TEST(SlidingWindow, StepExamplesMatchNnUNetExactly) {
  const auto examples = ReadJson(Golden() / "steps_examples.json");
  const std::regex key(R"(\(\((\d+), (\d+), (\d+)\), \((\d+), (\d+), (\d+)\)\))");
  int checked = 0;
  for (const auto& [step_name, cases] : examples.items()) {
    const double step = std::stod(step_name.substr(step_name.rfind('_') + 1));
    for (const auto& [k, expected] : cases.items()) {
      std::smatch m;
      ASSERT_TRUE(std::regex_match(k, m, key)) << k;
      const Int3 size{std::stoll(m[1]), std::stoll(m[2]), std::stoll(m[3])};
      const Int3 tile{std::stoll(m[4]), std::stoll(m[5]), std::stoll(m[6])};
      const auto steps = ComputeSteps(size, tile, step);
      for (int a = 0; a < 3; ++a) EXPECT_EQ(steps[a], expected[a].get<std::vector<int64_t>>()) << k << " axis " << a;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 5);
}

TEST(SlidingWindow, GaussianMatchesNnUNet) {
  const auto meta = ReadJson(Golden() / "sliding_window.json");
  const auto shape = meta["gaussian"]["shape"].get<std::vector<int64_t>>();
  auto ref = ReadRawFloat32((Golden() / "gaussian.f32").string(), shape);
  ASSERT_TRUE(ref.ok());
  const auto g = GaussianImportanceMap({shape[0], shape[1], shape[2]});
  EXPECT_LE((g - ref.value()).abs().max().item<double>(), 1e-6);
}

TEST(SlidingWindow, GoldenLogitsAndArgmaxMatchNnUNet) {
  torch::set_num_threads(2);
  const auto meta = ReadJson(Golden() / "sliding_window.json");
  NnUNetImportOptions opt;
  opt.results_dir = testing::ResultsDir("iso4").string();
  auto model = ImportNnUNet(opt);
  ASSERT_TRUE(model.ok()) << model.status().message();
  auto net = PlainConvUNet::Create(model.value().info.network, model.value().weights);
  ASSERT_TRUE(net.ok());
  const auto in_shape = meta["preprocessed_input_shape"].get<std::vector<int64_t>>();
  auto image = ReadRawFloat32((Golden() / "preprocessed_input.f32").string(), in_shape);
  auto ref = ReadRawFloat32((Golden() / "logits.f32").string(), meta["logits_shape"].get<std::vector<int64_t>>());
  ASSERT_TRUE(image.ok() && ref.ok());

  const Int3 tile = model.value().info.patch_size;
  const auto steps = ComputeSteps({32, in_shape[2], in_shape[3]}, tile, 0.5);  // padded 30 -> 32
  for (int a = 0; a < 3; ++a) EXPECT_EQ(steps[a], meta["steps"][a].get<std::vector<int64_t>>());

  const auto executor = MakeExecutor(net.value());
  UNetPatchNetwork patch_net(*executor);
  SlidingWindowOptions o;
  o.step = 0.5;
  o.batch = 2;
  auto logits = SlidingWindowLogits(image.value(), tile, patch_net, o);
  ASSERT_TRUE(logits.ok()) << logits.status().message();
  EXPECT_LE((logits.value() - ref.value()).abs().max().item<double>(), 1e-3);

  std::ifstream in(Golden() / "argmax.u8", std::ios::binary);
  std::vector<uint8_t> expected((std::istreambuf_iterator<char>(in)), {});
  const auto argmax = logits.value().argmax(0).to(torch::kUInt8).contiguous();
  ASSERT_EQ(static_cast<size_t>(argmax.numel()), expected.size());
  int64_t same = 0;
  for (int64_t i = 0; i < argmax.numel(); ++i) same += argmax.data_ptr<uint8_t>()[i] == expected[static_cast<size_t>(i)];
  EXPECT_GE(static_cast<double>(same) / static_cast<double>(argmax.numel()), 0.999);
}

}  // namespace
}  // namespace tucker_seg
