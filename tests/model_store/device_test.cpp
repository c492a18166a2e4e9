// Devices and precisions: parsing, the refusals a CPU-only machine gives, and the device-generic
// network path (LibTorch's own ops, what CUDA runs) exercised on the CPU through PlainConvUNet::To.
#include <gtest/gtest.h>
#include <torch/utils.h>

#include "model_store/network/device.h"
#include "model_store/network/executor.h"
#include "model_store/network/network.h"

namespace tucker_seg {
namespace {

TEST(Device, ParsesCpuAndCudaSpellingsAndRefusesOthers) {
  ASSERT_TRUE(ParseDevice("cpu").ok());
  EXPECT_TRUE(ParseDevice("cpu").value().is_cpu());
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""}) {
    auto d = ParseDevice(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(d.status().message().find(std::string("'") + bad + "'"), std::string::npos) << d.status().message();
  }
}

TEST(Device, CudaWithoutCudaIsAClearError) {
  if (CudaDeviceCount() > 0) GTEST_SKIP() << "this machine has CUDA";
  for (const char* spec : {"cuda", "cuda:0", "cuda:3"}) {
    auto d = ParseDevice(spec);
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(d.status().message().find("is not available"), std::string::npos) << d.status().message();
  }
}

TEST(Device, HalfPrecisionIsForCudaOnly) {
  EXPECT_TRUE(CheckPrecision(torch::kCPU, Precision::kFloat32).ok());
  const Status half = CheckPrecision(torch::kCPU, Precision::kFloat16);
  EXPECT_EQ(half.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(half.message().find("fp16 runs on CUDA devices only"), std::string::npos) << half.message();
  EXPECT_TRUE(CheckPrecision(torch::Device(torch::kCUDA, 0), Precision::kBFloat16).ok());
  EXPECT_EQ(ParsePrecision("bf16").value(), Precision::kBFloat16);
  EXPECT_EQ(ParsePrecision("fp8").status().code(), StatusCode::kInvalidArgument);
}

// A network moved with To() runs LibTorch's generic ops (the CPU's fused kernels only take float32
// on the CPU): float64 on the CPU goes through exactly the code a GPU runs, and must agree.
TEST(Device, MovedNetworkRunsTheGenericPathAndAgreesWithTheCpuKernels) {
  UNetConfig config;
  config.input_channels = 1;
  config.num_classes = 3;
  config.features_per_stage = {8, 16};
  config.kernel_sizes = {{3, 3, 3}, {3, 3, 3}};
  config.strides = {{1, 1, 1}, {2, 2, 2}};
  config.n_conv_per_stage = {2, 2};
  config.n_conv_per_stage_decoder = {2};
  auto net = PlainConvUNet::Create(config, PlainConvUNet::RandomWeights(config, 7));
  ASSERT_TRUE(net.ok()) << net.status().message();
  const PlainConvUNet moved = net.value().To(torch::kCPU, torch::kFloat64);
  EXPECT_EQ(moved.dtype(), torch::kFloat64);
  EXPECT_TRUE(moved.device().is_cpu());
  EXPECT_EQ(net.value().dtype(), torch::kFloat32);  // the original is untouched

  torch::manual_seed(3);
  const auto x = torch::randn({1, 1, 16, 16, 16});
  const auto reference = MakeExecutor(net.value())->Run(x);
  ASSERT_TRUE(reference.ok());
  const auto moved_executor = MakeExecutor(moved);
  const auto wrong_type = moved_executor->Run(x);
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_NE(wrong_type.status().message().find("input must be Double"), std::string::npos) << wrong_type.status().message();
  const auto generic = moved_executor->Run(x.to(torch::kFloat64));
  ASSERT_TRUE(generic.ok()) << generic.status().message();
  const double max_abs = (generic.value().to(torch::kFloat32) - reference.value()).abs().max().item<double>();
  EXPECT_LT(max_abs, 1e-4);
}

}  // namespace
}  // namespace tucker_seg
