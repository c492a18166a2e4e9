#include "model_store/import/torch_checkpoint.h"

#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "model_store/import/pickle_reader.h"

namespace tucker_seg {
namespace {

// c10::Error messages carry a stack trace after the first line; keep the first line only.
std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

Result<torch::ScalarType> StorageDtype(const std::string& type_name) {
  static const std::map<std::string, torch::ScalarType> kTypes = {
      {"torch.FloatStorage", torch::kFloat32}, {"torch.DoubleStorage", torch::kFloat64},
      {"torch.HalfStorage", torch::kFloat16},  {"torch.BFloat16Storage", torch::kBFloat16},
      {"torch.LongStorage", torch::kInt64},    {"torch.IntStorage", torch::kInt32},
      {"torch.ShortStorage", torch::kInt16},   {"torch.CharStorage", torch::kInt8},
      {"torch.ByteStorage", torch::kUInt8},    {"torch.BoolStorage", torch::kBool},
  };
  auto it = kTypes.find(type_name);
  if (it == kTypes.end()) return DataLoss("unsupported storage type '" + type_name + "'");
  return it->second;
}

class CheckpointReader {
 public:
  CheckpointReader(std::string path, int64_t file_size, std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip)
      : path_(std::move(path)), file_size_(file_size), zip_(std::move(zip)) {}

  Result<torch::Tensor> Tensor(const std::string& name, const pickle::TensorRef& ref) {
    auto dtype = StorageDtype(ref.storage.type_name);
    if (!dtype.ok()) return DataLoss("tensor '" + name + "': " + dtype.status().message());
    auto storage = Storage(ref.storage, dtype.value());
    if (!storage.ok()) return DataLoss("tensor '" + name + "': " + storage.status().message());
    // The view must stay inside its storage (overflow-checked: sizes and strides are untrusted).
    if (ref.size.size() != ref.stride.size() || ref.size.size() > 16) return DataLoss("tensor '" + name + "' has a malformed shape");
    int64_t last = ref.offset;
    bool overflow = false;
    for (size_t d = 0; d < ref.size.size(); ++d) {
      if (ref.size[d] < 0 || ref.stride[d] < 0) return DataLoss("tensor '" + name + "' has a negative size or stride");
      if (ref.size[d] == 0) { last = -1; break; }
      int64_t step = 0;
      overflow |= __builtin_mul_overflow(ref.size[d] - 1, ref.stride[d], &step);
      overflow |= __builtin_add_overflow(last, step, &last);
    }
    if (overflow || ref.offset < 0 || last >= storage.value().numel()) {
      return DataLoss("tensor '" + name + "' reaches outside its storage of " +
                      std::to_string(storage.value().numel()) + " elements");
    }
    auto view = StatusFromExceptions("tensor '" + name + "'", [&]() -> Result<torch::Tensor> {
      return storage.value().as_strided(ref.size, ref.stride, ref.offset).contiguous();
    });
    if (!view.ok()) return DataLoss(view.status().message());
    return view;
  }

 private:
  Result<torch::Tensor> Storage(const pickle::StorageRef& ref, torch::ScalarType dtype) {
    auto it = storages_.find(ref.key);
    if (it != storages_.end()) return it->second;
    const std::string record = "data/" + ref.key;
    if (!zip_->hasRecord(record)) return DataLoss("storage record '" + record + "' is missing from the archive");
    const int64_t element = static_cast<int64_t>(torch::elementSize(dtype));
    if (ref.numel < 0 || ref.numel > file_size_ / element) {
      return DataLoss("storage record '" + record + "' claims " + std::to_string(ref.numel) +
                      " elements, more than the file holds");
    }
    const int64_t bytes = ref.numel * element;
    // torch.save stores records uncompressed; read them straight from the file so that no
    // allocation is sized by the archive's own (untrusted) size fields.
    size_t offset = 0;
    try {
      offset = zip_->getRecordOffset(record);
    } catch (const std::exception& e) {
      return DataLoss("storage record '" + record + "' cannot be located: " + FirstLine(e.what()));
    }
    if (offset > static_cast<size_t>(file_size_) || bytes > file_size_ - static_cast<int64_t>(offset)) {
      return DataLoss("storage record '" + record + "' runs past the end of the file (truncated?)");
    }
    // Records may share bytes (a zip directory can point many names at one offset): all storages
    // together must fit in the file, so that what is allocated is at most what the file holds.
    if (bytes > file_size_ - storage_bytes_) {
      return DataLoss("storage record '" + record + "': the storages claim more bytes than the file's " + std::to_string(file_size_));
    }
    storage_bytes_ += bytes;
    auto allocated = StatusFromExceptions("storage record '" + record + "'", [&]() -> Result<torch::Tensor> {
      return torch::empty({ref.numel}, torch::TensorOptions().dtype(dtype));
    });
    if (!allocated.ok()) return DataLoss(allocated.status().message());
    torch::Tensor storage = allocated.value();
    std::ifstream in(path_, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(offset));
    if (!in.read(static_cast<char*>(storage.data_ptr()), bytes)) {
      return DataLoss("storage record '" + record + "' cannot be read");
    }
    storages_.emplace(ref.key, storage);
    return storage;
  }

