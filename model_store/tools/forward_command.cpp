// forward: the network on one raw float32 patch, logits out (and compared to a reference).
#include <algorithm>
#include <chrono>
#include <iomanip>
#include <memory>

#include <torch/utils.h>

#include "model_store/format/raw_tensor.h"
#include "model_store/network/loaded_model.h"
#include "model_store/tools/command.h"

namespace tucker_seg::tools {

Command AddForwardCommand(CLI::App& parent) {
  struct Flags {
    std::string model, input, output, reference;
    std::optional<Int3> patch;
    DeviceFlags device;
    int repeats = 1;
    bool libtorch = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = parent.add_subcommand(
      "forward", "Run the network on one raw float32 patch (1, C, Z, Y, X) and write the logits; with --reference, print "
                 "the largest absolute difference to it.");
  app->add_option("model", f->model, "Model or variant folder")->required();
  app->add_option("-i,--input", f->input, "Raw little-endian float32 input")->required();
  app->add_option("-o,--output", f->output, "Raw float32 logits to write")->required();
  AddPatchOption(app, &f->patch, "Patch size of the input (default: the model's)");
  app->add_option("--reference", f->reference, "Raw float32 logits to compare with");
  AddDeviceOptions(app, &f->device);
  app->add_option("--repeats", f->repeats, "With N > 1: run N more times after the first and print the median of those warm runs")
      ->check(CLI::Range(1, 1000));
  app->add_flag("--libtorch", f->libtorch, "LibTorch's ops instead of the CPU engine (the reference path)");

  return {app, [f](std::ostream& out, std::ostream& err) {
            auto model = LoadNetworkOn(f->model, f->device);
            if (!model.ok()) return command_line::Fail(err, model.status());
            const ModelInfo& info = model.value().info;
            const Int3 patch = f->patch.value_or(info.patch_size);
            auto x = ReadRawFloat32(f->input, {1, info.network.input_channels, patch[0], patch[1], patch[2]});
            if (!x.ok()) return command_line::Fail(err, x.status());
            const PlainConvUNet& net = model.value().network;
            ExecutorOptions execution = model.value().execution;
            if (f->libtorch) execution.backend = Backend::kLibTorch;
            const auto executor = MakeExecutor(net, execution);
            const torch::Tensor input = x.value().to(net.device()).to(net.dtype());
            // One timed run: the logits on the CPU in float32 (which waits for the device).
            auto run = [&]() -> Result<std::pair<torch::Tensor, double>> {
              const auto start = std::chrono::steady_clock::now();
              TS_ASSIGN_OR_RETURN(torch::Tensor logits, executor->Run(input));
              logits = logits.to(torch::kCPU).to(torch::kFloat32);
              return std::make_pair(logits, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
            };
            auto first = run();
            if (!first.ok()) return command_line::Fail(err, first.status());
            const torch::Tensor y = first.value().first;
            const double seconds = first.value().second;
            std::vector<double> warm;
            for (int i = 0; i < f->repeats && f->repeats > 1; ++i) {
              auto again = run();
              if (!again.ok()) return command_line::Fail(err, again.status());
              warm.push_back(again.value().second);
            }
            const Status written = WriteRawFloat32(f->output, y);
            if (!written.ok()) return command_line::Fail(err, written);
            out << "forward " << info.name << ": input " << ToString(patch) << " -> logits " << y.sizes() << " in "
                << std::fixed << std::setprecision(3) << seconds << " s on " << net.device() << " "
                << f->device.precision << " (" << torch::get_num_threads() << " CPU threads, "
                << (executor->Serves(patch).ok() ? executor->name() : "LibTorch ops") << ")\n";
            if (!warm.empty()) {
              std::sort(warm.begin(), warm.end());
              out << "warm runs: " << warm.size() << ", median " << std::fixed << std::setprecision(3) << warm[warm.size() / 2]
                  << " s, min " << warm.front() << " s, max " << warm.back() << " s (the first run above builds the engine's graph)\n";
            }
            if (!f->reference.empty()) {
              auto ref = ReadRawFloat32(f->reference, y.sizes().vec());
              if (!ref.ok()) return command_line::Fail(err, ref.status());
              const double max_abs = (y - ref.value()).abs().max().item<double>();
              out << "max |logits - reference| = " << std::scientific << std::setprecision(3) << max_abs << "\n";
            }
            return command_line::kExitOk;
          }};
}

}  // namespace tucker_seg::tools
