// One-patch forward time of the TotalSegmentator-shaped 3 mm network on CPU, against this
// machine's limit (oneDNN's float32 matmul, measured in the same run): LibTorch's own ops, LibTorch
// with 1x1x1 and upsampling convolutions as matrix products, and the oneDNN engine, with the top operations of each by time.
// Prints tables; asserts nothing.
//
//   build/bench/network_forward_bench [--threads 2] [--repeats 3] [--architecture file.json] [--patch Z,Y,X]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <torch/utils.h>
#include <torch/version.h>

#include "model_store/cpu_engine/gemm_peak.h"
#include "model_store/format/model.h"
#include "model_store/network/executor.h"
#include "model_store/network/network.h"

using namespace tucker_seg;
using Clock = std::chrono::steady_clock;

namespace {

template <typename F>
double Seconds(F fn) {
  const auto start = Clock::now();
  fn();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, repeats = 3;
  std::string arch_path = std::string(TUCKER_SEG_SOURCE_DIR) + "/model_store/architectures/totalseg_3mm_shaped.json";
  std::string patch_arg;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--threads") threads = std::stoi(v);
    else if (k == "--repeats") repeats = std::stoi(v);
    else if (k == "--architecture") arch_path = v;
    else if (k == "--patch") patch_arg = v;
  }
  torch::set_num_threads(threads);

  auto arch = ReadArchitectureFile(arch_path);
  if (!arch.ok()) {
    std::fprintf(stderr, "%s\n", arch.status().message().c_str());
    return 1;
  }
  const UNetConfig& config = arch.value().network;
  Int3 patch = arch.value().patch_size;
  if (!patch_arg.empty()) std::sscanf(patch_arg.c_str(), "%ld,%ld,%ld", &patch[0], &patch[1], &patch[2]);
  auto net = PlainConvUNet::Create(config, PlainConvUNet::RandomWeights(config, 0));
  if (!net.ok()) return 1;
  int64_t macs = 0;
  for (const auto& l : net.value().Cost(patch)) macs += l.macs;
  const double gflop = 2.0 * static_cast<double>(macs) / 1e9;

  std::printf("network: %s, patch %s, %.2f GMACs, %ld parameters, %d threads (LibTorch %s)\n",
              arch_path.substr(arch_path.rfind('/') + 1).c_str(), ToString(patch).c_str(), macs / 1e9,
              static_cast<long>(net.value().NumParameters()), threads, TORCH_VERSION);
  const auto peak = cpu_engine::MeasureGemmPeak();

  torch::manual_seed(1);
  const auto x = torch::randn({1, config.input_channels, patch[0], patch[1], patch[2]});
  struct Row {
    const char* name;
    std::shared_ptr<const NetworkExecutor> executor;
    std::vector<double> times;
  };
  std::vector<Row> rows = {{"LibTorch ops (eager baseline)", MakeExecutor(net.value(), {Backend::kLibTorchReference}), {}},
                           {"LibTorch + matmul rewrites", MakeExecutor(net.value(), {Backend::kLibTorch}), {}},
                           {"tucker-seg engine (oneDNN)", MakeExecutor(net.value()), {}}};
  for (auto& r : rows) r.executor->Forward(x);  // warm-up (the engine builds its graph)
  for (int i = 0; i < repeats; ++i) {
    for (auto& r : rows) r.times.push_back(Seconds([&] { r.executor->Forward(x); }));  // interleaved
  }

  std::printf("\nmachine limit: oneDNN matmul 4096^3 float32: %.1f GFLOP/s (%s)\n\n", peak.gflops, peak.kernel.c_str());
  std::printf("%-32s %10s %10s %10s %12s %10s\n", "path", "min s", "median s", "GFLOP/s", "% of limit", "speed-up");
  const double base = Median(rows[0].times);
  for (const auto& r : rows) {
    const double best = *std::min_element(r.times.begin(), r.times.end());
    const double med = Median(r.times);
    std::printf("%-32s %10.2f %10.2f %10.1f %11.0f%% %9.2fx\n", r.name, best, med, gflop / med, 100.0 * gflop / med / peak.gflops, base / med);
  }

  for (const auto& r : rows) {
    OpProfile profile;
    const double total = Seconds([&] { r.executor->Forward(x, &profile); });
    std::vector<std::pair<std::string, OpProfile::Entry>> ops(profile.entries().begin(), profile.entries().end());
    std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    std::printf("\ntop operations, %s (one profiled pass, %.2f s):\n", r.name, total);
    std::printf("%-40s %7s %9s %7s %9s %10s\n", "op", "calls", "seconds", "share", "GMACs", "GFLOP/s");
    for (const auto& [name, e] : ops) {
      std::printf("%-40s %7ld %9.3f %6.1f%% %9.2f %10s\n", name.c_str(), static_cast<long>(e.calls), e.seconds,
                  100.0 * e.seconds / total, e.macs / 1e9,
                  e.macs ? std::to_string(static_cast<int>(2.0 * e.macs / e.seconds / 1e9)).c_str() : "-");
    }
  }
  return 0;
}
