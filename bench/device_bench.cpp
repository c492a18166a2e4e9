// The engine on one device against the CPU: parity on real models, then seconds per patch of the
// TotalSegmentator-shaped 3 mm network's Tucker variants in each precision. scripts/gpu-check.sh
// runs it on a GPU machine; here it runs with --device cpu (CTest `device_bench_on_cpu`), which
// checks the same code with the CPU as the device.
//
//   build/bench/device_bench --device cuda:0 [--repeats 5] [--patch Z,Y,X] [--skip-timing]
//
// Parity (exit 1 when fp32 misses it): the conformance model (tests/data/nnunet-v2-iso4), the
// bundled model and each of its variants; one seeded patch; fp32 logits within 1e-3 of the CPU's
// (max |difference| relative to max |CPU logit|) and argmax agreement >= 99.9%; fp16/bf16 report
// their agreement with fp32 on the device. Whole CT: a synthetic 512x512x60 CT predicted on the
// device and on the CPU, labels compared voxel by voxel.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <torch/utils.h>
#include <torch/version.h>

#include "synthetic_ct.h"
#include "model_store/compression/compress.h"
#include "model_store/import/nnunet_import.h"
#include "model_store/inference/predictor.h"
#include "model_store/network/device.h"
#include "model_store/network/executor.h"
#include "model_store/network/loaded_model.h"

using namespace tucker_seg;

namespace {

struct NamedModel {
  std::string name;
  ModelInfo info;
  PlainConvUNet network;
};

// Waits for the device: reading one value back synchronises a CUDA stream.
void Sync(const torch::Tensor& t) { (void)t.flatten()[0].item<float>(); }

double MedianSeconds(const NetworkExecutor& net, const torch::Tensor& x, int repeats) {
  torch::NoGradGuard no_grad;
  for (int i = 0; i < 2; ++i) Sync(net.Forward(x));  // warm-up (cuDNN picks its algorithms here)
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    Sync(net.Forward(x));
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double ArgmaxAgreement(const torch::Tensor& a, const torch::Tensor& b) {
  return a.argmax(1).eq(b.argmax(1)).to(torch::kFloat64).mean().item<double>();
}

std::vector<NamedModel> ParityModels() {
  std::vector<NamedModel> out;
  const std::string source = TUCKER_SEG_SOURCE_DIR;
  NnUNetImportOptions golden;
  golden.results_dir = source + "/tests/data/nnunet-v2-iso4/Dataset999_Golden/nnUNetTrainer__nnUNetPlans__3d_fullres";
  golden.name = "golden-iso4";
  auto imported = ImportNnUNet(golden);
  if (imported.ok()) {
    auto net = PlainConvUNet::Create(imported.value().info.network, imported.value().weights);
    if (net.ok()) out.push_back({"golden-iso4", imported.value().info, std::move(net).value()});
  } else {
    std::fprintf(stderr, "golden-iso4: %s\n", imported.status().message().c_str());
  }
  const std::string bundled = source + "/models/tucker-abdomen-3mm";
  for (const std::string variant : {"", "df0.5", "df0.3", "df0.1"}) {
    const std::string dir = variant.empty() ? bundled : bundled + "/variants/" + variant;
    auto m = LoadNetwork(dir);
    if (!m.ok()) {
      std::fprintf(stderr, "%s: %s\n", dir.c_str(), m.status().message().c_str());
      continue;
    }
    out.push_back({variant.empty() ? "abdomen-3mm" : "abdomen-3mm/" + variant, m.value().info, std::move(m.value().network)});
  }
  return out;
}

// fp32 parity per model; returns false when any model misses the bar.
bool Parity(const torch::Device& device, const std::vector<Precision>& precisions) {
  torch::NoGradGuard no_grad;
  bool ok = true;
  std::printf("parity against the CPU (fp32), one seeded patch per model\n");
  std::printf("%-22s %-14s %12s %12s %10s\n", "model", "precision", "max|diff|", "relative", "argmax");
  for (const NamedModel& m : ParityModels()) {
    const auto& p = m.info.patch_size;
    torch::manual_seed(11);
    const auto x = torch::randn({1, m.info.network.input_channels, p[0], p[1], p[2]});
    const auto reference = MakeExecutor(m.network)->Forward(x);
    const double scale = std::max(1e-12, reference.abs().max().item<double>());
    for (Precision precision : precisions) {
      const auto dtype = ScalarTypeOf(precision);
      const PlainConvUNet there = m.network.To(device, dtype);
      const auto y = MakeExecutor(there)->Forward(x.to(device).to(dtype)).to(torch::kCPU).to(torch::kFloat32);
      const double max_abs = (y - reference).abs().max().item<double>();
      const double agreement = ArgmaxAgreement(y, reference);
      const bool pass = precision != Precision::kFloat32 || (max_abs / scale <= 1e-3 && agreement >= 0.999);
      ok = ok && pass;
      std::printf("%-22s %-14s %12.3e %12.3e %9.3f%% %s\n", m.name.c_str(), PrecisionName(precision).c_str(), max_abs,
                  max_abs / scale, 100 * agreement, precision == Precision::kFloat32 ? (pass ? "ok" : "FAIL") : "");
    }
  }
  return ok;
}

bool WholeCtParity(const torch::Device& device) {
  auto m = LoadNetwork(std::string(TUCKER_SEG_SOURCE_DIR) + "/models/tucker-abdomen-3mm");
  if (!m.ok()) {
    std::fprintf(stderr, "%s\n", m.status().message().c_str());
    return false;
  }
  const CtVolume ct = bench::SyntheticCt(60);
  const auto cpu_executor = m.value().Executor();
  UNetPatchNetwork cpu_net(*cpu_executor);
  const auto start_cpu = std::chrono::steady_clock::now();
  auto on_cpu = Predict(m.value().info, cpu_net, ct, {});
  const double cpu_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_cpu).count();
  const auto device_executor = MakeExecutor(m.value().network.To(device, torch::kFloat32));
  UNetPatchNetwork device_net(*device_executor);
  PredictionOptions generic;
  generic.cpu_export_kernel = false;
  const auto start_device = std::chrono::steady_clock::now();
  auto on_device = Predict(m.value().info, device_net, ct, generic);
  const double device_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_device).count();
  if (!on_cpu.ok() || !on_device.ok()) {
    std::fprintf(stderr, "whole CT: %s\n", (on_cpu.ok() ? on_device.status() : on_cpu.status()).message().c_str());
    return false;
  }
  const auto& a = on_cpu.value().labels.voxels;
  const auto& b = on_device.value().labels.voxels;
  int64_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  const double agreement = static_cast<double>(same) / static_cast<double>(a.size());
  std::printf("\nwhole CT (synthetic 512x512x60, bundled model, %ld tiles): label agreement %.4f%%; %.2f s on the CPU, %.2f s on %s\n",
              static_cast<long>(on_device.value().tiles), 100 * agreement, cpu_seconds, device_seconds, device.str().c_str());
  return agreement >= 0.999;
}

