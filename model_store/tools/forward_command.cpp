// forward: the network on one raw float32 patch, logits out (and compared to a reference).
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

  return {app, [f](std::ostream& out, std::ostream& err) {
            auto model = LoadNetworkOn(f->model, f->device);
            if (!model.ok()) return command_line::Fail(err, model.status());
            const ModelInfo& info = model.value().info;
            const Int3 patch = f->patch.value_or(info.patch_size);
            auto x = ReadRawFloat32(f->input, {1, info.network.input_channels, patch[0], patch[1], patch[2]});
            if (!x.ok()) return command_line::Fail(err, x.status());
            const PlainConvUNet& net = model.value().network;
            const auto start = std::chrono::steady_clock::now();
            auto y = net.Run(x.value().to(net.device()).to(net.dtype()));
            if (!y.ok()) return command_line::Fail(err, y.status());
            y.value() = y.value().to(torch::kCPU).to(torch::kFloat32);  // waits for the device
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            const Status written = WriteRawFloat32(f->output, y.value());
            if (!written.ok()) return command_line::Fail(err, written);
            out << "forward " << info.name << ": input " << ToString(patch) << " -> logits " << y.value().sizes() << " in "
                << std::fixed << std::setprecision(3) << seconds << " s on " << net.device() << " "
                << f->device.precision << " (" << torch::get_num_threads() << " CPU threads)\n";
            if (!f->reference.empty()) {
              auto ref = ReadRawFloat32(f->reference, y.value().sizes().vec());
              if (!ref.ok()) return command_line::Fail(err, ref.status());
              const double max_abs = (y.value() - ref.value()).abs().max().item<double>();
              out << "max |logits - reference| = " << std::scientific << std::setprecision(3) << max_abs << "\n";
            }
            return command_line::kExitOk;
          }};
}

}  // namespace tucker_seg::tools
