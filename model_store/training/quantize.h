// int8 variants: static post-training quantization of a model or one of its variants. Calibration
// runs the float32 network (LibTorch's ops) over every tile of some CTs, no labels needed, and
// records each quantized layer's input range (int8_calibration.h); the variant keeps the float32
// weights (the CPU engine quantizes them per output channel when it builds its graph) and its
// manifest records precision, calibration CTs and ranges.
#pragma once

#include <string>
#include <vector>

#include "model_store/format/variant_manifest.h"
#include "model_store/network/loaded_model.h"
#include "vocabulary/volume.h"
#include "vocabulary/status.h"

namespace tucker_seg {

struct QuantizeOptions {
  // The bound of a channel: this percentile of |x| per tile (100: the largest), the largest over tiles.
  double percentile = 99.99;
  double step = 0.5;  // sliding-window step over the calibration CTs
};

// The calibration of a float32 model or variant (LoadNetwork's) over `cts` (names: what the
// manifest records for them).
Result<Int8Calibration> CalibrateInt8(const LoadedModel& source, const std::vector<CtVolume>& cts, const std::vector<std::string>& names,
                                      const QuantizeOptions& options);

// Writes <model>/variants/<name>-int8/ for `source`, loaded from `dir` (name: the variant's, or
// "original" for a model folder): its model.json and float32 weights, and Int8VariantManifest of
// its manifest (the original's figures for an original). Returns the folder.
Result<std::string> SaveInt8Variant(const std::string& dir, const LoadedModel& source, const Int8Calibration& calibration);

}  // namespace tucker_seg