  std::string path_;
  int64_t file_size_;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip_;
  std::map<std::string, torch::Tensor> storages_;
  int64_t storage_bytes_ = 0;  // of all storages read so far
};

std::string Identity(const pickle::TensorRef& ref) {
  std::string id = ref.storage.key + "@" + std::to_string(ref.offset) + ":";
  for (size_t d = 0; d < ref.size.size(); ++d) id += std::to_string(ref.size[d]) + "/" + std::to_string(ref.stride[d]) + ",";
  return id;
}

}  // namespace

Result<std::vector<CheckpointTensor>> ReadCheckpointStateDict(const std::string& path, const std::string& entry) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return NotFound("checkpoint '" + path + "' does not exist");

  {
    char magic[4] = {};
    std::ifstream head(path, std::ios::binary);
    if (!head.read(magic, 4) || std::string(magic, 4) != std::string("PK\x03\x04", 4)) {
      return DataLoss("'" + path + "' is not a zip archive, so not a torch.save checkpoint (no 'PK' signature; "
                      "legacy non-zip torch.save files are not supported)");
    }
  }
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip;
  std::string pickle_bytes;
  try {
    zip = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
    if (!zip->hasRecord("data.pkl")) {
      return DataLoss("'" + path + "' is a zip archive but not a torch.save checkpoint (no data.pkl record)");
    }
    auto [data, size] = zip->getRecord("data.pkl");
    pickle_bytes.assign(static_cast<const char*>(data.get()), size);
  } catch (const std::exception& e) {
    return DataLoss("'" + path + "' is a damaged zip archive (truncated or corrupt): " +
                    FirstLine(e.what()));
  }

  auto root = pickle::Unpickle(pickle_bytes);
  if (!root.ok()) return DataLoss("'" + path + "': data.pkl: " + root.status().message());
  pickle::ValuePtr weights = root.value()->Get(entry);
  if (!weights) {
    return InvalidArgument("'" + path + "' has no '" + entry + "' entry; is it an nnU-Net training checkpoint?");
  }
  if (weights->kind != pickle::Value::Kind::kDict) {
    return InvalidArgument("'" + path + "': '" + entry + "' is not a dict of tensors");
  }

  CheckpointReader reader(path, static_cast<int64_t>(std::filesystem::file_size(path, ec)), std::move(zip));
  std::vector<CheckpointTensor> out;
  for (const auto& [key, value] : weights->entries) {
    if (!key->is_string()) return InvalidArgument("'" + path + "': '" + entry + "' has a key that is not a string");
    if (value->kind != pickle::Value::Kind::kTensor) {
      return InvalidArgument("'" + path + "': '" + entry + "." + key->text + "' is not a tensor");
    }
    auto tensor = reader.Tensor(key->text, value->tensor);
    if (!tensor.ok()) return DataLoss("'" + path + "': " + tensor.status().message());
    out.push_back({key->text, std::move(tensor).value(), Identity(value->tensor)});
  }
  return out;
}

}  // namespace tucker_seg
