// import-nnunet: a trained nnU-Net v2 model (results folder + checkpoint) into the model store.
#include <filesystem>
#include <memory>

#include "model_store/format/model.h"
#include "model_store/import/nnunet_import.h"
#include "model_store/tools/command.h"

namespace tucker_seg::tools {
namespace fs = std::filesystem;

Command AddImportCommand(CLI::App& parent) {
  struct Flags {
    NnUNetImportOptions import;
    std::string out;
    std::string orientation = "as-is";
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = parent.add_subcommand(
      "import-nnunet", "Import a trained nnU-Net v2 model (plans.json, dataset.json, fold_N/checkpoint_*.pth).");
  app->add_option("--results", f->import.results_dir, "nnU-Net trainer folder (<trainer>__<plans>__<configuration>)")
      ->required()->check(CLI::ExistingDirectory);
  app->add_option("--out", f->out, "Model folder to write, <store>/<model-name>")->required();
  app->add_option("--fold", f->import.fold, "Fold to import: 0..4 or all")->capture_default_str();
  app->add_option("--checkpoint", f->import.checkpoint, "Checkpoint: final or best")
      ->check(CLI::IsMember({"final", "best"}))->capture_default_str();
  app->add_option("--configuration", f->import.configuration, "Configuration name (default: read from the folder name)");
  AddOrientationOption(app, &f->orientation);  // TotalSegmentator's models: RAS

  return {app, [f](std::ostream& out, std::ostream& err) {
            const fs::path dest(f->out);
            f->import.name = dest.filename().empty() ? dest.parent_path().filename().string() : dest.filename().string();
            auto model = ImportNnUNet(f->import);
            if (!model.ok()) return command_line::Fail(err, model.status());
            model.value().info.orientation = f->orientation;
            const Status st = SaveModel(model.value(), dest.string());
            if (!st.ok()) return command_line::Fail(err, st);
            const auto& p = model.value().info.provenance;
            out << "imported " << p["dataset"].get<std::string>() << " (" << p["configuration"].get<std::string>() << ", fold "
                << f->import.fold << ", " << p["checkpoint"].get<std::string>() << ") -> " << dest.string() << "\n"
                << "  " << model.value().weights.size() << " tensors kept, " << p["aliases"].get<int>()
                << " aliases recognised, " << model.value().info.labels.size() << " labels, patch "
                << ToString(model.value().info.patch_size) << "\n";
            return command_line::kExitOk;
          }};
}

}  // namespace tucker_seg::tools
