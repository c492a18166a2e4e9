// Raw little-endian float32 arrays in C order (the conformance files' format).
#pragma once

#include <string>
#include <vector>

#include <torch/types.h>

#include "vocabulary/status.h"

namespace tucker_seg {

// The file must hold exactly prod(shape) floats.
Result<torch::Tensor> ReadRawFloat32(const std::string& path, const std::vector<int64_t>& shape);
Status WriteRawFloat32(const std::string& path, const torch::Tensor& t);

}  // namespace tucker_seg