void Timing(const torch::Device& device, const std::vector<Precision>& precisions, int repeats, const std::string& patch_arg) {
  const auto arch = ReadArchitectureFile(std::string(TUCKER_SEG_SOURCE_DIR) + "/model_store/architectures/totalseg_3mm_shaped.json");
  if (!arch.ok()) {
    std::fprintf(stderr, "%s\n", arch.status().message().c_str());
    return;
  }
  Model original;
  original.info.name = "totalseg_3mm_shaped";
  original.info.network = arch.value().network;
  original.info.patch_size = arch.value().patch_size;
  if (!patch_arg.empty()) {
    std::sscanf(patch_arg.c_str(), "%ld,%ld,%ld", &original.info.patch_size[0], &original.info.patch_size[1], &original.info.patch_size[2]);
  }
  original.weights = PlainConvUNet::RandomWeights(original.info.network, 0);
  const Int3 patch = original.info.patch_size;
  std::printf("\nTotalSegmentator-shaped 3 mm network on %s, patch %s, median of %d warm runs (random weights, rank_min 8)\n",
              device.str().c_str(), ToString(patch).c_str(), repeats);
  std::printf("%-10s %10s %10s", "variant", "GMACs", "MAC ratio");
  for (Precision p : precisions) std::printf(" %10s %8s", (PrecisionName(p) + " s").c_str(), "speed-up");
  std::printf("\n");
  std::vector<double> base(precisions.size(), 0);
  for (double df : {1.0, 0.5, 0.3, 0.1}) {
    Model model = original;
    std::string name = "original";
    double mac_ratio = 1;
    int64_t macs = 0;
    if (df < 1.0) {
      CompressionOptions o;
      o.df = df;
      o.tucker.max_iterations = 0;  // time depends on the ranks, not on the factors' values
      auto v = CompressModel(original, o);
      if (!v.ok()) {
        std::fprintf(stderr, "%s\n", v.status().message().c_str());
        return;
      }
      model = v.value().model;
      name = o.VariantName();
      mac_ratio = v.value().manifest.mac_ratio;
    }
    const PlainConvUNet net = PlainConvUNet::Create(model.info.network, model.weights).value();
    for (const auto& l : net.Cost(patch)) macs += l.macs;
    std::printf("%-10s %10.1f %9.2fx", name.c_str(), static_cast<double>(macs) / 1e9, mac_ratio);
    for (size_t i = 0; i < precisions.size(); ++i) {
      const auto dtype = ScalarTypeOf(precisions[i]);
      const PlainConvUNet there = net.To(device, dtype);
      const auto x = torch::randn({1, 1, patch[0], patch[1], patch[2]}).to(device).to(dtype);
      const double t = MedianSeconds(*MakeExecutor(there), x, repeats);
      if (df == 1.0) base[i] = t;
      std::printf(" %10.4f %7.2fx", t, base[i] / t);
    }
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string device_arg = "cpu", patch_arg;
  int repeats = 5;
  bool timing = true;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--skip-timing") timing = false;
    else if (i + 1 < argc && k == "--device") device_arg = argv[++i];
    else if (i + 1 < argc && k == "--repeats") repeats = std::max(1, std::stoi(argv[++i]));
    else if (i + 1 < argc && k == "--patch") patch_arg = argv[++i];
    else {
      std::fprintf(stderr, "usage: device_bench [--device cpu|cuda:N] [--repeats N] [--patch Z,Y,X] [--skip-timing]\n");
      return 2;
    }
  }
  auto device = ParseDevice(device_arg);
  if (!device.ok()) {
    std::fprintf(stderr, "%s\n", device.status().message().c_str());
    return 1;
  }
  PrepareDevice(device.value());
  std::vector<Precision> precisions{Precision::kFloat32};
  if (device.value().is_cuda()) precisions = {Precision::kFloat32, Precision::kFloat16, Precision::kBFloat16};
  std::printf("device %s, LibTorch %d.%d.%d, %d CPU threads\n\n", device.value().str().c_str(), TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR,
              TORCH_VERSION_PATCH, torch::get_num_threads());
  const bool parity = Parity(device.value(), precisions);
  const bool whole_ct = WholeCtParity(device.value());
  if (timing) Timing(device.value(), precisions, repeats, patch_arg);
  std::printf("\nparity: %s\n", parity && whole_ct ? "ok" : "FAILED");
  return parity && whole_ct ? 0 : 1;
}
