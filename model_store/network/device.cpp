#include "model_store/network/device.h"

#include "model_store/network/cpu_engine_executor.h"

#include <ATen/Context.h>
#include <torch/cuda.h>

namespace tucker_seg {

int CudaDeviceCount() { return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0; }

Result<torch::Device> ParseDevice(const std::string& spec) {
  if (spec == "cpu") return torch::Device(torch::kCPU);
  std::string index_text;
  if (spec == "cuda") {
    index_text = "0";
  } else if (spec.rfind("cuda:", 0) == 0) {
    index_text = spec.substr(5);
  } else {
    return InvalidArgument("device '" + spec + "' is not one of cpu, cuda, cuda:N");
  }
  if (index_text.empty() || index_text.size() > 3 || index_text.find_first_not_of("0123456789") != std::string::npos) {
    return InvalidArgument("device '" + spec + "': the CUDA index must be a number");
  }
  const int index = std::stoi(index_text);
  if (!torch::cuda::is_available()) {
    return FailedPrecondition("device '" + spec + "' is not available: " +
                              (at::hasCUDA() ? std::string("no CUDA device or driver on this machine")
                                             : std::string("this build's LibTorch has no CUDA (build against a CUDA LibTorch, docs/gpu.md)")));
  }
  const int count = CudaDeviceCount();
  if (index >= count) {
    return FailedPrecondition("device '" + spec + "' is not available: this machine has " + std::to_string(count) + " CUDA device(s)");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

Result<Precision> ParsePrecision(const std::string& name) {
  if (name == "fp32") return Precision::kFloat32;
  if (name == "fp16") return Precision::kFloat16;
  if (name == "bf16") return Precision::kBFloat16;
  return InvalidArgument("precision '" + name + "' is not one of fp32, fp16, bf16");
}

std::string PrecisionName(Precision p) {
  switch (p) {
    case Precision::kFloat16: return "fp16";
    case Precision::kBFloat16: return "bf16";
    default: return "fp32";
  }
}

torch::ScalarType ScalarTypeOf(Precision p) {
  switch (p) {
    case Precision::kFloat16: return torch::kHalf;
    case Precision::kBFloat16: return torch::kBFloat16;
    default: return torch::kFloat32;
  }
}

Status CheckPrecision(const torch::Device& device, Precision p) {
  if (p == Precision::kFloat32 || device.is_cuda()) return Status::Ok();
  if (p == Precision::kBFloat16 && CpuEngineBuilt()) {
    if (CpuEngineRunsBFloat16()) return Status::Ok();
    return InvalidArgument("precision bf16 on the CPU needs AVX-512 BF16, which this CPU lacks; it computes in fp32");
  }
  return InvalidArgument("precision " + PrecisionName(p) + " runs on CUDA devices only (bf16 also on CPUs with AVX-512 BF16); " +
                         device.str() + " computes in fp32");
}

void PrepareDevice(const torch::Device& device) {
  if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
}

}  // namespace tucker_seg
