#include "server/serving/device_probe.h"

#include <dlfcn.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "model_store/network/device.h"

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

namespace {

DeviceProfile CpuProfile(int threads, bool nvml) {
  DeviceProfile p;
  p.cuda_devices = CudaDeviceCount();
  p.nvml = nvml;
  p.name = CpuModelName();
  p.cores = threads;
  p.isa = CpuFeatures();
  p.memory_bytes = HostMemoryBytes();
  return p;
}

}  // namespace

Result<std::vector<DeviceProfile>> ProbeDevices(const std::string& devices, int threads) {
  std::vector<std::string> specs;
  if (devices == "auto" || devices.empty()) {
    for (int i = 0; i < CudaDeviceCount(); ++i) specs.push_back("cuda:" + std::to_string(i));
    specs.push_back("cpu");
  } else {
    std::stringstream list(devices);
    for (std::string spec; std::getline(list, spec, ',');) specs.push_back(spec);
  }
  const auto nvml = Nvml::Open();
  std::vector<DeviceProfile> out;
  for (const auto& spec : specs) {
    auto device = ParseDevice(spec);
    if (!device.ok()) return Annotate(device.status(), "devices");
    DeviceProfile p = CpuProfile(threads, nvml != nullptr);
    if (device.value().is_cuda()) {
      p.kind = "cuda";
      p.index = device.value().index();
      p.spec = "cuda:" + std::to_string(p.index);
      p.isa.clear();
      p.cores = 0;  // multiprocessors need the CUDA runtime headers, which a CPU build lacks
      p.name = nvml ? nvml->DeviceName(p.index) : "";
      if (p.name.empty()) p.name = "CUDA device " + std::to_string(p.index);
      p.memory_bytes = 0;
      if (nvml) {
        if (auto sample = nvml->Sample(p.index)) p.memory_bytes = sample->memory_total_bytes;
      }
    }
    for (const auto& other : out)
      if (other.spec == p.spec) return InvalidArgument("devices: '" + p.spec + "' is listed twice");
    out.push_back(std::move(p));
  }
  if (out.empty()) return InvalidArgument("devices: the list is empty");
  return out;
}

}  // namespace tucker_seg::server
