#include "model_store/network/loaded_model.h"

#include "model_store/network/cpu_engine_executor.h"

namespace tucker_seg {

Result<LoadedModel> LoadNetwork(const std::string& dir) {
  TS_ASSIGN_OR_RETURN(Model model, LoadModel(dir));
  TS_ASSIGN_OR_RETURN(PlainConvUNet net, PlainConvUNet::Create(model.info.network, model.weights));
  LoadedModel loaded{std::move(model.info), std::move(net), {}, std::nullopt};
  auto manifest = ReadVariantManifest(dir);
  if (!manifest.ok() && manifest.status().code() != StatusCode::kNotFound) return manifest.status();
  if (manifest.ok()) loaded.manifest = std::move(manifest).value();
  if (loaded.manifest && loaded.manifest->int8) {
    if (!CpuEngineBuilt()) return Unimplemented(dir + " is an int8 variant, and this build has no CPU engine (oneDNN) to run it");
    loaded.execution.int8 = std::make_shared<const ActivationBounds>(loaded.manifest->int8->input_bounds);
  }
  return loaded;
}

Result<LoadedModel> LoadNetwork(const std::string& dir, const torch::Device& device, Precision precision) {
  TS_RETURN_IF_ERROR(CheckPrecision(device, precision));
  TS_ASSIGN_OR_RETURN(LoadedModel loaded, LoadNetwork(dir));
  if (loaded.execution.int8 && !(device.is_cpu() && precision == Precision::kFloat32)) {
    return Unimplemented(dir + " is an int8 variant: it runs on the CPU (--device cpu --precision fp32), not on " + device.str() + " in " +
                         PrecisionName(precision));
  }
  if (device.is_cpu() && precision == Precision::kFloat32) return loaded;
  if (device.is_cpu()) {  // bf16 on the CPU: the engine converts the float32 weights when it builds its graphs
    loaded.execution.cpu_bf16 = true;
    return loaded;
  }
  PrepareDevice(device);
  TS_ASSIGN_OR_RETURN(PlainConvUNet moved, StatusFromExceptions("moving the weights to " + device.str(), [&]() -> Result<PlainConvUNet> {
                        return loaded.network.To(device, ScalarTypeOf(precision));
                      }));
  return LoadedModel{std::move(loaded.info), std::move(moved), loaded.execution, std::move(loaded.manifest)};
}

}  // namespace tucker_seg
