#include "model_store/tools/models_cli.h"

#include <algorithm>
#include <thread>

#include <torch/utils.h>

#include "model_store/network/runtime.h"
#include "model_store/tools/command.h"

namespace tucker_seg {

namespace tools {

CLI::Option* AddPatchOption(CLI::App* app, std::optional<Int3>* patch, const std::string& description) {
  return app
      ->add_option_function<std::vector<int64_t>>(
          "--patch", [patch](const std::vector<int64_t>& v) { *patch = Int3{{v[0], v[1], v[2]}}; }, description)
      ->delimiter(',')
      ->expected(3)
      ->type_name("Z,Y,X");
}

void AddDeviceOptions(CLI::App* app, DeviceFlags* flags) {
  app->add_option("--device", flags->device, "Where the network runs: cpu, cuda or cuda:N")
      ->check(CLI::Validator(
          [](std::string& spec) {
            const bool cuda_index = spec.rfind("cuda:", 0) == 0 && spec.size() > 5 && spec.size() <= 8 &&
                                    spec.find_first_not_of("0123456789", 5) == std::string::npos;
            return spec == "cpu" || spec == "cuda" || cuda_index ? std::string() : "must be cpu, cuda or cuda:N, got '" + spec + "'";
          },
          "DEVICE"))
      ->capture_default_str();
  app->add_option("--precision", flags->precision, "fp32, or fp16/bf16 on a CUDA device, or bf16 on a CPU with AVX-512 BF16")
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}))
      ->capture_default_str();
}

Result<LoadedModel> LoadNetworkOn(const std::string& dir, const DeviceFlags& flags) {
  TS_ASSIGN_OR_RETURN(const torch::Device device, ParseDevice(flags.device));
  TS_ASSIGN_OR_RETURN(const Precision precision, ParsePrecision(flags.precision));
  return LoadNetwork(dir, device, precision);
}

CLI::Option* AddOrientationOption(CLI::App* app, std::string* orientation) {
  return app->add_option("--orientation", *orientation, "How the voxel array is oriented before nnU-Net's transpose")
      ->check(CLI::IsMember({"as-is", "RAS", "LPS"}))
      ->capture_default_str();
}

}  // namespace tools

int RunModelsCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"Import, compress, train, evaluate and run nnU-Net models of a tucker-seg model store."};
  command_line::Configure(app, "tucker-seg-models");
  app.require_subcommand(1);
  const std::vector<tools::Command> commands = {
      tools::AddImportCommand(app),   tools::AddInspectCommand(app), tools::AddCompressCommand(app),
      tools::AddPredictCommand(app),  tools::AddTrainCommand(app),   tools::AddFinetuneCommand(app),
      tools::AddDistillCommand(app),  tools::AddEvaluateCommand(app), tools::AddForwardCommand(app),
      tools::AddQuantizeCommand(app)};
  int threads = 0;
  for (const auto& command : commands) {
    command.app->add_option("--threads", threads, "LibTorch intra-op threads (0: the CPUs this process may use, cgroup quota included)")->check(CLI::Range(0, 1024))->capture_default_str();
  }
  if (auto exit_code = command_line::Parse(app, args, out, err)) return *exit_code;

  // Debian's LibTorch starts with one intra-op thread.
  torch::set_num_threads(threads > 0 ? threads : UsableCpus());
  for (const auto& command : commands) {
    if (!command.app->parsed()) continue;
    try {
      return command.run(out, err);
    } catch (const std::exception& e) {  // last line of defence: nothing escapes main as a crash
      const std::string what = e.what();
      err << "error: " << command.app->get_name() << ": " << what.substr(0, what.find('\n')) << "\n";
      return command_line::kExitFailure;
    }
  }
  return command_line::kExitUsage;  // unreachable: require_subcommand(1)
}

}  // namespace tucker_seg
