// The oneDNN engine computes what LibTorch's ops compute: the golden nnU-Net models and every
// Tucker variant of them, dense and factorized layers, batches, several input channels, bf16.
#include <gtest/gtest.h>
#include <ATen/Parallel.h>
#include <torch/utils.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "model_store/compression/compress.h"
#include "model_store/cpu_engine/onednn_graph.h"
#include "model_store/format/raw_tensor.h"
#include "model_store/import/nnunet_import.h"
#include "model_store/network/executor.h"
#include "model_store/network/int8_calibration.h"
#include "model_store/network/network.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

using testing::ConformanceCase;
using testing::ResultsDir;

// max |a - b| / max |b|: the engine's error relative to the logits' scale.
double RelativeError(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-12, b.abs().max().item<double>());
}

torch::Tensor ReferenceLogits(const PlainConvUNet& net, const torch::Tensor& x) {
  return MakeExecutor(net, {Backend::kLibTorchReference})->Run(x).value();
}

// The CPU engine for `net` (what MakeExecutor picks for a float32 network on the CPU).
std::shared_ptr<const NetworkExecutor> Engine(const PlainConvUNet& net, bool bf16 = false) {
  ExecutorOptions o;
  o.cpu_bf16 = bf16;
  auto executor = MakeExecutor(net, o);
  EXPECT_EQ(executor->name(), bf16 ? "CPU engine (bfloat16)" : "CPU engine (float32)");
  return executor;
}

struct Golden {
  Model model;
  torch::Tensor input, logits;
};

Golden LoadGolden(const std::string& name) {
  std::ifstream in(ConformanceCase(name) / "golden.json");
  const auto golden = nlohmann::json::parse(in);
  NnUNetImportOptions opt;
  opt.results_dir = ResultsDir(name).string();
  opt.name = name;
  Golden g;
  g.model = ImportNnUNet(opt).value();
  g.input = ReadRawFloat32((ConformanceCase(name) / "input.f32").string(), golden["input_shape"].get<std::vector<int64_t>>()).value();
  g.logits = ReadRawFloat32((ConformanceCase(name) / "logits.f32").string(), golden["logits_shape"].get<std::vector<int64_t>>()).value();
  return g;
}

Int3 PatchOf(const torch::Tensor& x) { return {x.size(2), x.size(3), x.size(4)}; }

// A 3x3x3 convolution with padding 1 of LibTorch's (out, in, 3, 3, 3) weights; int8 where input_scale > 0.
cpu_engine::ConvSpec Conv3x3x3(const torch::Tensor& w, const torch::Tensor& b, float input_scale) {
  cpu_engine::ConvSpec s;
  s.out_channels = w.size(0);
  s.in_channels = w.size(1);
  s.kernel = {3, 3, 3};
  s.padding = {1, 1, 1};
  s.weight = w.data_ptr<float>();
  s.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  s.input_scale = input_scale;
  return s;
}

class CpuEngine : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { torch::set_num_threads(2); }
};

TEST_P(CpuEngine, GoldenModelMatchesNnUNetsLogitsAndLibTorch) {
  const Golden g = LoadGolden(GetParam());
  auto net = PlainConvUNet::Create(g.model.info.network, g.model.weights);
  ASSERT_TRUE(net.ok()) << net.status().message();
  const auto engine = Engine(net.value());
  const Status served = engine->Serves(PatchOf(g.input));
  ASSERT_TRUE(served.ok()) << served.message();
  const torch::Tensor y = engine->Run(g.input).value();
  EXPECT_LE(RelativeError(y, ReferenceLogits(net.value(), g.input)), 1e-4);
  EXPECT_LE(RelativeError(y, g.logits), 1e-4);
  EXPECT_TRUE(torch::equal(y.argmax(1), g.logits.argmax(1)));
  OpProfile profile;  // the engine ran: its steps are in the profile
  engine->Forward(g.input, &profile);
  EXPECT_EQ(profile.entries().count("norm + leaky relu + segmentation head"), 1u);  // the fused head
}

