#include "model_store/network/int8_calibration.h"

#include <algorithm>
#include <cmath>

#include "model_store/network/libtorch_executor.h"

namespace tucker_seg {

bool Int8QuantizesLayer(const ConvLayer& layer) {
  return !layer.factorized() && !layer.transposed && layer.kernel[0] * layer.kernel[1] * layer.kernel[2] > 1 && layer.in_channels >= 8;
}

void InputRangeRecorder::Observe(const ConvLayer& layer, const torch::Tensor& input) {
  if (!Int8QuantizesLayer(layer)) return;
  const torch::NoGradGuard no_grad;
  for (int64_t n = 0; n < input.size(0); ++n) {
    const torch::Tensor magnitudes = input[n].detach().to(torch::kFloat32).abs().reshape({input.size(1), -1});
    const int64_t voxels = magnitudes.size(1);
    const int64_t k = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(percentile_ / 100.0 * voxels)), 1, voxels);
    const torch::Tensor bound = (k == voxels ? std::get<0>(magnitudes.max(1)) : std::get<0>(magnitudes.kthvalue(k, 1))).cpu().contiguous();
    const float* b = bound.data_ptr<float>();
    MutexLock lock(&mu_);
    std::vector<float>& bounds = bounds_[layer.name];
    bounds.resize(static_cast<size_t>(input.size(1)), 0.0f);
    for (size_t c = 0; c < bounds.size(); ++c) bounds[c] = std::max(bounds[c], b[c]);
    ++samples_[layer.name];
  }
}

ActivationBounds InputRangeRecorder::bounds() const {
  MutexLock lock(&mu_);
  return bounds_;
}

int64_t InputRangeRecorder::tiles() const {
  MutexLock lock(&mu_);
  int64_t most = 0;
  for (const auto& [name, n] : samples_) most = std::max(most, n);
  return most;
}

std::shared_ptr<const NetworkExecutor> MakeRecordingExecutor(const PlainConvUNet& network, InputRangeRecorder* recorder) {
  LibTorchOps ops;
  ops.observe_input = [recorder](const ConvLayer& layer, const torch::Tensor& input) { recorder->Observe(layer, input); };
  return std::make_shared<LibTorchExecutor>(std::make_shared<const PlainConvUNet>(network), ops);
}

}  // namespace tucker_seg
