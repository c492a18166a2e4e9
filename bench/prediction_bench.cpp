// Whole-CT prediction with the TotalSegmentator-shaped 3 mm network (random weights, 118
// classes) on a synthetic 512 x 512 x N CT at 0.8 x 0.8 x 1.5 mm: time per stage, the network's
// share, and peak RSS. Run once per size (peak RSS is per process), ideally under /usr/bin/time -v:
//
//   /usr/bin/time -v build/bench/prediction_bench --slices 300 [--threads 2] [--step 0.5]
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

#include <torch/utils.h>

#include "model_store/inference/predictor.h"
#include "synthetic_ct.h"

using namespace tucker_seg;

namespace {

double PeakRssMiB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t slices = 300;
  int threads = 2;
  double step = 0.5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--slices") slices = std::stoll(v);
    else if (k == "--threads") threads = std::stoi(v);
    else if (k == "--step") step = std::stod(v);
  }
  torch::set_num_threads(threads);
  const auto arch = ReadArchitectureFile(std::string(TUCKER_SEG_SOURCE_DIR) + "/model_store/architectures/totalseg_3mm_shaped.json").value();
  ModelInfo info;
  info.name = "totalseg_3mm_shaped";
  info.network = arch.network;
  info.patch_size = arch.patch_size;
  info.spacing = {3.0, 3.0, 3.0};
  ChannelNormalization ch;
  ch.name = "CT";
  ch.scheme = "CTNormalization";
  ch.intensity = {100.0, 200.0, 90.0, -1024.0, 3071.0, -1000.0, 1500.0};
  info.channels = {ch};
  for (int64_t c = 0; c < info.network.num_classes; ++c) info.labels.emplace_back(c, "class_" + std::to_string(c));
  auto net = PlainConvUNet::Create(info.network, PlainConvUNet::RandomWeights(info.network, 0)).value();
  const double rss_model = PeakRssMiB();

  const CtVolume ct = bench::SyntheticCt(slices);
  const double rss_input = PeakRssMiB();
  PredictionOptions options;
  options.window.step = step;
  const auto executor = MakeExecutor(net);
  UNetPatchNetwork patch_net(*executor);
  const auto start = std::chrono::steady_clock::now();
  auto p = Predict(info, patch_net, ct, options);
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!p.ok()) {
    std::fprintf(stderr, "%s\n", p.status().message().c_str());
    return 1;
  }
  const auto& t = p.value().timings;
  std::printf("CT 512x512x%ld at 0.8x0.8x1.5 mm (%.0f MiB as float32), TotalSegmentator-shaped 3 mm network, 118 classes,\n"
              "step %.2f, %d threads: network grid %s, %ld tiles\n\n",
              static_cast<long>(slices), ct.voxels.size() * 4.0 / (1 << 20), step, threads, ToString(p.value().network_shape).c_str(),
              static_cast<long>(p.value().tiles));
  std::printf("%-36s %9s %7s\n", "stage", "seconds", "share");
  const std::pair<const char*, double> rows[] = {{"preprocess (crop, normalise, resample)", t.preprocess_seconds},
                                                 {"network", t.network_seconds},
                                                 {"aggregation (Gaussian weighting)", t.aggregation_seconds},
                                                 {"export (resample back, argmax)", t.export_seconds}};
  for (const auto& [name, s] : rows) std::printf("%-36s %9.2f %6.1f%%\n", name, s, 100.0 * s / total);
  std::printf("%-36s %9.2f\n\n", "total", total);
  std::printf("peak RSS: %.0f MiB (after building the network %.0f MiB, with the input CT %.0f MiB; output labels %.0f MiB;\n"
              "sliding-window logits buffer %.0f MiB; all 118-class logits at network resolution would be %.0f MiB)\n",
              PeakRssMiB(), rss_model, rss_input, ct.voxels.size() / double(1 << 20), p.value().peak_logits_bytes / double(1 << 20),
              118.0 * 4 * p.value().network_shape[0] * p.value().network_shape[1] * p.value().network_shape[2] / (1 << 20));
  return 0;
}
