// Input: a whole .safetensors file (written to a private temporary file: the reader takes a path).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "model_store/format/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/tucker-seg-fuzz-" + std::to_string(getpid()) + ".safetensors";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  std::map<std::string, std::string> metadata;
  auto tensors = tucker_seg::ReadSafetensors(path, &metadata);
  (void)tensors;
  return 0;
}
