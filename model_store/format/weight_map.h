// Named tensors under nnU-Net's state_dict names: what a checkpoint, a safetensors file and a
// network's parameters have in common.
#pragma once

#include <map>
#include <string>

#include <torch/types.h>

namespace tucker_seg {

using WeightMap = std::map<std::string, torch::Tensor>;

}  // namespace tucker_seg
