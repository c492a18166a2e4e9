// Reads the network weights out of a torch.save checkpoint (zip format) without Python.
#pragma once

#include <string>
#include <vector>

#include <torch/types.h>

#include "vocabulary/status.h"

namespace tucker_seg {

struct CheckpointTensor {
  std::string name;
  torch::Tensor tensor;
  // Tensors with the same identity are one tensor stored under two names (aliases).
  std::string identity;
};

// Reads `<entry>` (a state_dict: name -> tensor) from the checkpoint at `path`.
// Everything else in the pickle (optimizer state, numpy scalars, torch.device, ...) is skipped.
// Errors: kNotFound (no file), kDataLoss (not a zip, truncated, corrupt pickle or storage),
// kInvalidArgument (no such entry, or it is not a dict of tensors).
Result<std::vector<CheckpointTensor>> ReadCheckpointStateDict(const std::string& path,
                                                              const std::string& entry = "network_weights");

}  // namespace tucker_seg
