// Tensors on disk in the safetensors layout: an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets}}, then the raw little-endian data. Readable by
// Python's `safetensors` and by anyone with a JSON parser.
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "vocabulary/status.h"

namespace tucker_seg {

Status WriteSafetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                        const std::map<std::string, std::string>& metadata = {});

// Every size is checked against the file before anything is allocated. The header's
// "__metadata__" (string -> string) goes to `metadata` when given.
Result<std::map<std::string, torch::Tensor>> ReadSafetensors(const std::string& path,
                                                             std::map<std::string, std::string>* metadata = nullptr);

}  // namespace tucker_seg
