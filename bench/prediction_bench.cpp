// Whole-CT prediction with the TotalSegmentator-shaped 3 mm network (random weights, 118
// classes), or the five 1.5 mm parts of TotalSegmentator's `total` task as one composite
// (--network 1.5mm-part --parts 5), and their Tucker variants on a synthetic 512 x 512 x N CT at 0.8 x 0.8 x 1.5 mm: per
// variant, in one run, the wall time, each stage's time and share, the network's time per tile
// against one patch's forward time, the first call's graph build, and peak RSS. Each variant
// runs in its own process (peak RSS is per process); prints tables, asserts nothing.
//
//   build/bench/prediction_bench [--slices 300] [--threads 2] [--step 0.5] [--variants original,df0.3]
//                                [--network 3mm|1.5mm-part] [--parts 1] [--files DIR]
// --files DIR: the CT is written to DIR/ct.nii.gz once (float32, gzipped); each variant reads it
// and writes its label map there, both timed ("file to file").
// A variant named with ":window" (original:window) has the sliding window add each tile of logits
// instead of the engine's head.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <torch/utils.h>

#include "image_io/image_io.h"
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

// The networks the bench runs: TotalSegmentator's 3 mm model (118 classes) or one part of its
// 1.5 mm five-part `total` task (25 outputs each), random weights.
struct Shape {
  std::string architecture;
  double spacing;
};
Shape ShapeNamed(const std::string& network) {
  if (network == "1.5mm-part") return {"totalseg_1p5mm_part_shaped", 1.5};
  return {"totalseg_3mm_shaped", 3.0};
}

Model RandomModel(const Shape& shape, uint64_t seed) {
  const auto arch = ReadArchitectureFile(std::string(TUCKER_SEG_SOURCE_DIR) + "/model_store/architectures/" + shape.architecture + ".json").value();
  Model m;
  ModelInfo& info = m.info;
  info.name = shape.architecture;
  info.network = arch.network;
  info.patch_size = arch.patch_size;
  info.spacing = {shape.spacing, shape.spacing, shape.spacing};
  ChannelNormalization ch;
  ch.name = "CT";
  ch.scheme = "CTNormalization";
  ch.intensity = {100.0, 200.0, 90.0, -1024.0, 3071.0, -1000.0, 1500.0};
  info.channels = {ch};
  for (int64_t c = 0; c < info.network.num_classes; ++c) info.labels.emplace_back(c, "class_" + std::to_string(c));
  m.weights = PlainConvUNet::RandomWeights(info.network, seed);
  return m;
}

// Parts that label disjoint class ranges, merged in order (as composite.json's parts are).
CompositeModel DisjointComposite(const Model& part, int parts) {
  CompositeModel c;
  c.name = "composite";
  c.labels.emplace_back(0, "background");
  const auto outputs = static_cast<int>(part.info.labels.size());
  for (int p = 0; p < parts; ++p) {
    c.parts.push_back("part" + std::to_string(p + 1));
    std::vector<uint8_t> ids(static_cast<size_t>(outputs), 0);
    for (int k = 1; k < outputs; ++k) {
      ids[k] = static_cast<uint8_t>(p * (outputs - 1) + k);
      c.labels.emplace_back(ids[k], c.parts.back() + "_class_" + std::to_string(k));
    }
    c.to_composite_id.push_back(ids);
  }
  return c;
}

