// Static int8 calibration: the range of every quantized layer's input, recorded while LibTorch's
// ops run calibration tiles (no labels needed). The CPU engine maps each source's largest bound
// to 127 (executor.h's ActivationBounds).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "model_store/network/executor.h"
#include "model_store/network/network.h"
#include "vocabulary/mutex.h"

namespace tucker_seg {

// Whether int8 inference quantizes this layer's input: 3D-kernel convolutions and Tucker cores
// that read at least 8 channels. The first layer (the CT itself), transposed convolutions and
// 1x1x1 projections stay float32.
bool Int8QuantizesLayer(const ConvLayer& layer);

class InputRangeRecorder {
 public:
  // The bound of an input channel in one tile is this percentile of its |x| (100: the largest);
  // over tiles, the largest of those.
  explicit InputRangeRecorder(double percentile) : percentile_(percentile) {}
  // LibTorchOps::observe_input: records layers Int8QuantizesLayer accepts, ignores the others.
  void Observe(const ConvLayer& layer, const torch::Tensor& input) TS_EXCLUDES(mu_);
  ActivationBounds bounds() const TS_EXCLUDES(mu_);
  int64_t tiles() const TS_EXCLUDES(mu_);  // samples (tiles) each recorded layer saw

 private:
  const double percentile_;
  mutable Mutex mu_;
  ActivationBounds bounds_ TS_GUARDED_BY(mu_);
  std::map<std::string, int64_t> samples_ TS_GUARDED_BY(mu_);
};

// An executor running LibTorch's ops that shows every input to `recorder` (which must outlive it).
std::shared_ptr<const NetworkExecutor> MakeRecordingExecutor(const PlainConvUNet& network, InputRangeRecorder* recorder);

}  // namespace tucker_seg
