#include "model_store/format/composite.h"
#include "model_store/format/bounded_json.h"

#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "model_store/format/model_info.h"
#include "vocabulary/atomic_file.h"

namespace tucker_seg {
namespace fs = std::filesystem;
namespace {

constexpr char kFile[] = "composite.json";
constexpr size_t kMaxParts = 16;

// Each part's classes in part order, a name seen before keeping its first id.
LabelTable DerivedLabels(const std::vector<ModelInfo>& parts) {
  LabelTable table{{0, "background"}};
  std::map<std::string, int64_t> ids;
  for (const auto& part : parts)
    for (const auto& [id, name] : part.labels) {
      if (id == 0 || ids.count(name)) continue;
      ids[name] = static_cast<int64_t>(table.size());
      table.emplace_back(ids[name], name);
    }
  return table;
}

Result<std::vector<ModelInfo>> ReadParts(const std::string& dir, const std::vector<std::string>& parts) {
  std::vector<ModelInfo> infos;
  for (const auto& part : parts) {
    if (part.empty() || part.find('/') != std::string::npos || part[0] == '.') {
      return InvalidArgument(std::string(kFile) + ": part name '" + part + "' is not a folder name");
    }
    auto info = LoadModelInfo((fs::path(dir) / "parts" / part).string());
    if (!info.ok()) return InvalidArgument("composite part '" + part + "': " + info.status().message());
    infos.push_back(std::move(info.value()));
  }
  return infos;
}

}  // namespace

bool IsCompositeModel(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / kFile, ec);
}

Result<CompositeModel> ReadCompositeModel(const std::string& dir) {
  const fs::path path = fs::path(dir) / kFile;
  std::ifstream in(path);
  if (!in) return NotFound(path.string() + " is missing");
  TS_ASSIGN_OR_RETURN(const nlohmann::json j, ParseBoundedJson(in, path.string()));
  if (!j.is_object()) return InvalidArgument(path.string() + ": not a JSON object");
  if (!j.contains("parts") || !j["parts"].is_array() || j["parts"].empty() || j["parts"].size() > kMaxParts) {
    return InvalidArgument(path.string() + ": \"parts\" must list 1.." + std::to_string(kMaxParts) + " part folder names");
  }
  CompositeModel model;
  model.name = j.value("name", fs::path(dir).filename().string());
  for (const auto& part : j["parts"]) {
    if (!part.is_string()) return InvalidArgument(path.string() + ": \"parts\" holds a non-string");
    model.parts.push_back(part.get<std::string>());
    model.part_dirs.push_back((fs::path(dir) / "parts" / model.parts.back()).string());
  }
  TS_ASSIGN_OR_RETURN(const std::vector<ModelInfo> infos, ReadParts(dir, model.parts));
  if (j.contains("labels")) {
    if (!j["labels"].is_array()) return InvalidArgument(path.string() + ": \"labels\" must be [[id, name], ...]");
    for (const auto& l : j["labels"]) {
      if (!l.is_array() || l.size() != 2 || !l[0].is_number_integer() || !l[1].is_string() || l[0].get<int64_t>() < 0 ||
          l[0].get<int64_t>() > 255) {
        return InvalidArgument(path.string() + ": each label must be [id 0..255, \"name\"]");
      }
      model.labels.emplace_back(l[0].get<int64_t>(), l[1].get<std::string>());
    }
  } else {
    model.labels = DerivedLabels(infos);
  }
  if (model.labels.size() > 256) return InvalidArgument(path.string() + ": more than 255 classes do not fit a uint8 label map");
  std::map<std::string, int64_t> ids;
  for (const auto& [id, name] : model.labels) ids[name] = id;
  for (size_t p = 0; p < infos.size(); ++p) {
    std::vector<uint8_t> map(256, 0);
    for (const auto& [id, name] : infos[p].labels) {
      if (id == 0) continue;
      if (id < 0 || id > 255) return InvalidArgument("composite part '" + model.parts[p] + "': label id " + std::to_string(id) + " outside 0..255");
      const auto it = ids.find(name);
      if (it == ids.end()) {
        return InvalidArgument(path.string() + ": class '" + name + "' of part '" + model.parts[p] + "' is not in \"labels\"");
      }
      map[static_cast<size_t>(id)] = static_cast<uint8_t>(it->second);
    }
    model.to_composite_id.push_back(std::move(map));
  }
  return model;
}

Status WriteCompositeModel(const std::string& dir, const std::string& name, const std::vector<std::string>& parts) {
  TS_ASSIGN_OR_RETURN(const std::vector<ModelInfo> infos, ReadParts(dir, parts));
  nlohmann::json labels = nlohmann::json::array();
  for (const auto& [id, label] : DerivedLabels(infos)) labels.push_back({id, label});
  const nlohmann::json j = {{"name", name}, {"parts", parts}, {"labels", labels}};
  return WriteFileAtomically((fs::path(dir) / kFile).string(), j.dump(2) + "\n");
}

Status MergePartLabels(const CompositeModel& model, size_t part, const LabelMap& part_labels, LabelMap* merged) {
  if (part >= model.to_composite_id.size()) return InvalidArgument("composite '" + model.name + "' has no part " + std::to_string(part));
  if (merged->voxels.empty()) merged->voxels.assign(part_labels.voxels.size(), 0), merged->geometry = part_labels.geometry;
  if (merged->voxels.size() != part_labels.voxels.size()) return InvalidArgument("composite parts answered on different grids");
  const auto& map = model.to_composite_id[part];
  for (size_t i = 0; i < part_labels.voxels.size(); ++i)
    if (const uint8_t id = map[part_labels.voxels[i]]) merged->voxels[i] = id;
  return Status::Ok();
}

}  // namespace tucker_seg
