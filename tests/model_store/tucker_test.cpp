#include "model_store/compression/tucker.h"

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/utils.h>
#include <nlohmann/json.hpp>

#include "model_store/compression/compress.h"
#include "model_store/network/libtorch_executor.h"
#include "model_store/import/nnunet_import.h"
#include "model_store/format/raw_tensor.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

using ::testing::HasSubstr;

Model ImportIso4() {
  NnUNetImportOptions opt;
  opt.results_dir = testing::ResultsDir("iso4").string();
  opt.name = "iso4";
  auto m = ImportNnUNet(opt);
  EXPECT_TRUE(m.ok()) << m.status().message();
  return m.value();
}

CompressionOptions Df(double df, bool all) {
  CompressionOptions o;
  o.df = df;
  o.factorize_all = all;
  return o;
}

TEST(Tucker, RankRulesFollowThePaper) {
  EXPECT_EQ(RankByFactor(320, 0.3, 8), 96);
  EXPECT_EQ(RankByFactor(32, 0.1, 8), 8);
  EXPECT_EQ(RankByFactor(1, 0.3, 8), 1);
  EXPECT_EQ(RankByFactor(118, 0.05, 8), 8);
  const auto spectrum = torch::tensor({6.0, 3.0, 1.0}, torch::kFloat64);
  EXPECT_EQ(RankByEnergy(spectrum, 0.6), 1);
  EXPECT_EQ(RankByEnergy(spectrum, 0.9), 2);
  EXPECT_EQ(RankByEnergy(spectrum, 1.0), 3);
}

TEST(Tucker, HooiNeverWorseThanHosvdAndErrorFallsAsRankRises) {
  const Model m = ImportIso4();
  const torch::Tensor w = m.weights.at("encoder.stages.3.0.convs.1.conv.weight");  // 48 x 48 x 3x3x3
  double previous = 2.0;
  for (int64_t r : {4, 8, 16, 24, 32, 40, 48}) {
    const Tucker2 t = DecomposeTucker2(w, r, r);
    EXPECT_LE(t.relative_error, t.hosvd_relative_error + 1e-12) << "rank " << r;
    EXPECT_LT(t.relative_error, previous) << "rank " << r;
    previous = t.relative_error;
    const double truth = (w.to(torch::kFloat64) - ReconstructTucker2(t.core, t.u0, t.u1)).norm().item<double>() /
                         w.to(torch::kFloat64).norm().item<double>();
    EXPECT_NEAR(t.relative_error, truth, 1e-12);
  }
  EXPECT_LT(previous, 1e-10);  // full rank is exact
}

// A factorized layer computes the convolution with the reconstructed kernel, for strided convs
// and for transposed convs (whose weight is laid out (C_in, C_out, ...)).
TEST(Tucker, DecomposedLayerEqualsConvolutionWithReconstructedKernel) {
  torch::manual_seed(3);
  for (bool transposed : {false, true}) {
    ConvLayer c;
    c.name = "layer";
    c.transposed = transposed;
    c.in_channels = 12;
    c.out_channels = 10;
    c.kernel = transposed ? Int3{2, 2, 2} : Int3{3, 3, 3};
    c.stride = {2, 2, 2};
    c.padding = transposed ? Int3{0, 0, 0} : Int3{1, 1, 1};
    c.weight = transposed ? torch::randn({12, 10, 2, 2, 2}) : torch::randn({10, 12, 3, 3, 3});
    c.bias = torch::randn({10});
    const Tucker2 t = DecomposeTucker2(c.weight, 5, 7);
    const auto w_hat = ReconstructTucker2(t.core, t.u0, t.u1).to(torch::kFloat32);
    const auto x = torch::randn({2, 12, 6, 8, 4});
    const auto expected = transposed ? torch::conv_transpose3d(x, w_hat, c.bias, 2) : torch::conv3d(x, w_hat, c.bias, 2, 1);
    c.SetTucker(t.core, t.u0, t.u1);
    ASSERT_TRUE(c.factorized());
    const auto y = ConvForward(c, x, LibTorchOps{});
    EXPECT_LE((y - expected).abs().max().item<double>(), 1e-4) << (transposed ? "transposed" : "conv");
  }
}

