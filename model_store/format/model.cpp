#include "model_store/format/model.h"

#include <filesystem>

#include "model_store/format/safetensors.h"
#include "vocabulary/atomic_file.h"

namespace tucker_seg {
namespace {

namespace fs = std::filesystem;

}  // namespace

Status SaveModel(const Model& model, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Internal("cannot create '" + dir + "': " + ec.message());
  TS_RETURN_IF_ERROR(WriteSafetensors((fs::path(dir) / kModelWeightsFile).string(), model.weights, {{"format", "pt"}}));
  return WriteFileAtomically((fs::path(dir) / kModelInfoFile).string(), ToJson(model.info).dump(2) + "\n");
}

Result<Model> LoadModel(const std::string& dir) {
  auto info = LoadModelInfo(dir);
  if (!info.ok()) return info.status();
  auto weights = ReadSafetensors((fs::path(dir) / kModelWeightsFile).string());
  if (!weights.ok()) return weights.status();
  return Model{std::move(info).value(), std::move(weights).value()};
}

}  // namespace tucker_seg
