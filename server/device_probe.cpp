#include "server/device_probe.h"

#include <dlfcn.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <torch/cuda.h>

namespace tucker_seg::server {
namespace {

// The NVML entry points we use, with the driver's C signatures (nvml.h is not installed here).
using NvmlDevice = void*;
struct NvmlUtilization { unsigned int gpu, memory; };
struct NvmlMemory { unsigned long long total, free, used; };
using InitFn = int (*)();
using ShutdownFn = int (*)();
using CountFn = int (*)(unsigned int*);
using HandleFn = int (*)(unsigned int, NvmlDevice*);
using NameFn = int (*)(NvmlDevice, char*, unsigned int);
using UtilFn = int (*)(NvmlDevice, NvmlUtilization*);
using MemFn = int (*)(NvmlDevice, NvmlMemory*);

template <typename Fn>
Fn Symbol(void* library, const char* name) {
  return reinterpret_cast<Fn>(dlsym(library, name));
}

std::string CpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown CPU";
}

std::vector<std::string> CpuFeatures() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::vector<std::string> found;
    for (std::string w; words >> w;) {
      for (const char* wanted : {"avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile"})
        if (w == wanted) found.push_back(w);
    }
    return found;
  }
  return {};
}

int64_t HostMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : 0;
}

}  // namespace

std::unique_ptr<Nvml> Nvml::Open() {
  void* library = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!library) return nullptr;
  std::unique_ptr<Nvml> nvml(new Nvml());
  nvml->library_ = library;
  auto init = Symbol<InitFn>(library, "nvmlInit_v2");
  auto count = Symbol<CountFn>(library, "nvmlDeviceGetCount_v2");
  unsigned int n = 0;
  if (!init || !count || init() != 0 || count(&n) != 0) return nullptr;
  nvml->device_count_ = static_cast<int>(n);
  return nvml;
}

Nvml::~Nvml() {
  if (!library_) return;
  if (auto shutdown = Symbol<ShutdownFn>(library_, "nvmlShutdown")) shutdown();
  dlclose(library_);
}

std::string Nvml::DeviceName(int index) const {
  auto handle = Symbol<HandleFn>(library_, "nvmlDeviceGetHandleByIndex_v2");
  auto name = Symbol<NameFn>(library_, "nvmlDeviceGetName");
  NvmlDevice device = nullptr;
  char buffer[96] = {};
  if (!handle || !name || handle(static_cast<unsigned>(index), &device) != 0 || name(device, buffer, sizeof buffer) != 0) return "";
  return buffer;
}

std::optional<GpuSample> Nvml::Sample(int index) const {
  auto handle = Symbol<HandleFn>(library_, "nvmlDeviceGetHandleByIndex_v2");
  auto util = Symbol<UtilFn>(library_, "nvmlDeviceGetUtilizationRates");
  auto mem = Symbol<MemFn>(library_, "nvmlDeviceGetMemoryInfo");
  NvmlDevice device = nullptr;
  NvmlUtilization u{};
  NvmlMemory m{};
  if (!handle || !util || !mem || handle(static_cast<unsigned>(index), &device) != 0) return std::nullopt;
  if (util(device, &u) != 0 || mem(device, &m) != 0) return std::nullopt;
  return GpuSample{u.gpu / 100.0, static_cast<int64_t>(m.used), static_cast<int64_t>(m.total)};
}

DeviceProfile ProbeDevice(int threads) {
  DeviceProfile p;
  p.cuda_devices = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  const auto nvml = Nvml::Open();
  p.nvml = nvml != nullptr;
  if (p.cuda_devices > 0) {
    // Debian's LibTorch has no CUDA; with a CUDA LibTorch the name comes from NVML when present.
    p.kind = "cuda";
    p.name = nvml ? nvml->DeviceName(0) : "CUDA device 0";
    if (nvml) {
      if (auto s = nvml->Sample(0)) p.memory_bytes = s->memory_total_bytes;
    }
    p.cores = 0;  // multiprocessors need the CUDA runtime headers, which a CPU build lacks
    return p;
  }
  p.name = CpuModelName();
  p.cores = threads;
  p.isa = CpuFeatures();
  p.memory_bytes = HostMemoryBytes();
  return p;
}

}  // namespace tucker_seg::server
