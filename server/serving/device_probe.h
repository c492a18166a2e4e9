// What this server runs on: the CPU always, CUDA devices when LibTorch has CUDA, and NVML
// (utilisation, memory) when libnvidia-ml.so.1 can be loaded. No gRPC here.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vocabulary/status.h"

namespace tucker_seg::server {

struct DeviceProfile {
  std::string kind = "cpu";   // "cpu" or "cuda": where inference runs
  std::string spec = "cpu";   // what --devices names it: "cpu" or "cuda:N"
  int index = -1;             // the CUDA device index (also NVML's, see docs/gpu.md); -1 on CPU
  std::string name;           // CPU model name or GPU name
  int cores = 0;              // inference threads (CPU) or multiprocessors (GPU)
  std::vector<std::string> isa;  // CPU features that matter for convolutions
  int64_t memory_bytes = 0;   // host memory (CPU) or device memory (GPU)
  int cuda_devices = 0;
  bool nvml = false;

  // The `device` metric label: "cpu:<model>" or "cuda:N:<GPU name>".
  std::string Label() const { return (kind == "cpu" ? std::string("cpu") : spec) + ":" + name; }
};

// The devices named by `devices` ("cpu,cuda:0"; "auto" = every CUDA device, then the CPU), each
// checked to exist in this build and on this machine; duplicates are refused. `threads`: the
// intra-op threads inference will use (reported as the CPU's cores).
Result<std::vector<DeviceProfile>> ProbeDevices(const std::string& devices, int threads);

struct GpuSample {
  double utilization = 0;  // 0..1
  int64_t memory_used_bytes = 0;
  int64_t memory_total_bytes = 0;
};

// NVML through dlopen; absent (nullptr from Open) on machines without the NVIDIA driver.
class Nvml {
 public:
  static std::unique_ptr<Nvml> Open();
  ~Nvml();
  int device_count() const { return device_count_; }
  std::string DeviceName(int index) const;
  std::optional<GpuSample> Sample(int index) const;

 private:
  Nvml() = default;
  void* library_ = nullptr;
  int device_count_ = 0;
};

}  // namespace tucker_seg::server
