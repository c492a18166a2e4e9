#include "model_store/training/quantize.h"

#include <filesystem>

#include "model_store/inference/predictor.h"
#include "model_store/network/int8_calibration.h"
#include "model_store/network/loaded_model.h"

namespace tucker_seg {
namespace fs = std::filesystem;

Result<Int8Calibration> CalibrateInt8(const std::string& dir, const std::vector<CtVolume>& cts, const std::vector<std::string>& names,
                                      const QuantizeOptions& options) {
  if (cts.empty() || cts.size() != names.size()) return InvalidArgument("int8 calibration needs at least one CT, each with its name");
  if (!(options.percentile > 0 && options.percentile <= 100)) return InvalidArgument("the calibration percentile must be in (0, 100]");
  TS_ASSIGN_OR_RETURN(LoadedModel model, LoadNetwork(dir));
  if (model.execution.int8) return InvalidArgument(dir + " is already an int8 variant: quantize its float32 source");
  InputRangeRecorder recorder(options.percentile);
  const auto executor = MakeRecordingExecutor(model.network, &recorder);
  const UNetPatchNetwork network(*executor);
  PredictionOptions prediction;
  prediction.window.step = options.step;
  for (size_t i = 0; i < cts.size(); ++i) {
    auto predicted = Predict(model.info, network, cts[i], prediction);
    if (!predicted.ok()) return Annotate(predicted.status(), "calibrating on " + names[i]);
  }
  Int8Calibration calibration;
  calibration.statistic = options.percentile < 100 ? "percentile" : "max";
  calibration.percentile = options.percentile;
  calibration.images = names;
  calibration.tiles = recorder.tiles();
  calibration.input_bounds = recorder.bounds();
  if (calibration.input_bounds.empty()) return InvalidArgument(dir + ": no layer of this network is quantized to int8");
  return calibration;
}

Result<std::string> SaveInt8Variant(const std::string& dir, const Int8Calibration& calibration) {
  TS_ASSIGN_OR_RETURN(Model source, LoadModel(dir));
  VariantManifest manifest;
  fs::path model_dir = fs::path(dir);
  auto existing = ReadVariantManifest(dir);
  if (existing.ok()) {  // a variant: <model>/variants/<name>
    manifest = std::move(existing).value();
    if (manifest.int8) return InvalidArgument(dir + " is already an int8 variant");
    manifest.evaluations.clear();
    model_dir = model_dir.lexically_normal();
    if (!model_dir.has_filename()) model_dir = model_dir.parent_path();
    model_dir = model_dir.parent_path().parent_path();
  } else if (existing.status().code() == StatusCode::kNotFound) {  // the original
    TS_ASSIGN_OR_RETURN(PlainConvUNet net, PlainConvUNet::Create(source.info.network, source.weights));
    manifest.variant = "original";
    manifest.model = source.info.name;
    manifest.patch_size = source.info.patch_size;
    manifest.parameters = manifest.original_parameters = net.NumParameters();
    for (const auto& layer : net.Cost(source.info.patch_size)) manifest.macs += layer.macs;
    manifest.original_macs = manifest.macs;
  } else {
    return existing.status();
  }
  manifest.method["quantization"] = "int8 static post-training: per-output-channel symmetric weights, per-tensor activations";
  manifest.variant += "-int8";
  manifest.precision = "int8";
  manifest.int8 = calibration;
  source.info.name = manifest.model + "/" + manifest.variant;
  if (!source.info.provenance.contains("variant_of")) source.info.provenance["variant_of"] = manifest.model;
  source.info.provenance["quantization"] = {{"precision", "int8"}, {"statistic", calibration.statistic}, {"percentile", calibration.percentile},
                                            {"images", calibration.images}, {"tiles", calibration.tiles}};
  const fs::path out = model_dir / "variants" / manifest.variant;
  TS_RETURN_IF_ERROR(SaveModel(source, out.string()));
  TS_RETURN_IF_ERROR(WriteVariantManifest(manifest, out.string()));
  return out.string();
}

}  // namespace tucker_seg
