#include "model_store/tools/models_cli.h"

#include <algorithm>
#include <thread>

#include <torch/torch.h>

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
      tools::AddDistillCommand(app),  tools::AddEvaluateCommand(app), tools::AddForwardCommand(app)};
  int threads = 0;
  for (const auto& command : commands) {
    command.app->add_option("--threads", threads, "LibTorch intra-op threads (0: every core)")->check(CLI::Range(0, 1024))->capture_default_str();
  }
  if (auto exit_code = command_line::Parse(app, args, out, err)) return *exit_code;

  // Debian's LibTorch starts with one intra-op thread.
  torch::set_num_threads(threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
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
