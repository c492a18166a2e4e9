// Tucker variants of the TotalSegmentator-shaped 3 mm network on CPU, in one run: the machine's
// GEMM peak, each variant's seconds per patch (repeats interleaved), GFLOP/s and share of the peak,
// speed-up over the original beside the MAC ratio, 1- vs N-thread scaling, bf16, LibTorch's ops
// (the path the engine replaced), int8 (calibrated on another random patch; float32 and int8
// interleaved) and where the time goes. Random weights and HOSVD-only factors:
// time depends on the ranks, not on the values.
//
//   build/bench/tucker_variants_bench [--threads 2] [--repeats 3] [--patch Z,Y,X] [--libtorch 0|1]
//                                     [--bf16 0|1] [--int8 0|1] [--save DIR]   (DIR: the networks and, with
//                                     --int8 1, their int8 variants <name>-int8, for bench/peer/)
//                                     [--profile-only 1]   (one warm profiled pass per variant, nothing else)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/utils.h>

#include "model_store/compression/compress.h"
#include "model_store/format/variant_manifest.h"
#include "model_store/cpu_engine/gemm_peak.h"
#include "model_store/cpu_engine/onednn_graph.h"
#include "model_store/network/executor.h"
#include "model_store/network/int8_calibration.h"
#include "model_store/network/runtime.h"

using namespace tucker_seg;

namespace {

double Seconds(const NetworkExecutor& net, const torch::Tensor& x) {
  const auto start = std::chrono::steady_clock::now();
  net.Forward(x);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct Row {
  std::string name;
  std::shared_ptr<const NetworkExecutor> net;  // the CPU engine, float32
  int64_t parameters = 0, macs = 0;
  double mac_ratio = 1;
  double first = 0;            // the first run: builds the engine graph
  std::vector<double> times;   // warm runs
  std::shared_ptr<const NetworkExecutor> int8 = nullptr;  // the same network calibrated for int8 (--int8 1)
  ModelInfo info{};  // what --save writes
  double Min() const { return *std::min_element(times.begin(), times.end()); }
  double Median() const {
    std::vector<double> t = times;
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }
};

std::shared_ptr<const NetworkExecutor> WithOptions(const NetworkExecutor& net, Backend backend, bool bf16) {
  ExecutorOptions o;
  o.backend = backend;
  o.cpu_bf16 = bf16;
  return MakeExecutor(net.network(), o);
}

// Mean over classes (present in either) of the Dice between two label maps.
double MeanDice(const torch::Tensor& a, const torch::Tensor& b, int64_t classes) {
  double sum = 0;
  int n = 0;
  for (int64_t c = 0; c < classes; ++c) {
    const auto pa = a.eq(c), pb = b.eq(c);
    const double both = pa.logical_and(pb).sum().item<double>(), total = pa.sum().item<double>() + pb.sum().item<double>();
    if (total == 0) continue;
    sum += 2 * both / total;
    ++n;
  }
  return n ? sum / n : 1.0;
}

void PrintProfile(const std::string& name, const NetworkExecutor& net, const torch::Tensor& x, double peak) {
  OpProfile profile;
  const auto start = std::chrono::steady_clock::now();
  net.Forward(x, &profile);
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<std::pair<std::string, OpProfile::Entry>> ops(profile.entries().begin(), profile.entries().end());
  std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  std::printf("\ntime by operation, %s (one profiled pass, %.2f s):\n%-34s %6s %9s %9s %9s %7s\n", name.c_str(), total, "op", "calls",
              "seconds", "GMACs", "GFLOP/s", "% peak");
  for (const auto& [op, e] : ops) {
    const double gflops = e.macs ? 2.0 * e.macs / e.seconds / 1e9 : 0.0;
    std::printf("%-34s %6ld %9.3f %9.2f %9.0f %6.0f%%\n", op.c_str(), static_cast<long>(e.calls), e.seconds, e.macs / 1e9, gflops,
                100.0 * gflops / peak);
  }
}

}  // namespace

int main(int argc, char** argv) {
  TuneAllocatorForTensors();  // as the programs do
  int threads = 2, repeats = 3;
  bool libtorch = true, bf16 = cpu_engine::CpuHasBFloat16();
  std::string patch_arg, save_dir;
  bool profile_only = false, int8 = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--threads") threads = std::stoi(v);
    else if (k == "--repeats") repeats = std::max(1, std::stoi(v));
    else if (k == "--patch") patch_arg = v;
    else if (k == "--libtorch") libtorch = v != "0";
    else if (k == "--bf16") bf16 = v != "0";
    else if (k == "--int8") int8 = v != "0";
    else if (k == "--save") save_dir = v;
    else if (k == "--profile-only") profile_only = v != "0";
  }
  torch::set_num_threads(threads);
  const auto arch = ReadArchitectureFile(std::string(TUCKER_SEG_SOURCE_DIR) + "/model_store/architectures/totalseg_3mm_shaped.json").value();
  Model original;
  original.info.name = "totalseg_3mm_shaped";
  original.info.network = arch.network;
  original.info.patch_size = arch.patch_size;
  original.info.spacing = {3.0, 3.0, 3.0};  // what a saved folder needs to load (--save)
  ChannelNormalization ct;
  ct.name = "CT";
  ct.scheme = "CTNormalization";
  ct.intensity = {100.0, 200.0, 90.0, -1024.0, 3071.0, -1000.0, 1500.0};
  original.info.channels = {ct};
  for (int64_t c = 0; c < arch.network.num_classes; ++c) original.info.labels.emplace_back(c, "class_" + std::to_string(c));
  if (!patch_arg.empty()) {
    std::sscanf(patch_arg.c_str(), "%ld,%ld,%ld", &original.info.patch_size[0], &original.info.patch_size[1], &original.info.patch_size[2]);
  }
  original.weights = PlainConvUNet::RandomWeights(original.info.network, 0);
  const Int3 patch = original.info.patch_size;

