// The CPU engine: a network's forward pass for one input shape, compiled once into oneDNN
// primitives and our own kernels, and reused for every tile of that shape.
//
// Activations stay channels-last (ndhwc): oneDNN's brgconv kernels run fastest there on AVX-512
// (faster than the blocked layout: docs/performance.md) and no op needs a reorder. A convolution over
// several sources (nnU-Net's concat [up, skip]) runs as one convolution per source, summed into
// the output (oneDNN's sum post-op), so no concatenation is ever written. Every oneDNN primitive
// must be a JIT kernel: a shape oneDNN serves with its reference kernel only is refused at build
// time (the caller then runs LibTorch's ops instead). Our own kernels: InstanceNorm + LeakyReLU
// in place (norm_kernels.h), the norm with its readers' 1x1x1 projections fused
// (NormProjections, norm_projection.h), transposed convolutions with stride = kernel
// (strided_transposed_conv.h), which oneDNN 2.6 ran 10-100x slower, and thin 3x3x3 convolutions
// (thin_conv.h). Values that only thin convolutions and fused norms touch are kept in the row
// layout of tile_math.h instead of channels-last.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model_store/cpu_engine/norm_projection.h"
#include "vocabulary/status.h"
#include "vocabulary/volume.h"

namespace tucker_seg::cpu_engine {

enum class DataType { kFloat32, kBFloat16 };

// A convolution with LibTorch's weight layout: (out, in, kz, ky, kx), or (in, out, kz, ky, kx)
// when transposed. The pointers need to live only until the call that takes the spec returns.
struct ConvSpec {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  Int3 kernel{1, 1, 1};
  Int3 stride{1, 1, 1};
  Int3 padding{0, 0, 0};
  bool transposed = false;
  const float* weight = nullptr;
  const float* bias = nullptr;  // null: no bias
  // int8 where > 0 (a float32 graph's oneDNN convolutions only; thin and transposed ones stay
  // float32): the source is quantized to s8 with this step (x ~ input_scale * q, |q| <= 127), the
  // weights to s8 per output channel (symmetric, max |w| -> 127), accumulated in s32 and written
  // float32 (the norm that reads it stays float32).
  float input_scale = 0;
  int64_t macs_per_voxel() const { return in_channels * out_channels * kernel[0] * kernel[1] * kernel[2]; }
};

// Seconds and multiply-accumulates of one executed step (profiling).
using StepObserver = std::function<void(const std::string& op, double seconds, int64_t macs)>;

class Graph {
 public:
  using Value = int;  // an activation: (channels, z, y, x), channels-last

  // Activations and weights in `type` (bf16 needs AVX-512 BF16; oneDNN refuses it otherwise);
  // statistics, bias and the network's output stay float32.
  explicit Graph(DataType type = DataType::kFloat32);
  ~Graph();
  Graph(Graph&&) noexcept;
  Graph& operator=(Graph&&) noexcept;

  // The graph's input: (channels, size) float32, contiguous (LibTorch's NCDHW for one sample).
  Value Input(int64_t channels, const Int3& size);
  // sum_i conv_i(sources[i]): one convolution per source, all with the same output shape; only
  // the first may carry a bias. `op` names the step in profiles.
  Result<Value> Conv(const std::vector<Value>& sources, const std::vector<ConvSpec>& specs, const std::string& op);
  // InstanceNorm (biased variance, per channel over the whole volume, optional affine) followed
  // by LeakyReLU (0 <= slope <= 1), in place. `gamma`/`beta`: null or one float per channel.
  Status NormLeakyRelu(Value x, const float* gamma, const float* beta, double eps, double slope);
  // y = LeakyReLU(InstanceNorm(expansion(x))) read only through 1x1x1 projections: one value per
  // projection (projection.in_channels = y's channels, optional bias), and y itself is never
  // written (see norm_projection.h). expansion: null (y = x) or a 1x1x1 convolution with bias.
  // With `last_is_output` the last projection is the graph's result, written as float32 NCDHW
  // straight into Run's output (no reorder); Finish must then name it.
  Result<std::vector<Value>> NormProjections(Value x, const ConvSpec* expansion, const float* gamma, const float* beta,
                                             double eps, double slope, const std::vector<ConvSpec>& projections,
                                             bool last_is_output, const std::string& op);
  // sum_i conv_i(sources[i]) added into `into` (which must have the convolutions' output shape)
  // in place; returns `into`.
  Result<Value> AccumulateConv(Value into, const std::vector<Value>& sources, const std::vector<ConvSpec>& specs,
                               const std::string& op);
  // Ends the graph: `output` becomes the result, buffers are assigned (reused once a value's
  // last reader has run) and allocated.
  Status Finish(Value output);

  int64_t output_channels() const;
  Int3 output_size() const;
  int64_t buffer_bytes() const;  // activations held between runs
  // input: Input's (channels, size) float32; output: (channels, z, y, x) float32 (LibTorch's
  // contiguous NCDHW for one sample: a final oneDNN reorder, since LibTorch's sliding-window
  // arithmetic on channels-last logits is far slower, docs/performance.md). Not reentrant.
  void Run(const float* input, float* output, const StepObserver* observer = nullptr);
  // Whether the head writes the logits itself (the last step is a NormProjections output), so
  // that RunSummingLogits can add them into a larger volume.
  bool sums_logits() const;
  // Run, but the logits are added into sum.volume with sum.weight (the sliding window's Gaussian
  // sum) and never written as a tile; sum.tile_height/width must be output_size()'s y and x.
  // Only where sums_logits().
  void RunSummingLogits(const float* input, const WeightedLogitsSum& sum, const StepObserver* observer = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Whether this CPU runs oneDNN's bf16 kernels (AVX-512 BF16 or AMX).
bool CpuHasBFloat16();

}  // namespace tucker_seg::cpu_engine
