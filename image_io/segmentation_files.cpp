#include "image_io/segmentation_files.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "image_io/image_io.h"
#include "vocabulary/atomic_file.h"
#include "vocabulary/label_palette.h"

namespace tucker_seg {
namespace {

double Round(double v, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

std::string Format(const char* format, double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, format, v);
  return buffer;
}

NiftiHeaderEdits HeaderEdits(const SegmentationFileOptions& options) {
  NiftiHeaderEdits edits;
  edits.codes = options.codes;
  edits.description = options.provenance.Describe();
  return edits;
}

}  // namespace

std::string Provenance::Describe() const {
  std::string s = "tucker-seg " + software_version + " model=" + model + " variant=" + variant;
  if (quality) s += " agreement=" + Format("%.3f", *quality);
  return s;
}

Result<OutputType> ParseOutputType(const std::string& name) {
  if (name == "multilabel") return OutputType::kMultilabel;
  if (name == "per-class") return OutputType::kPerClass;
  return InvalidArgument("--output-type must be per-class or multilabel, not '" + name + "'");
}

OutputType DefaultOutputType(const std::string& output) {
  return HasImageExtension(output) ? OutputType::kMultilabel : OutputType::kPerClass;
}

std::string LabelTableExtension(const LabelTable& table) {
  std::string xml =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?> <CaretExtension>  <VolumeInformation Index=\"0\">   <LabelTable>\n";
  for (const auto& [id, name] : table) {
    if (id == 0) continue;
    const Rgb8 c = LabelColour(id);
    xml += "<Label Key=\"" + std::to_string(id) + "\" Red=\"" + Format("%.4f", c[0] / 255.0) + "\" Green=\"" +
           Format("%.4f", c[1] / 255.0) + "\" Blue=\"" + Format("%.4f", c[2] / 255.0) + "\" Alpha=\"1\"><![CDATA[" + name +
           "]]></Label>\n";
  }
  xml += "  </LabelTable>  <VolumeType><![CDATA[Label]]></VolumeType>   </VolumeInformation></CaretExtension>\n";
  return xml;
}

Status WriteSegmentationFiles(const std::string& output, const LabelMap& labels, const LabelTable& table,
                              const SegmentationFileOptions& options) {
  namespace fs = std::filesystem;
  if (options.type == OutputType::kPerClass) {
    if (DefaultOutputType(output) == OutputType::kMultilabel) {
      return InvalidArgument("-o '" + output + "': per-class output is a folder of <class>.nii.gz files, not an image file name");
    }
    std::error_code ec;
    fs::create_directories(output, ec);
    if (ec) return Internal("cannot create the folder '" + output + "': " + ec.message());
    LabelMap mask{labels.geometry, std::vector<uint8_t>(labels.voxels.size())};
    for (const auto& [id, name] : table) {
      if (id == 0) continue;
      if (name.empty() || name.find('/') != std::string::npos || name[0] == '.') {
        return InvalidArgument("class " + std::to_string(id) + " has the name '" + name + "', which cannot be a file name");
      }
      for (size_t i = 0; i < labels.voxels.size(); ++i) mask.voxels[i] = labels.voxels[i] == id;
      TS_RETURN_IF_ERROR(WriteLabelMap((fs::path(output) / (name + ".nii.gz")).string(), mask, HeaderEdits(options)));
    }
    return Status::Ok();
  }
  NiftiHeaderEdits edits = HeaderEdits(options);
  edits.extension = LabelTableExtension(table);
  TS_RETURN_IF_ERROR(WriteLabelMap(output, labels, edits));
  nlohmann::json sidecar = {{"model", options.provenance.model},
                            {"variant", options.provenance.variant},
                            {"software_version", options.provenance.software_version},
                            {"labels", nlohmann::json::object()}};
  sidecar["agreement"] = options.provenance.quality ? nlohmann::json(*options.provenance.quality) : nlohmann::json(nullptr);
  sidecar["step"] = options.provenance.step ? nlohmann::json(*options.provenance.step) : nlohmann::json(nullptr);
  for (const auto& [id, name] : table)
    if (id != 0) sidecar["labels"][std::to_string(id)] = name;
  return WriteFileAtomically(WithoutImageExtension(output) + ".json", sidecar.dump(2) + "\n");
}

Status KeepOnlyClasses(const std::vector<std::string>& names, LabelTable* table, LabelMap* labels) {
  std::set<int64_t> keep;
  for (const auto& name : names) {
    bool found = false;
    for (const auto& [id, n] : *table)
      if (id != 0 && n == name) keep.insert(id), found = true;
    if (!found) return InvalidArgument("--roi-subset: '" + name + "' is not a class of this model");
  }
  for (auto& v : labels->voxels)
    if (v && !keep.count(v)) v = 0;
  LabelTable kept;
  for (const auto& entry : *table)
    if (entry.first == 0 || keep.count(entry.first)) kept.push_back(entry);
  *table = std::move(kept);
  return Status::Ok();
}

Result<SegmentationStatisticsFiles> SegmentationStatistics(const CtVolume& ct, const LabelMap& labels, const LabelTable& table,
                                                           const Provenance& provenance, bool exclude_masks_at_border) {
  if (labels.geometry.size != ct.geometry.size || labels.voxels.size() != ct.voxels.size() ||
      static_cast<int64_t>(ct.voxels.size()) != ct.geometry.NumVoxels()) {
    return InvalidArgument("statistics: the label map and the CT are not on one grid");
  }
  struct Sums {
    int64_t voxels = 0;
    double intensity = 0;
    bool at_border = false;
  };
  std::map<int64_t, Sums> sums;
  const auto& size = labels.geometry.size;
  const auto near_face = [](int64_t i, int64_t n) { return i < 3 || i >= n - 3; };
  size_t index = 0;
  for (int64_t z = 0; z < size[2]; ++z)
    for (int64_t y = 0; y < size[1]; ++y) {
      const bool yz_border = near_face(y, size[1]) || near_face(z, size[2]);
      for (int64_t x = 0; x < size[0]; ++x, ++index) {
        const uint8_t id = labels.voxels[index];
        if (!id) continue;
        Sums& s = sums[id];
        ++s.voxels;
        s.intensity += ct.voxels[index];
        s.at_border = s.at_border || yz_border || near_face(x, size[0]);
      }
    }
  const auto& spacing = ct.geometry.spacing;
  const double voxel_mm3 = spacing[0] * spacing[1] * spacing[2];
  nlohmann::json stats = nlohmann::json::object();
  nlohmann::json excluded = nlohmann::json::array();
  for (const auto& [id, name] : table) {
    if (id == 0) continue;
    const auto it = sums.find(id);
    const Sums s = it == sums.end() ? Sums{} : it->second;
    const bool exclude = exclude_masks_at_border && s.at_border;
    if (exclude) excluded.push_back(name);
    stats[name] = {{"volume", exclude ? 0.0 : Round(static_cast<double>(s.voxels) * voxel_mm3, 4)},
                   {"intensity", exclude || !s.voxels ? 0.0 : Round(s.intensity / static_cast<double>(s.voxels), 5)}};
  }
  nlohmann::json made_by = {{"model", provenance.model},
                             {"variant", provenance.variant},
                             {"agreement", provenance.quality ? nlohmann::json(*provenance.quality) : nlohmann::json(nullptr)},
                             {"step", provenance.step ? nlohmann::json(*provenance.step) : nlohmann::json(nullptr)},
                             {"software_version", provenance.software_version},
                             {"units", {{"volume", "mm3"}, {"intensity", "HU (mean)"}}},
                             {"exclude_masks_at_border", exclude_masks_at_border},
                             {"excluded_at_border", excluded}};
  return SegmentationStatisticsFiles{std::move(stats), std::move(made_by)};
}

std::string StatisticsProvenancePath(const std::string& statistics_path) {
  const std::string stem = statistics_path.size() > 5 && statistics_path.compare(statistics_path.size() - 5, 5, ".json") == 0
                               ? statistics_path.substr(0, statistics_path.size() - 5)
                               : statistics_path;
  return stem + "_provenance.json";
}

Status WriteStatisticsFiles(const std::string& statistics_path, const SegmentationStatisticsFiles& statistics) {
  TS_RETURN_IF_ERROR(WriteFileAtomically(statistics_path, statistics.classes.dump(2) + "\n"));
  return WriteFileAtomically(StatisticsProvenancePath(statistics_path), statistics.provenance.dump(2) + "\n");
}

}  // namespace tucker_seg