TEST_P(CpuEngine, EveryVariantMatchesLibTorch) {
  const Golden g = LoadGolden(GetParam());
  for (double df : {0.5, 0.3, 0.1}) {
    for (bool all : {false, true}) {
      CompressionOptions o;
      o.df = df;
      o.factorize_all = all;  // every layer factorized, the transposed ones and the head included
      auto variant = CompressModel(g.model, o);
      ASSERT_TRUE(variant.ok()) << variant.status().message();
      auto net = PlainConvUNet::Create(variant.value().model.info.network, variant.value().model.weights);
      ASSERT_TRUE(net.ok()) << net.status().message();
      const auto engine = Engine(net.value());
      const Status served = engine->Serves(PatchOf(g.input));
      ASSERT_TRUE(served.ok()) << o.VariantName() << ": " << served.message();
      const torch::Tensor y = engine->Run(g.input).value();
      EXPECT_LE(RelativeError(y, ReferenceLogits(net.value(), g.input)), 1e-4) << o.VariantName();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(NnUNetV2, CpuEngine, ::testing::Values("iso4", "aniso5"));

UNetConfig SmallConfig(int64_t input_channels) {
  UNetConfig c;
  c.input_channels = input_channels;
  c.num_classes = 5;
  c.features_per_stage = {8, 16, 24};
  c.kernel_sizes = {{1, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  c.strides = {{1, 1, 1}, {1, 2, 2}, {2, 2, 2}};
  c.n_conv_per_stage = {2, 2, 2};
  c.n_conv_per_stage_decoder = {2, 2};
  c.conv_bias = true;
  c.negative_slope = 0.01;
  return c;
}

TEST(CpuEngineBatches, SeveralChannelsAndSamplesMatchLibTorch) {
  torch::set_num_threads(2);
  const UNetConfig config = SmallConfig(3);  // 3 channels: the input is reordered to channels-last
  auto net = PlainConvUNet::Create(config, PlainConvUNet::RandomWeights(config, 7));
  ASSERT_TRUE(net.ok()) << net.status().message();
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({2, 3, 8, 24, 16}) * 50 + 20;  // CT-like offset and scale
  const auto engine = Engine(net.value());
  ASSERT_TRUE(engine->Serves({8, 24, 16}).ok());
  const torch::Tensor y = engine->Run(x).value();
  EXPECT_LE(RelativeError(y, ReferenceLogits(net.value(), x)), 1e-4);
  // Each sample is normalised on its own: the second alone gives the same logits.
  const torch::Tensor second = engine->Run(x.narrow(0, 1, 1)).value();
  EXPECT_LE(RelativeError(second, y.narrow(0, 1, 1)), 1e-6);
}

TEST(CpuEngineBatches, GraphsAreKeptPerShapeAndANewExecutorRunsChangedWeights) {
  torch::set_num_threads(2);
  const UNetConfig config = SmallConfig(1);
  auto net = PlainConvUNet::Create(config, PlainConvUNet::RandomWeights(config, 11)).value();
  const torch::Tensor a = torch::randn({1, 1, 8, 16, 16}), b = torch::randn({1, 1, 16, 16, 32});
  const auto engine = Engine(net);
  const torch::Tensor ya = engine->Run(a).value().clone();  // the engine refills its logits buffer
  EXPECT_LE(RelativeError(engine->Run(b).value(), ReferenceLogits(net, b)), 1e-4);
  EXPECT_TRUE(torch::equal(engine->Run(a).value(), ya));  // the kept graph gives the same result
  for (ConvLayer* c : net.MutableConvs()) c->weight.mul_(2);
  const torch::Tensor changed = ReferenceLogits(net, a);
  EXPECT_GT(RelativeError(changed, ya), 1e-2);
  EXPECT_LE(RelativeError(Engine(net)->Run(a).value(), changed), 1e-4);
}

// The head adds weight * logits straight into a view of a larger volume (the sliding window's
// accumulator) for the dense network and a fully factorized variant; x = 24 makes runs of 16
// voxels wrap to the next row.
TEST(CpuEngineBatches, HeadAddsWeightedLogitsIntoAVolumeView) {
  torch::set_num_threads(2);
  const UNetConfig config = SmallConfig(1);
  Model model;
  model.info.network = config;
  model.weights = PlainConvUNet::RandomWeights(config, 5);
  CompressionOptions o;
  o.df = 0.3;
  o.factorize_all = true;
  o.tucker.max_iterations = 0;
  const Model variant = CompressModel(model, o).value().model;
  torch::manual_seed(9);
  const torch::Tensor x = torch::randn({1, 1, 8, 16, 24}) * 50 + 20;
  const torch::Tensor weight = torch::rand({8, 16, 24}) + 0.5;
  for (const Model* m : std::vector<const Model*>{&model, &variant}) {
    const auto net = PlainConvUNet::Create(m->info.network, m->weights).value();
    const auto engine = Engine(net);
    const torch::Tensor logits = engine->Run(x).value().clone();
    const torch::Tensor volume = torch::randn({config.num_classes, 11, 21, 29});
    const torch::Tensor expected = volume.clone();
    expected.narrow(1, 2, 8).narrow(2, 4, 16).narrow(3, 3, 24).addcmul_(logits[0], weight);
    engine->ForwardWeightedSum(x, weight, volume.narrow(1, 2, 8).narrow(2, 4, 16).narrow(3, 3, 24));
    EXPECT_LE(RelativeError(volume, expected), 1e-6);
    EXPECT_TRUE(torch::equal(volume.narrow(1, 0, 2), expected.narrow(1, 0, 2)));  // nothing outside the view is touched
    EXPECT_TRUE(torch::equal(volume.narrow(3, 27, 2), expected.narrow(3, 27, 2)));
  }
}

TEST(CpuEngineBatches, BFloat16AgreesWithFloat32) {
  if (!cpu_engine::CpuHasBFloat16()) GTEST_SKIP() << "this CPU has no AVX-512 BF16";
  torch::set_num_threads(2);
  const Golden g = LoadGolden("iso4");
  auto net = PlainConvUNet::Create(g.model.info.network, g.model.weights).value();
  const auto half = Engine(net, true);
  ASSERT_TRUE(half->Serves(PatchOf(g.input)).ok());
  const torch::Tensor y = half->Run(g.input).value();
  const torch::Tensor ref = Engine(net)->Run(g.input).value();
  // bf16 keeps 8 bits of mantissa: logits within a few percent, nearly every voxel's class kept.
  EXPECT_LE(RelativeError(y, ref), 0.05);
  EXPECT_GE(y.argmax(1).eq(ref.argmax(1)).to(torch::kFloat32).mean().item<double>(), 0.98);
}

TEST(CpuEngineGraph, BadGraphsAreRefusedNamingTheProblem) {
  cpu_engine::Graph g;
  const auto x = g.Input(4, {8, 8, 8});
  std::vector<float> w(4 * 8 * 27);
  cpu_engine::ConvSpec s;
  s.in_channels = 3;  // the input has 4
  s.out_channels = 8;
  s.kernel = {3, 3, 3};
  s.padding = {1, 1, 1};
  s.weight = w.data();
  auto y = g.Conv({x}, {s}, "conv");
  ASSERT_FALSE(y.ok());
  EXPECT_NE(y.status().message().find("4 channels"), std::string::npos) << y.status().message();
  s.in_channels = 4;
  EXPECT_FALSE(g.Conv({x, x}, {s}, "conv").ok());  // one spec per source
  EXPECT_FALSE(g.NormLeakyRelu(x, nullptr, nullptr, 1e-5, 2.0).ok());
  EXPECT_FALSE(g.Finish(x).ok());  // the input is not a result
}

// The fused norm + projections kernel against the same chain written out by oneDNN convolutions
// and the in-place norm: with an expansion and two channels-last projections, and without one
// into an NCDHW output. 5x7x9 voxels leave a partial last tile of 16.
TEST(CpuEngineGraph, NormProjectionsMatchTheWrittenChain) {
  torch::manual_seed(5);
  const Int3 size{5, 7, 9};
  const torch::Tensor x = torch::randn({1, 6, 5, 7, 9}) * 30 + 100;
  const torch::Tensor expand_w = torch::randn({20, 6}), expand_b = torch::randn({20});
  const torch::Tensor gamma = torch::rand({20}) + 0.5, beta = torch::randn({20});
  const torch::Tensor pa = torch::randn({7, 20}), pa_b = torch::randn({7}), pb = torch::randn({3, 20});
  const torch::Tensor sum_a = torch::randn({4, 7}), sum_b = torch::randn({4, 3});
  auto spec = [](const torch::Tensor& w, const torch::Tensor& b) {
    cpu_engine::ConvSpec s;
    s.out_channels = w.size(0);
    s.in_channels = w.size(1);
    s.weight = w.data_ptr<float>();
    s.bias = b.defined() ? b.data_ptr<float>() : nullptr;
    return s;
  };
  auto run = [&](cpu_engine::Graph& g, cpu_engine::Graph::Value out) {
    EXPECT_TRUE(g.Finish(out).ok());
    torch::Tensor y = torch::empty({1, g.output_channels(), 5, 7, 9});
    g.Run(x.data_ptr<float>(), y.data_ptr<float>());
    return y;
  };
  torch::Tensor written, fused;
  {
    cpu_engine::Graph g;
    const auto in = g.Input(6, size);
    const auto y = g.Conv({in}, {spec(expand_w, expand_b)}, "expand").value();
    ASSERT_TRUE(g.NormLeakyRelu(y, gamma.data_ptr<float>(), beta.data_ptr<float>(), 1e-5, 0.01).ok());
    const auto a = g.Conv({y}, {spec(pa, pa_b)}, "a").value();
    const auto b = g.Conv({y}, {spec(pb, {})}, "b").value();
    written = run(g, g.Conv({a, b}, {spec(sum_a, {}), spec(sum_b, {})}, "sum").value());
  }
  {
    cpu_engine::Graph g;
    const auto in = g.Input(6, size);
    const cpu_engine::ConvSpec e = spec(expand_w, expand_b);
    auto ab = g.NormProjections(in, &e, gamma.data_ptr<float>(), beta.data_ptr<float>(), 1e-5, 0.01, {spec(pa, pa_b), spec(pb, {})},
                                false, "fused");
    ASSERT_TRUE(ab.ok()) << ab.status().message();
    fused = run(g, g.Conv(ab.value(), {spec(sum_a, {}), spec(sum_b, {})}, "sum").value());
  }
  EXPECT_LE(RelativeError(fused, written), 1e-5);

  const torch::Tensor head = torch::randn({11, 6}), head_b = torch::randn({11});
  {
    cpu_engine::Graph g;
    const auto in = g.Input(6, size);
    ASSERT_TRUE(g.NormLeakyRelu(in, nullptr, nullptr, 1e-5, 0.1).ok());
    written = run(g, g.Conv({in}, {spec(head, head_b)}, "head").value());
  }
  {
    cpu_engine::Graph g;
    const auto in = g.Input(6, size);
    auto logits = g.NormProjections(in, nullptr, nullptr, nullptr, 1e-5, 0.1, {spec(head, head_b)}, true, "fused head");
    ASSERT_TRUE(logits.ok()) << logits.status().message();
    fused = run(g, logits.value()[0]);
  }
  EXPECT_LE(RelativeError(fused, written), 1e-5);
  // Only 1x1x1 projections of the normalised channels are fused.
  cpu_engine::Graph g;
  const auto in = g.Input(6, size);
  EXPECT_FALSE(g.NormProjections(in, nullptr, nullptr, nullptr, 1e-5, 0.1, {spec(pa, {})}, false, "fused").ok());  // pa reads 20
}

// int8 convolutions (s8 sources and weights, float32 results) against the same graph in float32:
// a convolution over two sources with their own scales summed into one value, a value read by
// two convolutions (quantized once), and a value normalised in place after it was quantized
// (quantized again: the second reader must see the normalised values).
TEST(CpuEngineGraph, Int8ConvolutionsAgreeWithFloat32) {
  torch::manual_seed(11);
  const Int3 size{6, 8, 16};
  const torch::Tensor x = torch::randn({1, 16, 6, 8, 16});
  const torch::Tensor w1 = torch::randn({32, 16, 3, 3, 3}) * 0.1, b1 = torch::randn({32});
  const torch::Tensor w2a = torch::randn({32, 32, 3, 3, 3}) * 0.05, w2b = torch::randn({32, 16, 3, 3, 3}) * 0.05;
  const torch::Tensor w3 = torch::randn({16, 32, 3, 3, 3}) * 0.05, b3 = torch::randn({16});
  const auto conv = Conv3x3x3;
  // Bounds as a calibration would find them: the inputs' largest magnitudes.
  const float x_scale = x.abs().max().item<float>() / 127, y_scale = 4.0f / 127;
  auto run = [&](bool int8, OpProfile* profile) {
    cpu_engine::Graph g;
    const auto in = g.Input(16, size);
    const auto y = g.Conv({in}, {conv(w1, b1, int8 ? x_scale : 0)}, "c1").value();
    EXPECT_TRUE(g.NormLeakyRelu(y, nullptr, nullptr, 1e-5, 0.01).ok());
    const auto z = g.Conv({y, in}, {conv(w2a, {}, int8 ? y_scale : 0), conv(w2b, {}, int8 ? x_scale : 0)}, "c2").value();
    EXPECT_TRUE(g.NormLeakyRelu(z, nullptr, nullptr, 1e-5, 0.01).ok());
    const auto u = g.Conv({z}, {conv(w3, b3, int8 ? y_scale : 0)}, "c3").value();
    EXPECT_TRUE(g.NormLeakyRelu(in, nullptr, nullptr, 1e-5, 0.01).ok());  // `in` changes after its s8 copy was made
    const auto v = g.Conv({in}, {conv(w2b.narrow(0, 0, 16).contiguous(), {}, int8 ? x_scale : 0)}, "c4").value();
    const auto out = g.Conv({u, v}, {conv(torch::eye(16).reshape({16, 16, 1, 1, 1}).repeat({1, 1, 3, 3, 3}) / 27, {}, 0),
                                      conv(torch::eye(16).reshape({16, 16, 1, 1, 1}).repeat({1, 1, 3, 3, 3}) / 27, {}, 0)},
                            "sum");
    EXPECT_TRUE(out.ok());
    EXPECT_TRUE(g.Finish(out.value()).ok());
    torch::Tensor result = torch::empty({1, 16, 6, 8, 16});
    cpu_engine::StepObserver observer = [&](const std::string& op, double seconds, int64_t macs) { profile->Add(op, seconds, macs); };
    g.Run(x.data_ptr<float>(), result.data_ptr<float>(), profile ? &observer : nullptr);
    return result;
  };
  OpProfile profile;
  const torch::Tensor quantized = run(true, &profile), reference = run(false, nullptr);
  // 8 bits per value: within a few percent of the logits' scale, as oneDNN's int8 kernels give.
  EXPECT_LE(RelativeError(quantized, reference), 0.05);
  EXPECT_GE(torch::cosine_similarity(quantized.flatten(), reference.flatten(), 0).item<double>(), 0.999);
  const auto& ops = profile.entries();
  for (const char* op : {"c1 (int8)", "c2 (int8)", "c3 (int8)", "c4 (int8)"}) EXPECT_EQ(ops.count(op), 1u) << op;
  EXPECT_EQ(ops.count("sum"), 1u);  // no scale: float32
  // in (before and after its norm: a stale copy would give c4 the unnormalised values), y, z.
  ASSERT_EQ(ops.count("quantize to int8"), 1u);
  EXPECT_EQ(ops.at("quantize to int8").calls, 4);
}

// A network with its calibrated input ranges runs int8 where calibration saw a layer: logits close
// to float32, nearly every voxel's class kept, the first layer (one channel) left in float32.
TEST(CpuEngineBatches, Int8WithCalibratedRangesAgreesWithFloat32) {
  torch::set_num_threads(2);
  const Golden g = LoadGolden("iso4");
  auto net = PlainConvUNet::Create(g.model.info.network, g.model.weights).value();
  InputRangeRecorder recorder(99.99);
  ASSERT_TRUE(MakeRecordingExecutor(net, &recorder)->Run(g.input).ok());
  EXPECT_EQ(recorder.tiles(), g.input.size(0));
  const ActivationBounds bounds = recorder.bounds();
  EXPECT_EQ(bounds.count(net.encoder()[0][0].conv.name), 0u);  // reads the image's one channel
  EXPECT_EQ(bounds.count(net.encoder()[0][1].conv.name), 1u);
  ExecutorOptions o;
  o.int8 = std::make_shared<const ActivationBounds>(bounds);
  const auto engine = MakeExecutor(net, o);
  EXPECT_EQ(engine->name(), "CPU engine (int8)");
  ASSERT_TRUE(engine->Serves(PatchOf(g.input)).ok());
  OpProfile profile;
  const torch::Tensor y = engine->Forward(g.input, &profile);
  const torch::Tensor ref = Engine(net)->Run(g.input).value();
  int int8_steps = 0;
  for (const auto& [op, entry] : profile.entries()) int8_steps += op.find("(int8)") != std::string::npos ? 1 : 0;
  EXPECT_GE(int8_steps, 1);
  // This golden model's logits are hardly peaked (its training was a few steps): int8 moves the
  // class of 3% of the voxels (the bundled model's int8 original agrees 0.995 with its float32 self).
  EXPECT_LE(RelativeError(y, ref), 0.1);
  EXPECT_GE(y.argmax(1).eq(ref.argmax(1)).to(torch::kFloat32).mean().item<double>(), 0.95);
}

}  // namespace

// Thin 3x3x3 convolutions (ranks that are not multiples of 16) run on the engine's own kernel,
// channels-last or in the row layout between fused norms; both against LibTorch's conv3d.
TEST(CpuEngineGraph, ThinConvolutionsMatchLibTorch) {
  torch::manual_seed(9);
  const Int3 size{5, 6, 32};
  const torch::Tensor x = torch::randn({1, 10, 5, 6, 32});
  const torch::Tensor w1 = torch::randn({13, 10, 3, 3, 3}) * 0.2, b1 = torch::randn({13});
  const torch::Tensor w2 = torch::randn({6, 13, 3, 3, 3}) * 0.2, b2 = torch::randn({6});
  const torch::Tensor proj = torch::randn({13, 13}) * 0.3, head = torch::randn({3, 6});
  const auto conv = [](const torch::Tensor& w, const torch::Tensor& b) { return Conv3x3x3(w, b, 0); };
  auto dense = [](const torch::Tensor& w) {
    cpu_engine::ConvSpec s;
    s.out_channels = w.size(0);
    s.in_channels = w.size(1);
    s.weight = w.data_ptr<float>();
    return s;
  };
  {
    // Channels-last in and out, and a second source accumulated into the same output.
    cpu_engine::Graph g;
    const auto in = g.Input(10, size);
    auto y = g.Conv({in, in}, {conv(w1, b1), conv(w1, {})}, "thin");
    ASSERT_TRUE(y.ok()) << y.status().message();
    ASSERT_TRUE(g.Finish(y.value()).ok());
    torch::Tensor out = torch::empty({1, 13, 5, 6, 32});
    g.Run(x.data_ptr<float>(), out.data_ptr<float>());
    const torch::Tensor expected = torch::conv3d(x, w1, b1, 1, 1) + torch::conv3d(x, w1, {}, 1, 1);
    EXPECT_LE(RelativeError(out, expected), 1e-5);
  }
  {
    // conv -> norm + projection (row layout) -> conv (row layout in and out) -> norm + head.
    cpu_engine::Graph g;
    const auto in = g.Input(10, size);
    const auto a = g.Conv({in}, {conv(w1, b1)}, "thin 1").value();
    const auto p = g.NormProjections(a, nullptr, nullptr, nullptr, 1e-5, 0.01, {dense(proj)}, false, "norm 1").value();
    const auto c = g.Conv({p[0]}, {conv(w2, b2)}, "thin 2").value();
    const auto logits = g.NormProjections(c, nullptr, nullptr, nullptr, 1e-5, 0.01, {dense(head)}, true, "head").value();
    ASSERT_TRUE(g.Finish(logits[0]).ok());
    torch::Tensor out = torch::empty({1, 3, 5, 6, 32});
    g.Run(x.data_ptr<float>(), out.data_ptr<float>());
    auto norm = [](const torch::Tensor& t) {
      return torch::leaky_relu(torch::instance_norm(t, {}, {}, {}, {}, true, 0.0, 1e-5, false), 0.01);
    };
    auto project = [](const torch::Tensor& t, const torch::Tensor& w) { return torch::conv3d(t, w.reshape({w.size(0), w.size(1), 1, 1, 1})); };
    const torch::Tensor h1 = project(norm(torch::conv3d(x, w1, b1, 1, 1)), proj);
    const torch::Tensor expected = project(norm(torch::conv3d(h1, w2, b2, 1, 1)), head);
    EXPECT_LE(RelativeError(out, expected), 1e-4);
  }
}
}  // namespace tucker_seg
