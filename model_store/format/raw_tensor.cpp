#include "model_store/format/raw_tensor.h"

#include <filesystem>
#include <fstream>

namespace tucker_seg {

Result<torch::Tensor> ReadRawFloat32(const std::string& path, const std::vector<int64_t>& shape) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return NotFound("'" + path + "' cannot be read: " + ec.message());
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  if (size != static_cast<uint64_t>(numel) * sizeof(float)) {
    return InvalidArgument("'" + path + "' holds " + std::to_string(size) + " bytes, shape " + c10::str(c10::IntArrayRef(shape)) +
                           " needs " + std::to_string(numel * sizeof(float)));
  }
  torch::Tensor t = torch::empty(shape, torch::kFloat32);
  std::ifstream in(path, std::ios::binary);
  if (!in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(size))) return DataLoss("'" + path + "': short read");
  return t;
}

Status WriteRawFloat32(const std::string& path, const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kFloat32).contiguous();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * sizeof(float)));
  if (!out) return Internal("cannot write '" + path + "'");
  return Status::Ok();
}

}  // namespace tucker_seg
