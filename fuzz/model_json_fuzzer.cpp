// Input: the text of a model.json, manifest.json or composite.json; each reader gets it.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "model_store/format/bounded_json.h"
#include "model_store/format/composite.h"
#include "model_store/format/model_info.h"
#include "model_store/format/variant_manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto json = tucker_seg::ParseBoundedJson(text, "fuzz");
  if (json.ok()) {
    (void)tucker_seg::ModelInfoFromJson(json.value());
    (void)tucker_seg::VariantManifestFromJson(json.value());
  }
  // composite.json has only a folder reader.
  static const std::filesystem::path dir = "/tmp/tucker-seg-fuzz-composite-" + std::to_string(getpid());
  static const bool made = std::filesystem::create_directories(dir) || true;
  (void)made;
  std::ofstream(dir / "composite.json", std::ios::binary) << text;
  (void)tucker_seg::ReadCompositeModel(dir.string());
  return 0;
}
