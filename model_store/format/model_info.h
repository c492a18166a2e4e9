// model.json: everything about a model but its weights (docs/model-format.md). JSON only, no
// LibTorch: listings, cost reports, composites and the server's catalogue read it alone.
#pragma once

#include <array>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "model_store/format/unet_config.h"
#include "vocabulary/status.h"

namespace tucker_seg {

constexpr int kModelFormatVersion = 1;

// nnU-Net's foreground intensity statistics of one input channel.
struct IntensityProperties {
  double mean = 0, std = 1, median = 0, min = 0, max = 0, percentile_00_5 = 0, percentile_99_5 = 0;
};

struct ChannelNormalization {
  std::string name;    // dataset.json channel name, e.g. "CT"
  std::string scheme;  // "CTNormalization", "ZScoreNormalization", ...
  bool use_mask_for_norm = false;
  IntensityProperties intensity;
};

struct ModelInfo {
  std::string name;
  UNetConfig network;
  Int3 patch_size{0, 0, 0};
  Zyx<double> spacing{{1, 1, 1}};                 // mm, in the network's (transposed) axis order
  std::array<int, 3> transpose_forward{0, 1, 2};
  std::array<int, 3> transpose_backward{0, 1, 2};
  // How the voxel array is oriented before nnU-Net's transpose: "as-is" (nnU-Net: the file's own
  // order), or "RAS"/"LPS": axes permuted and flipped to the closest canonical orientation, as
  // TotalSegmentator does (RAS, nibabel's as_closest_canonical) before calling nnU-Net.
  std::string orientation = "as-is";
  std::vector<ChannelNormalization> channels;
  std::vector<std::pair<int64_t, std::string>> labels;  // output index -> name, background included
  nlohmann::json resampling = nlohmann::json::object();  // nnU-Net's resampling kwargs, kept verbatim
  nlohmann::json provenance = nlohmann::json::object();  // where the model came from
};

// The files of a model folder: the ModelInfo, and the weights it names.
constexpr const char* kModelInfoFile = "model.json";
constexpr const char* kModelWeightsFile = "weights.safetensors";

// Reads model.json alone (no weights): cheap, for listings and cost reports.
Result<ModelInfo> LoadModelInfo(const std::string& dir);

// The model version a server reports: "sha256:<64 hex digits>" of the folder's weights file, so
// the same weights give the same version on every machine and across restarts, and new weights
// under the same name a new one.
Result<std::string> WeightsDigest(const std::string& dir);

// An architecture-only file (model_store/architectures/*.json):
// {"architecture": {...as in model.json...}, "patch_size": [z, y, x]}.
struct ArchitectureFile {
  UNetConfig network;
  Int3 patch_size{0, 0, 0};
};
Result<ArchitectureFile> ReadArchitectureFile(const std::string& path);

nlohmann::json ToJson(const ModelInfo& info);
Result<ModelInfo> ModelInfoFromJson(const nlohmann::json& j);

}  // namespace tucker_seg
