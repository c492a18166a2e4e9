#include "model_store/training/quantize.h"

#include <filesystem>

#include "model_store/inference/predictor.h"
#include "model_store/network/int8_calibration.h"

namespace tucker_seg {
namespace fs = std::filesystem;

Result<Int8Calibration> CalibrateInt8(const LoadedModel& source, const std::vector<CtVolume>& cts, const std::vector<std::string>& names,
                                      const QuantizeOptions& options) {
  if (cts.empty() || cts.size() != names.size()) return InvalidArgument("int8 calibration needs at least one CT, each with its name");
  if (!(options.percentile > 0 && options.percentile <= 100)) return InvalidArgument("the calibration percentile must be in (0, 100]");
  if (source.execution.int8) return InvalidArgument(source.info.name + " is already an int8 variant: quantize its float32 source");
  InputRangeRecorder recorder(options.percentile);
  const auto executor = MakeRecordingExecutor(source.network, &recorder);
  const UNetPatchNetwork network(*executor);
  PredictionOptions prediction;
  prediction.window.step = options.step;
  for (size_t i = 0; i < cts.size(); ++i) {
    auto predicted = Predict(source.info, network, cts[i], prediction);
    if (!predicted.ok()) return Annotate(predicted.status(), "calibrating on " + names[i]);
  }
  Int8Calibration calibration;
  calibration.statistic = options.percentile < 100 ? "percentile" : "max";
  calibration.percentile = options.percentile;
  calibration.images = names;
  calibration.tiles = recorder.tiles();
  calibration.input_bounds = recorder.bounds();
  if (calibration.input_bounds.empty()) return InvalidArgument(source.info.name + ": no layer of this network is quantized to int8");
  return calibration;
}

Result<std::string> SaveInt8Variant(const std::string& dir, const LoadedModel& source, const Int8Calibration& calibration) {
  if (source.execution.int8) return InvalidArgument(dir + " is already an int8 variant");
  VariantManifest float32;
  fs::path model_dir = fs::path(dir).lexically_normal();
  if (source.manifest) {  // a variant: <model>/variants/<name>
    float32 = *source.manifest;
    if (!model_dir.has_filename()) model_dir = model_dir.parent_path();
    model_dir = model_dir.parent_path().parent_path();
  } else {  // the original
    float32.variant = "original";
    float32.model = source.info.name;
    float32.patch_size = source.info.patch_size;
    float32.parameters = float32.original_parameters = source.network.NumParameters();
    for (const auto& layer : source.network.Cost(source.info.patch_size)) float32.macs += layer.macs;
    float32.original_macs = float32.macs;
  }
  const VariantManifest manifest = Int8VariantManifest(std::move(float32), calibration);
  Model model{source.info, source.network.Weights()};
  model.info.name = manifest.model + "/" + manifest.variant;
  if (!model.info.provenance.contains("variant_of")) model.info.provenance["variant_of"] = manifest.model;
  model.info.provenance["quantization"] = {{"precision", "int8"}, {"statistic", calibration.statistic}, {"percentile", calibration.percentile},
                                           {"images", calibration.images}, {"tiles", calibration.tiles}};
  const fs::path out = model_dir / "variants" / manifest.variant;
  TS_RETURN_IF_ERROR(SaveModel(model, out.string()));
  TS_RETURN_IF_ERROR(WriteVariantManifest(manifest, out.string()));
  return out.string();
}

}  // namespace tucker_seg
