// Tucker variants of the TotalSegmentator-shaped 3 mm network on CPU: parameters, GMACs per
// patch, measured time per patch, speed-up against the original and MAC ratio, in one run.
// Random weights and HOSVD-only factors: time and cost depend on the ranks, not on the values.
//
//   build/bench/tucker_variants_bench [--threads 2] [--repeats 2] [--patch Z,Y,X]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/utils.h>

#include "model_store/compression/compress.h"

using namespace tucker_seg;

namespace {

double MedianSeconds(const PlainConvUNet& net, const torch::Tensor& x, int repeats) {
  net.Forward(x);  // warm-up
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    net.Forward(x);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, repeats = 2;
  std::string patch_arg;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--threads") threads = std::stoi(v);
    else if (k == "--repeats") repeats = std::stoi(v);
    else if (k == "--patch") patch_arg = v;
  }
  torch::set_num_threads(threads);
  const auto arch = ReadArchitectureFile(std::string(TUCKER_SEG_SOURCE_DIR) + "/model_store/architectures/totalseg_3mm_shaped.json").value();
  Model original;
  original.info.name = "totalseg_3mm_shaped";
  original.info.network = arch.network;
  original.info.patch_size = arch.patch_size;
  if (!patch_arg.empty()) {
    std::sscanf(patch_arg.c_str(), "%ld,%ld,%ld", &original.info.patch_size[0], &original.info.patch_size[1], &original.info.patch_size[2]);
  }
  original.weights = PlainConvUNet::RandomWeights(original.info.network, 0);
  const Int3 patch = original.info.patch_size;

  std::printf("TotalSegmentator-shaped 3 mm network, patch %s, %d threads, rank_min 8\n\n", ToString(patch).c_str(), threads);
  std::printf("parameter counts, --factorize-all (every convolution, unused heads included):\n");
  std::printf("%-8s %12s %10s\n", "DF", "parameters", "removed");
  for (double df : {0.9, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05}) {
    CompressionOptions o;
    o.df = df;
    o.factorize_all = true;
    o.tucker.max_iterations = 0;
    auto v = CompressModel(original, o).value();
    std::printf("%-8g %12ld %9.1f%%\n", df, static_cast<long>(v.manifest.parameters),
                100.0 * v.manifest.parameters_removed_fraction);
  }

  torch::manual_seed(1);
  const auto x = torch::randn({1, 1, patch[0], patch[1], patch[2]});
  auto base_net = PlainConvUNet::Create(original.info.network, original.weights).value();
  int64_t base_macs = 0;
  for (const auto& l : base_net.Cost(patch)) base_macs += l.macs;
  const double base_time = MedianSeconds(base_net, x, repeats);

  std::printf("\n%-14s %12s %9s %10s %11s %9s %10s %9s\n", "variant", "parameters", "GMACs", "MAC ratio", "time s", "speed-up",
              "skipped", "realised");
  std::printf("%-14s %12ld %9.1f %9.2fx %11.2f %8.2fx %10s %8.0f%%\n", "original", static_cast<long>(base_net.NumParameters()),
              base_macs / 1e9, 1.0, base_time, 1.0, "-", 100.0);
  std::vector<std::pair<std::string, OpProfile>> profiles;
  {
    OpProfile profile;
    base_net.Forward(x, &profile);
    profiles.emplace_back("original", profile);
  }
  for (bool all : {false, true}) {
    for (double df : {0.7, 0.5, 0.3, 0.1}) {
      CompressionOptions o;
      o.df = df;
      o.factorize_all = all;
      o.tucker.max_iterations = 0;
      auto v = CompressModel(original, o).value();
      auto net = PlainConvUNet::Create(v.model.info.network, v.model.weights).value();
      int skipped = 0;
      for (const auto& l : v.manifest.layers) skipped += l.factorized ? 0 : 1;
      const double t = MedianSeconds(net, x, repeats);
      if (df == 0.3 && !all) {
        OpProfile profile;
        net.Forward(x, &profile);
        profiles.emplace_back(o.VariantName(), profile);
      }
      const double mac_ratio = v.manifest.mac_ratio;
      // "realised": the share of the MAC saving that shows up as time saved.
      const double realised = (1.0 - t / base_time) / (1.0 - 1.0 / mac_ratio);
      std::printf("%-14s %12ld %9.1f %9.2fx %11.2f %8.2fx %10d %8.0f%%\n", o.VariantName().c_str(),
                  static_cast<long>(v.manifest.parameters), static_cast<double>(v.manifest.macs) / 1e9,
                  mac_ratio, t, base_time / t, skipped, 100.0 * realised);
    }
  }
  for (const auto& [name, profile] : profiles) {
    std::vector<std::pair<std::string, OpProfile::Entry>> ops(profile.entries().begin(), profile.entries().end());
    std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    std::printf("\ntime by operation, %s (one profiled pass):\n%-40s %7s %9s %9s %10s\n", name.c_str(), "op", "calls", "seconds",
                "GMACs", "GFLOP/s");
    for (const auto& [op, e] : ops) {
      std::printf("%-40s %7ld %9.3f %9.2f %10.0f\n", op.c_str(), static_cast<long>(e.calls), e.seconds, e.macs / 1e9,
                  e.macs ? 2.0 * e.macs / e.seconds / 1e9 : 0.0);
    }
  }
  return 0;
}