// One variant in this process (each of `parts` networks with its own random weights, all held as
// a composite's are): "key=value" pairs on one line for the parent.
// `files`: read the CT from <files>/ct.nii.gz and write the label map to <files>/<variant>.nii.gz,
// both timed (empty: the CT is made in memory and nothing is written).
int RunVariant(const std::string& name, const Shape& shape, int parts, int64_t slices, double step, const std::string& files) {
  const std::string variant = name.substr(0, name.find(':'));
  const bool window_sum = name.size() > variant.size() && name.substr(variant.size()) == ":window";
  double read = 0, write = 0;
  CtVolume ct;
  if (files.empty()) {
    ct = bench::SyntheticCt(slices);
  } else {
    const auto start = SteadyClock::now();
    auto loaded = ReadCt(files + "/ct.nii.gz");
    read = Since(start);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().message().c_str());
      return 1;
    }
    ct = std::move(loaded).value();
  }
  std::vector<Model> models;
  std::vector<std::shared_ptr<const NetworkExecutor>> executors;
  for (int part = 0; part < parts; ++part) {
    Model model = RandomModel(shape, static_cast<uint64_t>(part));
    if (variant != "original") {
      CompressionOptions o;
      o.df = std::stod(variant.substr(2));  // "df0.3"
      o.tucker.max_iterations = 0;
      model = CompressModel(model, o).value().model;
    }
    executors.push_back(MakeExecutor(PlainConvUNet::Create(model.info.network, model.weights).value()));
    models.push_back(std::move(model));
  }
  const CompositeModel composite = DisjointComposite(models[0], parts);
  const Int3 p = models[0].info.patch_size;
  PredictionOptions options;
  options.window.step = step;
  Prediction combined;
  double total = 0, graph = 0;
  int64_t exported = 0, interpolated = 0;
  std::string part_seconds;
  for (int part = 0; part < parts; ++part) {
    // The engine's graph for the patch is built before the prediction, as a server keeps it warm.
    auto start = SteadyClock::now();
    if (const Status served = executors[part]->Serves(p); !served.ok()) std::fprintf(stderr, "%s\n", served.message().c_str());
    graph += Since(start);
    const UNetPatchNetwork engine(*executors[part]);
    const ForwardOnly forward_only(engine);
    const PatchNetwork& patch_net = window_sum ? static_cast<const PatchNetwork&>(forward_only) : engine;
    start = SteadyClock::now();
    // The last part consumes the CT, as `predict` does: its voxels are freed after preprocessing.
    auto prediction = part + 1 == parts ? Predict(models[part].info, patch_net, std::move(ct), options)
                                        : Predict(models[part].info, patch_net, ct, options);
    if (!prediction.ok()) {
      std::fprintf(stderr, "%s\n", prediction.status().message().c_str());
      return 1;
    }
    if (parts > 1) executors[part]->ReleaseIdleMemory();  // as `predict` does between a composite's parts
    exported += prediction.value().exported_voxels;
    interpolated += prediction.value().interpolated_voxels;
    if (parts == 1) {
      combined = std::move(prediction).value();  // no merge: the labels are not copied
    } else if (const Status added = AddPartPrediction(composite, static_cast<size_t>(part), prediction.value(), &combined); !added.ok()) {
      std::fprintf(stderr, "%s\n", added.message().c_str());
      return 1;
    }
    const double seconds = Since(start);
    total += seconds;
    part_seconds += (part ? "," : "") + std::to_string(seconds);
  }
  if (!files.empty()) {
    const auto start = SteadyClock::now();
    if (const Status written = WriteLabelMap(files + "/" + name + ".nii.gz", combined.labels); !written.ok()) {
      std::fprintf(stderr, "%s\n", written.message().c_str());
      return 1;
    }
    write = Since(start);
  }
  const double rss = PeakRssMiB();  // before the patch below writes a tile of logits of its own
  // One patch forward (logits written as a tile), warm: the best of two.
  const auto x = torch::randn({1, 1, p[0], p[1], p[2]});
  std::vector<double> warm;
  for (int i = 0; i < 2; ++i) {
    const auto start = SteadyClock::now();
    executors[0]->Forward(x);
    warm.push_back(Since(start));
  }
  const double patch = *std::min_element(warm.begin(), warm.end());
  const auto& t = combined.timings;
  std::printf("read=%f write=%f total=%f preprocess=%f network=%f aggregation=%f export=%f tiles=%ld patch=%f graph=%f rss=%f interpolated=%f "
              "grid=%s parts=%s\n",
              read, write, total, t.preprocess_seconds, t.network_seconds, t.aggregation_seconds, t.export_seconds, static_cast<long>(combined.tiles), patch,
              graph, rss, exported ? static_cast<double>(interpolated) / exported : 0.0, ToString(combined.network_shape).c_str(),
              part_seconds.c_str());
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
  std::string variants = "original,df0.3", only, network = "3mm", files;
  int parts = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--slices") slices = std::stoll(v);
    else if (k == "--threads") threads = std::stoi(v);
    else if (k == "--step") step = std::stod(v);
    else if (k == "--variants") variants = v;
    else if (k == "--variant") only = v;
    else if (k == "--network") network = v;
    else if (k == "--parts") parts = std::stoi(v);
    else if (k == "--files") files = v;
  }
  if (network != "3mm" && network != "1.5mm-part") {
    std::fprintf(stderr, "--network must be 3mm or 1.5mm-part\n");
    return 2;
  }
  if (parts < 1 || parts > 10) {
    std::fprintf(stderr, "--parts must be 1..10\n");
    return 2;
  }
  const Shape shape = ShapeNamed(network);
  torch::set_num_threads(threads);
  if (!only.empty()) return RunVariant(only, shape, parts, slices, step, files);
  if (!files.empty()) {  // the CT on disk once, as a scanner's export would leave it (float32, gzipped)
    std::filesystem::create_directories(files);
    if (const Status s = WriteCt(files + "/ct.nii.gz", bench::SyntheticCt(slices)); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.message().c_str());
      return 1;
    }
  }

  std::printf("CT 512x512x%ld at 0.8x0.8x1.5 mm, %d x %s (random weights), step %.2f, %d threads; each variant in its own process\n",
              static_cast<long>(slices), parts, shape.architecture.c_str(), step, threads);
  std::vector<std::pair<std::string, std::map<std::string, std::string>>> results;
  std::stringstream names(variants);
  for (std::string variant; std::getline(names, variant, ',');) {
    const std::string command = std::string(argv[0]) + " --variant " + variant + " --slices " + std::to_string(slices) + " --threads " +
                                std::to_string(threads) + " --step " + std::to_string(step) + " --network " + network +
                                " --parts " + std::to_string(parts) + (files.empty() ? "" : " --files " + files);
    FILE* child = popen(command.c_str(), "r");
    std::string output;
    char buffer[4096];
    while (child && fgets(buffer, sizeof buffer, child)) output += buffer;
    if (!child || pclose(child) != 0 || output.find("read=") == std::string::npos) {
      std::fprintf(stderr, "%s failed: %s\n", variant.c_str(), output.c_str());
      return 1;
    }
    results.emplace_back(variant, ParseResult(output.substr(output.find("read="))));
  }
  auto value = [](const std::map<std::string, std::string>& r, const char* key) { return std::stod(r.at(key)); };
  std::printf("network grid %s, %s tiles\n\n", results[0].second.at("grid").c_str(), results[0].second.at("tiles").c_str());
  // "total" is the prediction (Predict); with --files, "file to file" adds reading the CT and
  // writing the label map, and the share outside the network is of that.
  const auto file_to_file = [&](const std::map<std::string, std::string>& r) { return value(r, "read") + value(r, "total") + value(r, "write"); };
  std::printf("%-14s %8s %7s %8s %8s %8s %7s %7s %8s %8s %8s %8s %8s %9s %9s %9s\n", "variant", "file s", "read s", "total s", "prep s",
              "network", "aggr s", "export", "write s", "outside", "s/tile", "patch s", "tile/pat", "graph s", "interp %", "peak MiB");
  for (const auto& [name, r] : results) {
    const double whole = file_to_file(r), network = value(r, "network"), tiles = value(r, "tiles");
    std::printf("%-14s %8.2f %7.2f %8.2f %8.2f %8.2f %7.2f %7.2f %8.2f %7.0f%% %8.3f %8.3f %8.2f %8.2f %8.1f%% %9.0f\n", name.c_str(), whole,
                value(r, "read"), value(r, "total"), value(r, "preprocess"), network, value(r, "aggregation"), value(r, "export"),
                value(r, "write"), 100.0 * (whole - network) / whole, network / tiles, value(r, "patch"), network / tiles / value(r, "patch"),
                value(r, "graph"), 100.0 * value(r, "interpolated"), value(r, "rss"));
  }
  if (parts > 1) {
    std::printf("\nseconds per part:\n");
    for (const auto& [name, r] : results) std::printf("%-14s %s\n", name.c_str(), r.at("parts").c_str());
  }
  if (results.size() > 1) {
    std::printf("\n%s against %s:", files.empty() ? "prediction" : "file to file", results[0].first.c_str());
    for (size_t i = 1; i < results.size(); ++i) {
      std::printf("  %s %.2fx", results[i].first.c_str(), file_to_file(results[0].second) / file_to_file(results[i].second));
    }
    std::printf("\n");
  }
  return 0;
}
