// One `tucker-seg-models` command: its flags on a CLI11 subcommand and the function that runs it.
// Each command lives in its own <name>_command.cpp; models_cli.cpp lists them.
#pragma once

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "command_line/command_line.h"
#include "model_store/network/loaded_model.h"
#include "vocabulary/volume.h"

namespace tucker_seg::tools {

struct Command {
  CLI::App* app = nullptr;
  // Runs after a successful parse; returns the exit code (command_line.h).
  std::function<int(std::ostream& out, std::ostream& err)> run;
};

Command AddImportCommand(CLI::App& parent);
Command AddInspectCommand(CLI::App& parent);
Command AddCompressCommand(CLI::App& parent);
Command AddPredictCommand(CLI::App& parent);
Command AddTrainCommand(CLI::App& parent);
Command AddFinetuneCommand(CLI::App& parent);
Command AddDistillCommand(CLI::App& parent);
Command AddEvaluateCommand(CLI::App& parent);
Command AddForwardCommand(CLI::App& parent);
Command AddQuantizeCommand(CLI::App& parent);

// --patch Z,Y,X: three integers; `patch` stays empty when the flag is absent.
CLI::Option* AddPatchOption(CLI::App* app, std::optional<Int3>* patch, const std::string& description);

// --device cpu|cuda[:N] and --precision fp32|fp16|bf16 (half precision on CUDA only).
struct DeviceFlags {
  std::string device = "cpu";
  std::string precision = "fp32";
};
void AddDeviceOptions(CLI::App* app, DeviceFlags* flags);
// The model folder's network on the flags' device and precision; errors (no CUDA in this build
// or on this machine, half precision on the CPU) name the device.
Result<LoadedModel> LoadNetworkOn(const std::string& dir, const DeviceFlags& flags);

// "as-is", "RAS" or "LPS" (how voxel arrays are oriented before nnU-Net's transpose).
CLI::Option* AddOrientationOption(CLI::App* app, std::string* orientation);

}  // namespace tucker_seg::tools