TEST(Tucker, FullRankVariantReproducesTheOriginalLogits) {
  torch::set_num_threads(2);
  const Model m = ImportIso4();
  auto v = CompressModel(m, Df(1.0, true));
  ASSERT_TRUE(v.ok()) << v.status().message();
  const auto store = testing::TempDir("tucker-full-rank");
  ASSERT_TRUE(SaveModel(m, (store / "iso4").string()).ok());
  auto dir = SaveVariant(v.value(), (store / "iso4").string());
  ASSERT_TRUE(dir.ok());
  auto loaded = LoadModel(dir.value());  // a variant loads like any model
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  auto net = PlainConvUNet::Create(loaded.value().info.network, loaded.value().weights);
  ASSERT_TRUE(net.ok()) << net.status().message();
  const auto c = testing::ConformanceCase("iso4");
  auto x = ReadRawFloat32((c / "input.f32").string(), {1, 1, 32, 48, 40});
  auto ref = ReadRawFloat32((c / "logits.f32").string(), {1, 6, 32, 48, 40});
  ASSERT_TRUE(x.ok() && ref.ok());
  EXPECT_LE((MakeExecutor(net.value())->Forward(x.value()) - ref.value()).abs().max().item<double>(), 1e-4);
}

TEST(Tucker, ManifestErrorsAreTheTrueReconstructionErrors) {
  const Model m = ImportIso4();
  auto v = CompressModel(m, Df(0.3, true));
  ASSERT_TRUE(v.ok()) << v.status().message();
  const auto& w = v.value().model.weights;
  for (const auto& layer : v.value().manifest.layers) {
    const std::string& name = layer.name;
    ASSERT_TRUE(layer.factorized) << name;
    EXPECT_LE(layer.relative_error, layer.hosvd_relative_error + 1e-12) << name;
    // Rebuild the kernel from what is on disk: out x core x in.
    const bool transposed = layer.op == "ConvTranspose3d";
    const auto u_in = w.at(name + ".tucker_in.weight").flatten(1).t().to(torch::kFloat64);  // (C_in, r_in)
    const auto u_out = w.at(name + ".tucker_out.weight").flatten(1).to(torch::kFloat64);    // (C_out, r_out)
    const auto core = w.at(name + ".tucker_core.weight").to(torch::kFloat64);
    const auto w_hat = transposed ? ReconstructTucker2(core, u_in, u_out) : ReconstructTucker2(core, u_out, u_in);
    const auto original = m.weights.at(name + ".weight").to(torch::kFloat64);
    const double truth = (original - w_hat).norm().item<double>() / original.norm().item<double>();
    EXPECT_NEAR(layer.relative_error, truth, 1e-5) << name;  // factors are stored as float32
  }
}

TEST(Tucker, DefaultSkipsLayersThatWouldCostMoreAndSaysWhy) {
  const Model m = ImportIso4();
  auto v = CompressModel(m, Df(0.5, false));
  ASSERT_TRUE(v.ok()) << v.status().message();
  const auto& first = v.value().manifest.layers[0];
  EXPECT_EQ(first.name, "encoder.stages.0.0.convs.0.conv");
  EXPECT_FALSE(first.factorized);
  EXPECT_THAT(first.skipped_reason, HasSubstr("factorized MACs would be"));
  EXPECT_LT(v.value().manifest.macs, v.value().manifest.original_macs);
  // The weights of a skipped layer are kept as they were.
  EXPECT_TRUE(torch::equal(v.value().model.weights.at("encoder.stages.0.0.convs.0.conv.weight"),
                           m.weights.at("encoder.stages.0.0.convs.0.conv.weight")));
}

TEST(Tucker, TotalSegmentatorShapedDf03LeavesThePapersParameterCount) {
  auto arch = ReadArchitectureFile((testing::SourceDir() / "model_store/architectures/totalseg_3mm_shaped.json").string());
  ASSERT_TRUE(arch.ok()) << arch.status().message();
  Model m;
  m.info.name = "ts3mm";
  m.info.network = arch.value().network;
  m.info.patch_size = arch.value().patch_size;
  m.weights = PlainConvUNet::RandomWeights(m.info.network, 0);
  CompressionOptions o = Df(0.3, true);
  o.tucker.max_iterations = 0;  // parameter counts depend on ranks only; HOSVD keeps the test fast
  auto v = CompressModel(m, o);
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(v.value().manifest.original_parameters, 16603736);
  EXPECT_EQ(v.value().manifest.parameters, 2025547);
}

TEST(Tucker, BadOptionsAreRejectedByName) {
  const Model m = ImportIso4();
  CompressionOptions none;
  EXPECT_THAT(CompressModel(m, none).status().message(), HasSubstr("exactly one of df and energy"));
  EXPECT_THAT(CompressModel(m, Df(1.5, false)).status().message(), HasSubstr("df must be in (0, 1]"));
}

}  // namespace
}  // namespace tucker_seg
