#include "model_store/network/network.h"

#include "model_store/network/executor.h"
#include "model_store/network/libtorch_executor.h"

#include "model_store/format/model.h"

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/utils.h>
#include <nlohmann/json.hpp>

#include "test_paths.h"

namespace tucker_seg {
namespace {

using ::testing::HasSubstr;

UNetConfig ArchitectureFile(const std::string& name) {
  auto arch = ReadArchitectureFile((testing::SourceDir() / "model_store/architectures" / name).string());
  EXPECT_TRUE(arch.ok()) << arch.status().message();
  return arch.value().network;
}

UNetConfig Small() {
  UNetConfig c;
  c.num_classes = 3;
  c.features_per_stage = {4, 8, 8};
  c.kernel_sizes = {{1, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  c.strides = {{1, 1, 1}, {1, 2, 2}, {2, 2, 2}};
  c.n_conv_per_stage = {1, 2, 2};
  c.n_conv_per_stage_decoder = {1, 2};
  return c;
}

TEST(Network, TotalSegmentatorShapedParameterCountsMatchTheReference) {
  // The parameter counts dynamic-network-architectures' PlainConvUNet (nnU-Net's own network class)
  // reports for these two architectures, recorded when the conformance checkpoints were made.
  auto ts3 = ArchitectureFile("totalseg_3mm_shaped.json");
  auto net3 = PlainConvUNet::Create(ts3, PlainConvUNet::RandomWeights(ts3, 1));
  ASSERT_TRUE(net3.ok()) << net3.status().message();
  EXPECT_EQ(net3.value().NumParameters(), 16603736);
  auto ts15 = ArchitectureFile("totalseg_1p5mm_part_shaped.json");
  auto net15 = PlainConvUNet::Create(ts15, PlainConvUNet::RandomWeights(ts15, 1));
  ASSERT_TRUE(net15.ok()) << net15.status().message();
  EXPECT_EQ(net15.value().NumParameters(), 31214109);
}

TEST(Network, MissingExtraAndMisShapedTensorsAreNamed) {
  const UNetConfig c = Small();
  WeightMap w = PlainConvUNet::RandomWeights(c, 3);
  {
    WeightMap missing = w;
    missing.erase("decoder.transpconvs.1.bias");
    auto r = PlainConvUNet::Create(c, missing);
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("missing tensor 'decoder.transpconvs.1.bias'"));
  }
  {
    WeightMap extra = w;
    extra["decoder.extra_head.weight"] = torch::zeros({1});
    auto r = PlainConvUNet::Create(c, extra);
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("unexpected tensor 'decoder.extra_head.weight'"));
  }
  {
    WeightMap shaped = w;
    shaped["encoder.stages.1.0.convs.1.norm.weight"] = torch::ones({9});
    auto r = PlainConvUNet::Create(c, shaped);
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("tensor 'encoder.stages.1.0.convs.1.norm.weight' has shape [9], expected [8]"));
  }
}

// The fast paths (1x1x1 as matmul, transposed conv as matmul + shuffle) equal LibTorch's own ops.
TEST(Network, FastConvolutionPathsEqualLibTorchReference) {
  torch::manual_seed(0);
  ConvLayer up;
  up.transposed = true;
  up.in_channels = 6;
  up.out_channels = 4;
  up.kernel = up.stride = {1, 2, 2};
  up.weight = torch::randn({6, 4, 1, 2, 2});
  up.bias = torch::randn({4});
  const auto x = torch::randn({2, 6, 3, 5, 4});
  const auto ref = torch::conv_transpose3d(x, up.weight, up.bias, {1, 2, 2});
  EXPECT_LE((ConvForward(up, x, LibTorchOps{}) - ref).abs().max().item<double>(), 1e-5);

  ConvLayer pw;
  pw.in_channels = 6;
  pw.out_channels = 5;
  pw.weight = torch::randn({5, 6, 1, 1, 1});
  pw.bias = torch::randn({5});
  EXPECT_LE((ConvForward(pw, x, LibTorchOps{}) - torch::conv3d(x, pw.weight, pw.bias)).abs().max().item<double>(), 1e-5);
}

// The default executor (the CPU engine where built, with its fused InstanceNorm + LeakyReLU) and
// the GEMM rewrites give LibTorch's result, also for activations with a large mean (where a naive
// E[x^2] - E[x]^2 loses the variance).
TEST(Network, FastPathsMatchLibTorchOpsOnAWholeNetwork) {
  const UNetConfig c = Small();
  WeightMap w = PlainConvUNet::RandomWeights(c, 5);
  for (auto& [k, t] : w)
    if (k.size() > 9 && k.compare(k.size() - 9, 9, "conv.bias") == 0) t += 300.0;  // large means
  auto net = PlainConvUNet::Create(c, w);
  ASSERT_TRUE(net.ok());
  const auto x = 100.0 * torch::randn({2, 1, 8, 16, 16}) + 1000.0;
  const auto reference = MakeExecutor(net.value(), {Backend::kLibTorchReference})->Forward(x);
  for (const Backend backend : {Backend::kAuto, Backend::kLibTorch}) {
    const auto executor = MakeExecutor(net.value(), {backend});
    SCOPED_TRACE(executor->name());
    EXPECT_LE((executor->Forward(x) - reference).abs().max().item<double>(), 1e-3 * reference.abs().max().item<double>());
  }
}

TEST(Network, InputThatDoesNotFitIsRejectedWithTheLimit) {
  const UNetConfig c = Small();
  auto net = PlainConvUNet::Create(c, PlainConvUNet::RandomWeights(c, 3));
  ASSERT_TRUE(net.ok());
  auto st = net.value().CheckInput(torch::zeros({1, 1, 5, 8, 8}));
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("not divisible by the network's total stride 2x4x4"));
  st = net.value().CheckInput(torch::zeros({1, 2, 4, 8, 8}));
  EXPECT_THAT(st.message(), HasSubstr("input has 2 channels, the network takes 1"));
  EXPECT_TRUE(net.value().CheckInput(torch::zeros({1, 1, 4, 8, 8})).ok());
  EXPECT_EQ(MakeExecutor(net.value())->Run(torch::zeros({1, 1, 4, 8, 8})).value().sizes(), (std::vector<int64_t>{1, 3, 4, 8, 8}));
}

TEST(Network, CostCountsMacsOfAppliedLayersOnly) {
  const UNetConfig c = Small();
  auto net = PlainConvUNet::Create(c, PlainConvUNet::RandomWeights(c, 3));
  ASSERT_TRUE(net.ok());
  const auto layers = net.value().Cost({4, 8, 8});
  // First conv: 4x8x8 outputs x 4 out x 1 in x (1x3x3).
  EXPECT_EQ(layers.front().name, "encoder.stages.0.0.convs.0.conv");
  EXPECT_EQ(layers.front().macs, 4 * 8 * 8 * 4 * 1 * 9);
  int heads = 0, applied = 0;
  for (const auto& l : layers) {
    if (l.name.find("seg_layers") == std::string::npos) continue;
    ++heads;
    if (l.applied) {
      ++applied;
      EXPECT_EQ(l.macs, 4 * 8 * 8 * 3 * 4);
    } else {
      EXPECT_EQ(l.macs, 0);
    }
  }
  EXPECT_EQ(heads, 2);
  EXPECT_EQ(applied, 1);
}

}  // namespace
}  // namespace tucker_seg