  const auto peak = cpu_engine::MeasureGemmPeak();
  std::printf("TotalSegmentator-shaped 3 mm network, patch %s, %d threads, rank_min 8\n", ToString(patch).c_str(), threads);
  std::printf("machine limit: oneDNN matmul 4096^3 float32 = %.0f GFLOP/s (%s)\n", peak.gflops, peak.kernel.c_str());
  if (bf16) {
    const auto peak16 = cpu_engine::MeasureGemmPeak(4096, 3, true);
    std::printf("               oneDNN matmul 4096^3 bf16    = %.0f GFLOP/s (%s)\n", peak16.gflops, peak16.kernel.c_str());
  }

  std::vector<Row> rows;
  {
    Row r{"original", MakeExecutor(PlainConvUNet::Create(original.info.network, original.weights).value()), 0, 0, 1.0, 0.0, {}};
    for (const auto& l : r.net->network().Cost(patch)) r.macs += l.macs;
    r.parameters = r.net->network().NumParameters();
    r.info = original.info;
    rows.push_back(std::move(r));
  }
  for (double df : {0.5, 0.3, 0.1}) {
    CompressionOptions o;
    o.df = df;
    o.tucker.max_iterations = 0;
    auto v = CompressModel(original, o).value();
    if (!save_dir.empty()) (void)SaveModel(v.model, save_dir + "/" + o.VariantName());
    Row r{o.VariantName(), MakeExecutor(PlainConvUNet::Create(v.model.info.network, v.model.weights).value()), 0, 0, 1.0, 0.0, {}};
    r.parameters = v.manifest.parameters;
    r.macs = v.manifest.macs;
    r.mac_ratio = v.manifest.mac_ratio;
    r.info = v.model.info;
    rows.push_back(std::move(r));
  }
  if (!save_dir.empty()) (void)SaveModel(original, save_dir + "/original");

  torch::manual_seed(1);
  const auto x = torch::randn({1, 1, patch[0], patch[1], patch[2]});
  if (profile_only) {
    for (auto& r : rows) {
      (void)Seconds(*r.net, x);
      PrintProfile(r.name, *r.net, x, peak.gflops);
    }
    return 0;
  }
  for (auto& r : rows) r.first = Seconds(*r.net, x);
  for (int rep = 0; rep < repeats; ++rep)
    for (auto& r : rows) r.times.push_back(Seconds(*r.net, x));

  const double base = rows[0].Median();
  std::printf("\nengine, float32, %d warm runs each, interleaved (first run: builds the graph):\n", repeats);
  std::printf("%-9s %11s %8s %9s %8s %8s %8s %8s %7s %9s\n", "variant", "parameters", "GMACs", "MAC ratio", "first s", "min s",
              "median s", "GFLOP/s", "% peak", "speed-up");
  for (const auto& r : rows) {
    const double gflops = 2.0 * r.macs / r.Median() / 1e9;
    std::printf("%-9s %11ld %8.1f %8.2fx %8.2f %8.3f %8.3f %8.0f %6.0f%% %8.2fx\n", r.name.c_str(), static_cast<long>(r.parameters),
                r.macs / 1e9, r.mac_ratio, r.first, r.Min(), r.Median(), gflops, 100.0 * gflops / peak.gflops, base / r.Median());
  }

  // Thread scaling: the same networks on one thread.
  at::set_num_threads(1);
  std::printf("\nthread scaling (median of %d, after one warm-up):\n%-9s %10s %10s %8s\n", std::max(1, repeats - 1), "variant",
              "1 thread s", (std::to_string(threads) + " threads s").c_str(), "scaling");
  for (auto& r : rows) {
    (void)Seconds(*r.net, x);
    std::vector<double> t;
    for (int i = 0; i < std::max(1, repeats - 1); ++i) t.push_back(Seconds(*r.net, x));
    std::sort(t.begin(), t.end());
    std::printf("%-9s %10.3f %10.3f %7.2fx\n", r.name.c_str(), t[t.size() / 2], r.Median(), t[t.size() / 2] / r.Median());
  }
  at::set_num_threads(threads);

