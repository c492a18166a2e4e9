#include "model_store/format/model_info.h"

#include <openssl/evp.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "model_store/format/bounded_json.h"

namespace tucker_seg {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

}  // namespace

json ToJson(const ModelInfo& info) {
  json channels = json::array();
  for (const auto& c : info.channels) {
    const auto& p = c.intensity;
    channels.push_back({{"name", c.name},
                        {"normalization", c.scheme},
                        {"use_mask_for_norm", c.use_mask_for_norm},
                        {"intensity", {{"mean", p.mean}, {"std", p.std}, {"median", p.median}, {"min", p.min}, {"max", p.max},
                                       {"percentile_00_5", p.percentile_00_5}, {"percentile_99_5", p.percentile_99_5}}}});
  }
  json labels = json::array();
  for (const auto& [id, name] : info.labels) labels.push_back({{"id", id}, {"name", name}});
  return {{"format", "tucker-seg-model"},
          {"format_version", kModelFormatVersion},
          {"name", info.name},
          {"architecture", ToJson(info.network)},
          {"patch_size", info.patch_size},
          {"spacing", std::array<double, 3>(info.spacing)},
          {"transpose_forward", info.transpose_forward},
          {"transpose_backward", info.transpose_backward},
          {"orientation", info.orientation},
          {"channels", channels},
          {"labels", labels},
          {"resampling", info.resampling},
          {"provenance", info.provenance},
          {"weights", kModelWeightsFile}};
}

Result<ModelInfo> ModelInfoFromJson(const json& j) {
  ModelInfo info;
  try {
    if (j.value("format", std::string()) != "tucker-seg-model") return InvalidArgument("model.json: 'format' is not \"tucker-seg-model\"");
    const int version = j.at("format_version").get<int>();
    if (version != kModelFormatVersion) {
      return FailedPrecondition("model.json: format_version " + std::to_string(version) + " is not supported (this build reads " +
                                std::to_string(kModelFormatVersion) + ")");
    }
    info.name = j.at("name").get<std::string>();
    auto net = UNetConfigFromJson(j.at("architecture"));
    if (!net.ok()) return InvalidArgument("model.json: " + net.status().message());
    info.network = net.value();
    auto patch = ParseInt3(j.at("patch_size"), "model.json: patch_size");
    if (!patch.ok()) return patch.status();
    info.patch_size = patch.value();
    TS_RETURN_IF_ERROR(info.network.ValidatePatch(info.patch_size));
    info.spacing = Zyx<double>{j.at("spacing").get<std::array<double, 3>>()};
    for (double mm : info.spacing)
      if (!std::isfinite(mm) || mm <= 0 || mm > 1e3) return InvalidArgument("model.json: spacing must be finite, > 0 and at most 1000 mm");
    info.transpose_forward = j.at("transpose_forward").get<std::array<int, 3>>();
    info.transpose_backward = j.at("transpose_backward").get<std::array<int, 3>>();
    for (const auto* field : {&info.transpose_forward, &info.transpose_backward}) {
      std::array<int, 3> sorted = *field;
      std::sort(sorted.begin(), sorted.end());
      if (sorted != std::array<int, 3>{0, 1, 2}) {
        return InvalidArgument(std::string("model.json: ") + (field == &info.transpose_forward ? "transpose_forward" : "transpose_backward") +
                               " must be a permutation of [0, 1, 2]");
      }
    }
    for (int a = 0; a < 3; ++a)
      if (info.transpose_backward[info.transpose_forward[a]] != a) {
        return InvalidArgument("model.json: transpose_backward must undo transpose_forward");
      }
    info.orientation = j.value("orientation", std::string("as-is"));
    if (info.orientation != "as-is" && info.orientation != "RAS" && info.orientation != "LPS") {
      return InvalidArgument("model.json: orientation '" + info.orientation + "' must be as-is, RAS or LPS");
    }
    for (const auto& c : j.at("channels")) {
      ChannelNormalization ch;
      ch.name = c.at("name").get<std::string>();
      ch.scheme = c.at("normalization").get<std::string>();
      ch.use_mask_for_norm = c.at("use_mask_for_norm").get<bool>();
      const auto& p = c.at("intensity");
      ch.intensity = {p.at("mean").get<double>(), p.at("std").get<double>(), p.at("median").get<double>(),
                      p.at("min").get<double>(), p.at("max").get<double>(), p.at("percentile_00_5").get<double>(),
                      p.at("percentile_99_5").get<double>()};
      info.channels.push_back(ch);
    }
    for (const auto& l : j.at("labels")) info.labels.emplace_back(l.at("id").get<int64_t>(), l.at("name").get<std::string>());
    info.resampling = j.value("resampling", json::object());
    info.provenance = j.value("provenance", json::object());
  } catch (const json::exception& e) {
    return InvalidArgument(std::string("model.json: ") + e.what());
  }
  if (static_cast<int64_t>(info.channels.size()) != info.network.input_channels) {
    return InvalidArgument("model.json: channels lists " + std::to_string(info.channels.size()) + " entries, the network takes " +
                           std::to_string(info.network.input_channels));
  }
  return info;
}

Result<ModelInfo> LoadModelInfo(const std::string& dir) {
  const fs::path path = fs::path(dir) / kModelInfoFile;
  std::ifstream in(path);
  if (!in) return NotFound("no model at '" + dir + "' (" + path.string() + " is missing)");
  TS_ASSIGN_OR_RETURN(const json j, ParseBoundedJson(in, path.string()));
  return ModelInfoFromJson(j);
}

Result<ArchitectureFile> ReadArchitectureFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("architecture file '" + path + "' cannot be read");
  TS_ASSIGN_OR_RETURN(const json j, ParseBoundedJson(in, "'" + path + "'"));
  try {
    auto network = UNetConfigFromJson(j.at("architecture"));
    if (!network.ok()) return Status(network.status().code(), "'" + path + "': " + network.status().message());
    auto patch = ParseInt3(j.at("patch_size"), "'" + path + "': patch_size");
    if (!patch.ok()) return patch.status();
    return ArchitectureFile{network.value(), patch.value()};
  } catch (const json::exception& e) {
    return InvalidArgument("'" + path + "': " + e.what());
  }
}

Result<std::string> WeightsDigest(const std::string& dir) {
  const std::string path = dir + "/" + kModelWeightsFile;
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open");
  const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) return Internal("sha256: cannot start a digest");
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(context.get(), buffer.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) return DataLoss(path + ": read error");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context.get(), digest, &length);
  std::string text = "sha256:";
  char hex[3];
  for (unsigned int i = 0; i < length; ++i) {
    std::snprintf(hex, sizeof hex, "%02x", digest[i]);
    text += hex;
  }
  return text;
}

}  // namespace tucker_seg
