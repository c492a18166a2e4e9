#include "model_store/network/libtorch_executor.h"

#include <chrono>
#include <optional>

namespace tucker_seg {
namespace {

using SteadyClock = std::chrono::steady_clock;

int64_t Prod(const Int3& v) { return v[0] * v[1] * v[2]; }

// Times `fn` into `profile` under `op` when profiling.
template <typename F>
torch::Tensor Timed(OpProfile* profile, const std::string& op, int64_t macs, F fn) {
  if (!profile) return fn();
  const auto start = SteadyClock::now();
  torch::Tensor out = fn();
  profile->Add(op, std::chrono::duration<double>(SteadyClock::now() - start).count(), macs);
  return out;
}

// A 1x1x1 convolution as a matrix product over channels, one GEMM per batch element:
// (Cout, Cin) x (Cin, V) -> (N, Cout, V). (torch::matmul's broadcasting batch path is several
// times slower here.)
torch::Tensor Pointwise(const torch::Tensor& x, const torch::Tensor& w2d, const torch::Tensor& bias) {
  const auto n = x.size(0);
  auto x3 = x.reshape({n, x.size(1), -1});
  torch::Tensor y = torch::empty({n, w2d.size(0), x3.size(2)}, x.options());
  for (int64_t i = 0; i < n; ++i) {
    auto out = y.select(0, i);
    if (bias.defined()) {
      torch::addmm_out(out, bias.view({-1, 1}), w2d, x3.select(0, i));
    } else {
      torch::mm_out(out, w2d, x3.select(0, i));
    }
  }
  return y;
}

// conv -> InstanceNorm3d -> LeakyReLU
torch::Tensor Block(const ConvBlock& b, double slope, const torch::Tensor& x, const LibTorchOps& ops, OpProfile* profile) {
  torch::Tensor y = ConvForward(b.conv, x, ops, profile);
  return Timed(profile, "instance norm + leaky relu", 0, [&] {
    y = torch::instance_norm(y, b.norm.weight, b.norm.bias, {}, {}, /*use_input_stats=*/true, 0.0, b.norm.eps, false);
    if (ops.autograd) return torch::leaky_relu(y, slope);
    return slope == 0.0 ? y.relu_() : torch::leaky_relu_(y, slope);
  });
}

}  // namespace

torch::Tensor ConvForward(const ConvLayer& layer, const torch::Tensor& x, const LibTorchOps& ops, OpProfile* profile) {
  if (layer.factorized()) {
    torch::Tensor y = x;
    for (const auto& part : layer.tucker_parts) y = ConvForward(part, y, ops, profile);
    return y;
  }
  if (ops.observe_input) ops.observe_input(layer, x);
  const int64_t n = x.size(0);
  const Int3 in{x.size(2), x.size(3), x.size(4)};
  const Int3 out = layer.OutputSize(in);
  const int64_t macs = n * layer.Cost(in).macs;
  const torch::Tensor& weight = layer.weight;
  const torch::Tensor& bias = layer.bias;
  const Int3& kernel = layer.kernel;
  const Int3& stride = layer.stride;
  const Int3& padding = layer.padding;
  if (ops.matmul_rewrites && Prod(kernel) == 1 && Prod(stride) == 1 && Prod(padding) == 0) {
    return Timed(profile, "conv 1x1x1 (matmul)", macs, [&] {
      return Pointwise(x, weight.view({layer.out_channels, layer.in_channels}), bias).view({n, layer.out_channels, out[0], out[1], out[2]});
    });
  }
  if (ops.matmul_rewrites && layer.transposed && kernel == stride) {
    // Kernel == stride: each input voxel writes its own k^3 block, so the transposed conv is a
    // matrix product to Cout*k^3 channels followed by a depth-to-space shuffle (avoids LibTorch's
    // slow reference kernel for ConvTranspose3d on CPU).
    return Timed(profile, "transposed conv (matmul + shuffle)", macs, [&] {
      auto w2d = weight.view({layer.in_channels, -1}).t();
      auto y = Pointwise(x, w2d, torch::Tensor());
      y = y.view({n, layer.out_channels, kernel[0], kernel[1], kernel[2], in[0], in[1], in[2]})
              .permute({0, 1, 5, 2, 6, 3, 7, 4})
              .reshape({n, layer.out_channels, out[0], out[1], out[2]});
      if (bias.defined()) y.add_(bias.view({1, -1, 1, 1, 1}));
      return y;
    });
  }
  const std::string op = std::string(layer.transposed ? "transposed conv " : "conv ") + ToString(kernel) +
                         (layer.in_channels < 32 || layer.out_channels < 32 ? " (< 32 channels)" : "");
  return Timed(profile, op, macs, [&] {
    if (layer.transposed) {
      return torch::conv_transpose3d(x, weight, bias, {stride[0], stride[1], stride[2]}, {padding[0], padding[1], padding[2]});
    }
    return torch::conv3d(x, weight, bias, {stride[0], stride[1], stride[2]}, {padding[0], padding[1], padding[2]});
  });
}

torch::Tensor LibTorchForward(const PlainConvUNet& net, const torch::Tensor& input, const LibTorchOps& ops, OpProfile* profile) {
  std::optional<torch::NoGradGuard> no_grad;
  if (!ops.autograd) no_grad.emplace();
  const double slope = net.config().negative_slope;
  std::vector<torch::Tensor> skips;
  torch::Tensor x = input;
  for (const auto& stage : net.encoder()) {
    for (const auto& b : stage) x = Block(b, slope, x, ops, profile);
    skips.push_back(x);
  }
  torch::Tensor lres = skips.back();
  skips.pop_back();
  for (size_t d = 0; d < net.decoder().size(); ++d) {
    x = ConvForward(net.transpconvs()[d], lres, ops, profile);
    const torch::Tensor& skip = skips.back();
    x = Timed(profile, "concat", 0, [&] { return torch::cat({x, skip}, 1); });
    skips.pop_back();
    for (const auto& b : net.decoder()[d]) x = Block(b, slope, x, ops, profile);
    lres = x;
  }
  return ConvForward(net.seg_layers().back(), lres, ops, profile);
}

}  // namespace tucker_seg