  if (bf16) {
    std::printf("\nengine, bf16 (activations and weights; statistics and logits float32), median of %d:\n", repeats);
    std::printf("%-9s %8s %10s %10s %18s\n", "variant", "bf16 s", "vs fp32", "vs original", "argmax mean Dice");
    for (auto& r : rows) {
      const auto half = WithOptions(*r.net, Backend::kAuto, true);
      (void)Seconds(*half, x);
      std::vector<double> t;
      for (int i = 0; i < repeats; ++i) t.push_back(Seconds(*half, x));
      std::sort(t.begin(), t.end());
      const auto ref = r.net->Forward(x).argmax(1).clone(), got = half->Forward(x).argmax(1);
      std::printf("%-9s %8.3f %9.2fx %9.2fx %18.4f\n", r.name.c_str(), t[t.size() / 2], r.Median() / t[t.size() / 2], base / t[t.size() / 2],
                  MeanDice(got, ref, r.net->network().config().num_classes));
    }
  }

  if (int8) {
    // Static calibration as `tucker-seg-models quantize` does it (99.99th percentile per channel),
    // on a patch the comparison does not use.
    torch::manual_seed(2);
    const auto calibration_tile = torch::randn({1, 1, patch[0], patch[1], patch[2]});
    std::printf("\nengine, int8 (s8 inputs and weights of 3x3x3 convolutions and Tucker cores; norms, projections, transposed\n"
                "convolutions and logits float32), %d runs each interleaved with float32:\n", repeats);
    std::printf("%-9s %8s %8s %10s %10s %13s %15s %16s\n", "variant", "fp32 s", "int8 s", "vs fp32", "vs original", "int8 layers",
                "max rel. diff", "argmax agreement");
    for (auto& r : rows) {
      InputRangeRecorder recorder(99.99);
      (void)MakeRecordingExecutor(r.net->network(), &recorder)->Forward(calibration_tile);
      ExecutorOptions o;
      o.int8 = std::make_shared<const ActivationBounds>(recorder.bounds());
      const auto quantized = r.int8 = MakeExecutor(r.net->network(), o);
      if (!save_dir.empty()) {  // what `tucker-seg-models quantize` writes, calibrated on this bench's patch
        VariantManifest float32;
        float32.variant = r.name;
        float32.model = original.info.name;
        float32.patch_size = patch;
        float32.parameters = r.parameters;
        float32.macs = r.macs;
        float32.original_parameters = rows[0].parameters;
        float32.original_macs = rows[0].macs;
        float32.mac_ratio = r.mac_ratio;
        const VariantManifest m = Int8VariantManifest(
            float32, {"percentile", 99.99, {"random normal patch, seed 2"}, recorder.tiles(), recorder.bounds()});
        const Model saved{r.info, r.net->network().Weights()};
        (void)SaveModel(saved, save_dir + "/" + m.variant);
        (void)WriteVariantManifest(m, save_dir + "/" + m.variant);
      }
      if (const Status served = quantized->Serves(patch); !served.ok()) {
        std::printf("%-9s int8 not run: %s\n", r.name.c_str(), served.message().c_str());
        continue;
      }
      (void)Seconds(*quantized, x);
      std::vector<double> fp32, q;
      for (int i = 0; i < repeats; ++i) {
        fp32.push_back(Seconds(*r.net, x));
        q.push_back(Seconds(*quantized, x));
      }
      std::sort(fp32.begin(), fp32.end());
      std::sort(q.begin(), q.end());
      const double fp32_s = fp32[fp32.size() / 2], q_s = q[q.size() / 2];
      const torch::Tensor ref = r.net->Forward(x).clone(), got = quantized->Forward(x);
      const double rel = (got - ref).abs().max().item<double>() / ref.abs().max().item<double>();
      const double agree = got.argmax(1).eq(ref.argmax(1)).to(torch::kFloat32).mean().item<double>();
      std::printf("%-9s %8.3f %8.3f %9.2fx %9.2fx %13zu %15.4f %15.2f%%\n", r.name.c_str(), fp32_s, q_s, fp32_s / q_s, base / q_s,
                  o.int8->size(), rel, 100 * agree);
    }
  }

  if (libtorch) {
    std::printf("\nLibTorch's ops with matmul rewrites (what the engine replaced), one warm run:\n%-9s %10s %12s\n", "variant",
                "seconds", "engine gain");
    for (const auto& r : rows) {
      const auto old = WithOptions(*r.net, Backend::kLibTorch, false);
      (void)Seconds(*old, x);
      const double t = Seconds(*old, x);
      std::printf("%-9s %10.2f %11.2fx\n", r.name.c_str(), t, t / r.Median());
    }
  }

  PrintProfile("original", *rows[0].net, x, peak.gflops);
  PrintProfile("df0.3", *rows[2].net, x, peak.gflops);
  if (rows[0].int8) PrintProfile("original int8", *rows[0].int8, x, peak.gflops);
  if (rows[2].int8) PrintProfile("df0.3 int8", *rows[2].int8, x, peak.gflops);
  return 0;
}
