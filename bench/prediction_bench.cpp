// Whole-CT prediction with the TotalSegmentator-shaped 3 mm network (random weights, 118
// classes) and its Tucker variants on a synthetic 512 x 512 x N CT at 0.8 x 0.8 x 1.5 mm: per
// variant, in one run, the wall time, each stage's time and share, the network's time per tile
// against one patch's forward time, the first call's graph build, and peak RSS. Each variant
// runs in its own process (peak RSS is per process); prints tables, asserts nothing.
//
//   build/bench/prediction_bench [--slices 300] [--threads 2] [--step 0.5] [--variants original,df0.3]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <torch/utils.h>

#include "model_store/compression/compress.h"
#include "model_store/inference/predictor.h"
#include "synthetic_ct.h"

using namespace tucker_seg;

namespace {

using SteadyClock = std::chrono::steady_clock;

double PeakRssMiB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

double Since(SteadyClock::time_point start) { return std::chrono::duration<double>(SteadyClock::now() - start).count(); }

Model RandomTotalSegmentatorShaped() {
  const auto arch = ReadArchitectureFile(std::string(TUCKER_SEG_SOURCE_DIR) + "/model_store/architectures/totalseg_3mm_shaped.json").value();
  Model m;
  ModelInfo& info = m.info;
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
  m.weights = PlainConvUNet::RandomWeights(info.network, 0);
  return m;
}

// One variant in this process: "key=value" pairs on one line for the parent.
int RunVariant(const std::string& variant, int64_t slices, double step) {
  Model model = RandomTotalSegmentatorShaped();
  if (variant != "original") {
    CompressionOptions o;
    o.df = std::stod(variant.substr(2));  // "df0.3"
    o.tucker.max_iterations = 0;
    model = CompressModel(model, o).value().model;
  }
  const ModelInfo& info = model.info;
  const auto executor = MakeExecutor(PlainConvUNet::Create(info.network, model.weights).value());
  const CtVolume ct = bench::SyntheticCt(slices);
  // The engine's graph for the patch is built before the prediction, as a server keeps it warm.
  const Int3 p = info.patch_size;
  auto start = SteadyClock::now();
  if (const Status served = executor->Serves(p); !served.ok()) std::fprintf(stderr, "%s\n", served.message().c_str());
  const double graph = Since(start);
  PredictionOptions options;
  options.window.step = step;
  UNetPatchNetwork patch_net(*executor);
  start = SteadyClock::now();
  auto prediction = Predict(info, patch_net, ct, options);
  const double total = Since(start);
  if (!prediction.ok()) {
    std::fprintf(stderr, "%s\n", prediction.status().message().c_str());
    return 1;
  }
  const double rss = PeakRssMiB();  // before the patch below writes a tile of logits of its own
  // One patch forward (logits written as a tile), warm: the best of two.
  const auto x = torch::randn({1, 1, p[0], p[1], p[2]});
  std::vector<double> warm;
  for (int i = 0; i < 2; ++i) {
    start = SteadyClock::now();
    executor->Forward(x);
    warm.push_back(Since(start));
  }
  const double patch = *std::min_element(warm.begin(), warm.end());
  const Prediction& r = prediction.value();
  const auto& t = r.timings;
  std::printf("total=%f preprocess=%f network=%f aggregation=%f export=%f tiles=%ld patch=%f graph=%f rss=%f interpolated=%f grid=%s\n",
              total, t.preprocess_seconds, t.network_seconds, t.aggregation_seconds, t.export_seconds, static_cast<long>(r.tiles), patch,
              graph, rss, r.exported_voxels ? static_cast<double>(r.interpolated_voxels) / r.exported_voxels : 0.0,
              ToString(r.network_shape).c_str());
  return 0;
}

std::map<std::string, std::string> ParseResult(const std::string& line) {
  std::map<std::string, std::string> out;
  std::istringstream in(line);
  for (std::string pair; in >> pair;) {
    const auto eq = pair.find('=');
    if (eq != std::string::npos) out[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t slices = 300;
  int threads = 2;
  double step = 0.5;
  std::string variants = "original,df0.3", only;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--slices") slices = std::stoll(v);
    else if (k == "--threads") threads = std::stoi(v);
    else if (k == "--step") step = std::stod(v);
    else if (k == "--variants") variants = v;
    else if (k == "--variant") only = v;
  }
  torch::set_num_threads(threads);
  if (!only.empty()) return RunVariant(only, slices, step);

  std::printf("CT 512x512x%ld at 0.8x0.8x1.5 mm, TotalSegmentator-shaped 3 mm network (random weights, 118 classes), step %.2f, "
              "%d threads; each variant in its own process\n",
              static_cast<long>(slices), step, threads);
  std::vector<std::pair<std::string, std::map<std::string, std::string>>> results;
  std::stringstream names(variants);
  for (std::string variant; std::getline(names, variant, ',');) {
    const std::string command = std::string(argv[0]) + " --variant " + variant + " --slices " + std::to_string(slices) + " --threads " +
                                std::to_string(threads) + " --step " + std::to_string(step);
    FILE* child = popen(command.c_str(), "r");
    std::string output;
    char buffer[4096];
    while (child && fgets(buffer, sizeof buffer, child)) output += buffer;
    if (!child || pclose(child) != 0 || output.find("total=") == std::string::npos) {
      std::fprintf(stderr, "%s failed: %s\n", variant.c_str(), output.c_str());
      return 1;
    }
    results.emplace_back(variant, ParseResult(output.substr(output.find("total="))));
  }
  auto value = [](const std::map<std::string, std::string>& r, const char* key) { return std::stod(r.at(key)); };
  std::printf("network grid %s, %s tiles\n\n", results[0].second.at("grid").c_str(), results[0].second.at("tiles").c_str());
  std::printf("%-10s %8s %8s %8s %8s %8s %8s %9s %9s %9s %9s %9s %9s\n", "variant", "total s", "prep s", "network", "aggr s", "export",
              "outside", "s/tile", "patch s", "tile/patch", "graph s", "interp %", "peak MiB");
  for (const auto& [name, r] : results) {
    const double total = value(r, "total"), network = value(r, "network"), tiles = value(r, "tiles");
    std::printf("%-10s %8.2f %8.2f %8.2f %8.2f %8.2f %7.0f%% %9.3f %9.3f %9.2f %9.2f %8.1f%% %9.0f\n", name.c_str(), total,
                value(r, "preprocess"), network, value(r, "aggregation"), value(r, "export"), 100.0 * (total - network) / total,
                network / tiles, value(r, "patch"), network / tiles / value(r, "patch"), value(r, "graph"), 100.0 * value(r, "interpolated"),
                value(r, "rss"));
  }
  if (results.size() > 1) {
    const double base = value(results[0].second, "total");
    std::printf("\nend to end against %s:", results[0].first.c_str());
    for (size_t i = 1; i < results.size(); ++i) std::printf("  %s %.2fx", results[i].first.c_str(), base / value(results[i].second, "total"));
    std::printf("\n");
  }
  return 0;
}
