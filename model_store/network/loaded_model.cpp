#include "model_store/network/loaded_model.h"

namespace tucker_seg {

Result<LoadedModel> LoadNetwork(const std::string& dir) {
  TS_ASSIGN_OR_RETURN(Model model, LoadModel(dir));
  TS_ASSIGN_OR_RETURN(PlainConvUNet net, PlainConvUNet::Create(model.info.network, model.weights));
  return LoadedModel{std::move(model.info), std::move(net)};
}

}  // namespace tucker_seg
