#include "model_store/format/safetensors.h"
#include "model_store/format/bounded_json.h"
#include "vocabulary/atomic_file.h"

#include <filesystem>
#include <fstream>

namespace tucker_seg {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 16 << 20;

const std::map<std::string, torch::ScalarType>& Dtypes() {
  static const std::map<std::string, torch::ScalarType> kDtypes = {
      {"F32", torch::kFloat32}, {"F64", torch::kFloat64}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
      {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},   {"I8", torch::kInt8},
      {"U8", torch::kUInt8},    {"BOOL", torch::kBool}};
  return kDtypes;
}

Result<std::string> DtypeName(torch::ScalarType t) {
  for (const auto& [name, type] : Dtypes())
    if (type == t) return name;
  return InvalidArgument(std::string("dtype ") + c10::toString(t) + " cannot be stored");
}

}  // namespace

Status WriteSafetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::vector<torch::Tensor> data;
  for (const auto& [name, t] : tensors) {
    auto dtype = DtypeName(t.scalar_type());
    if (!dtype.ok()) return InvalidArgument("tensor '" + name + "': " + dtype.status().message());
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = c.numel() * c.element_size();
    header[name] = {{"dtype", dtype.value()}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  AtomicFileWriter out(path);  // every write checked, fsynced, renamed into place
  const uint64_t len = text.size();
  out.Write(std::string_view(reinterpret_cast<const char*>(&len), 8));
  out.Write(text);
  for (const auto& c : data) out.Write(std::string_view(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size()));
  return out.Commit();
}

Result<std::map<std::string, torch::Tensor>> ReadSafetensors(const std::string& path,
                                                             std::map<std::string, std::string>* metadata) {
  std::error_code ec;
  const auto file_size = std::filesystem::file_size(path, ec);
  if (ec) return NotFound("weights file '" + path + "' cannot be read: " + ec.message());
  std::ifstream in(path, std::ios::binary);
  uint64_t header_len = 0;
  if (file_size < 8 || !in.read(reinterpret_cast<char*>(&header_len), 8)) return DataLoss("'" + path + "' is too short for a safetensors file");
  if (header_len > kMaxHeaderBytes || header_len > file_size - 8) {
    return DataLoss("'" + path + "': header length " + std::to_string(header_len) + " exceeds the file or the 16 MiB limit");
  }
  std::string text(header_len, '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(header_len))) return DataLoss("'" + path + "': truncated header");
  const uint64_t data_size = file_size - 8 - header_len;

  std::map<std::string, torch::Tensor> out;
  auto parsed = ParseBoundedJson(text, "'" + path + "': header");
  if (!parsed.ok()) return DataLoss(parsed.status().message());
  const json& header = parsed.value();
  if (!header.is_object()) return DataLoss("'" + path + "': header is not a JSON object");
  // Each tensor's byte range (begin -> end): entries that share bytes are refused before their
  // tensors are allocated, so the file's bytes back every allocation at most once.
  std::map<uint64_t, uint64_t> extents;
  try {
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        if (metadata) *metadata = entry.get<std::map<std::string, std::string>>();
        continue;
      }
      const std::string where = "'" + path + "': tensor '" + name + "'";
      auto dt = Dtypes().find(entry.at("dtype").get<std::string>());
      if (dt == Dtypes().end()) return DataLoss(where + " has unsupported dtype " + entry.at("dtype").dump());
      const auto shape = entry.at("shape").get<std::vector<int64_t>>();
      const auto offsets = entry.at("data_offsets").get<std::vector<uint64_t>>();
      if (offsets.size() != 2 || offsets[0] > offsets[1] || offsets[1] > data_size) {
        return DataLoss(where + " has data_offsets outside the file's " + std::to_string(data_size) + " data bytes");
      }
      uint64_t numel = 1;
      for (int64_t d : shape) {
        if (d < 0 || (d > 0 && numel > data_size / static_cast<uint64_t>(d))) return DataLoss(where + " has an impossible shape");
        numel *= static_cast<uint64_t>(d);
      }
      const uint64_t bytes = numel * torch::elementSize(dt->second);
      if (bytes != offsets[1] - offsets[0]) return DataLoss(where + ": shape and data_offsets disagree");
      if (bytes > 0) {
        const auto next = extents.lower_bound(offsets[0]);
        const bool overlaps_next = next != extents.end() && next->first < offsets[1];
        const bool overlaps_previous = next != extents.begin() && std::prev(next)->second > offsets[0];
        if (overlaps_next || overlaps_previous) return DataLoss(where + " has data_offsets that overlap another tensor's");
        extents.emplace(offsets[0], offsets[1]);
      }
      torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(dt->second));
      in.seekg(static_cast<std::streamoff>(8 + header_len + offsets[0]));
      if (!in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(bytes))) return DataLoss(where + ": data cannot be read");
      out.emplace(name, t);
    }
  } catch (const json::exception& e) {
    return DataLoss("'" + path + "': malformed header: " + e.what());
  }
  return out;
}

}  // namespace tucker_seg
