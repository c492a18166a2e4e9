// Input: the bytes of a checkpoint's data.pkl.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "model_store/import/pickle_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto value = tucker_seg::pickle::Unpickle(std::string_view(reinterpret_cast<const char*>(data), size));
  if (value.ok() && value.value()) (void)value.value()->Get("network_weights");
  return 0;
}
