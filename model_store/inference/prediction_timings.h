// Where a prediction's time went. No LibTorch here, so that metrics code can report it cheaply.
#pragma once

namespace tucker_seg {

struct PredictionTimings {
  double preprocess_seconds = 0;  // transpose, crop, normalise, resample
  double network_seconds = 0;
  double aggregation_seconds = 0;
  double export_seconds = 0;      // logits back to the input grid, argmax, uncrop
};

}  // namespace tucker_seg
