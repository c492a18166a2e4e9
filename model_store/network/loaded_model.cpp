#include "model_store/network/loaded_model.h"

namespace tucker_seg {

Result<LoadedModel> LoadNetwork(const std::string& dir) {
  TS_ASSIGN_OR_RETURN(Model model, LoadModel(dir));
  TS_ASSIGN_OR_RETURN(PlainConvUNet net, PlainConvUNet::Create(model.info.network, model.weights));
  return LoadedModel{std::move(model.info), std::move(net), {}};
}

Result<LoadedModel> LoadNetwork(const std::string& dir, const torch::Device& device, Precision precision) {
  TS_RETURN_IF_ERROR(CheckPrecision(device, precision));
  TS_ASSIGN_OR_RETURN(LoadedModel loaded, LoadNetwork(dir));
  if (device.is_cpu() && precision == Precision::kFloat32) return loaded;
  if (device.is_cpu()) {  // bf16 on the CPU: the engine converts the float32 weights when it builds its graphs
    loaded.execution.cpu_bf16 = true;
    return loaded;
  }
  PrepareDevice(device);
  TS_ASSIGN_OR_RETURN(PlainConvUNet moved, StatusFromExceptions("moving the weights to " + device.str(), [&]() -> Result<PlainConvUNet> {
                        return loaded.network.To(device, ScalarTypeOf(precision));
                      }));
  return LoadedModel{std::move(loaded.info), std::move(moved), loaded.execution};
}

}  // namespace tucker_seg
