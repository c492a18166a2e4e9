// import-nnunet: a trained nnU-Net v2 model (results folder + checkpoint) into the model store.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "model_store/format/composite.h"
#include "model_store/format/model.h"
#include "model_store/import/nnunet_import.h"
#include "model_store/tools/command.h"

namespace tucker_seg::tools {
namespace fs = std::filesystem;

namespace {

struct ImportFlags {
  NnUNetImportOptions import;
  std::vector<std::string> results;
  std::vector<std::string> part_names;
  std::string out;
  std::string orientation = "as-is";
};

int ImportOne(const ImportFlags& flags, const std::string& results, const std::string& name, const fs::path& dest, std::ostream& out,
              std::ostream& err) {
  NnUNetImportOptions options = flags.import;
  options.results_dir = results;
  options.name = name;
  auto model = ImportNnUNet(options);
  if (!model.ok()) return command_line::Fail(err, model.status());
  model.value().info.orientation = flags.orientation;
  const Status st = SaveModel(model.value(), dest.string());
  if (!st.ok()) return command_line::Fail(err, st);
  const auto& p = model.value().info.provenance;
  out << "imported " << p["dataset"].get<std::string>() << " (" << p["configuration"].get<std::string>() << ", fold " << options.fold
      << ", " << p["checkpoint"].get<std::string>() << ") -> " << dest.string() << "\n"
      << "  " << model.value().weights.size() << " tensors kept, " << p["aliases"].get<int>() << " aliases recognised, "
      << model.value().info.labels.size() << " labels, patch " << ToString(model.value().info.patch_size) << "\n";
  return command_line::kExitOk;
}

}  // namespace

Command AddImportCommand(CLI::App& parent) {
  auto f = std::make_shared<ImportFlags>();
  CLI::App* app = parent.add_subcommand(
      "import-nnunet", "Import a trained nnU-Net v2 model (plans.json, dataset.json, fold_N/checkpoint_*.pth).");
  app->add_option("--results", f->results,
                  "nnU-Net trainer folder (<trainer>__<plans>__<configuration>); several make a composite model (parts merged in this order)")
      ->required()->check(CLI::ExistingDirectory);
  app->add_option("--part-names", f->part_names, "Composite: one name per --results (default: each results folder's dataset name)")
      ->delimiter(',');
  app->add_option("--out", f->out, "Model folder to write, <store>/<model-name>")->required();
  app->add_option("--fold", f->import.fold, "Fold to import: 0..4 or all")->capture_default_str();
  app->add_option("--checkpoint", f->import.checkpoint, "Checkpoint: final or best")
      ->check(CLI::IsMember({"final", "best"}))->capture_default_str();
  app->add_option("--configuration", f->import.configuration, "Configuration name (default: read from the folder name)");
  AddOrientationOption(app, &f->orientation);  // TotalSegmentator's models: RAS

  return {app, [f](std::ostream& out, std::ostream& err) {
            const fs::path dest(f->out);
            const std::string name = dest.filename().empty() ? dest.parent_path().filename().string() : dest.filename().string();
            if (f->results.size() == 1) return ImportOne(*f, f->results[0], name, dest, out, err);
            // A composite: each results folder becomes <out>/parts/<part>, then composite.json.
            if (!f->part_names.empty() && f->part_names.size() != f->results.size()) {
              err << "error: --part-names names " << f->part_names.size() << " parts for " << f->results.size() << " --results folders\n";
              return command_line::kExitUsage;
            }
            std::vector<std::string> parts;
            for (size_t i = 0; i < f->results.size(); ++i) {
              const fs::path results = fs::path(f->results[i]).lexically_normal();
              const fs::path trainer = results.filename().empty() ? results.parent_path() : results;
              parts.push_back(f->part_names.empty() ? trainer.parent_path().filename().string() : f->part_names[i]);
              if (const int code = ImportOne(*f, f->results[i], parts.back(), dest / "parts" / parts.back(), out, err)) return code;
            }
            const Status written = WriteCompositeModel(dest.string(), name, parts);
            if (!written.ok()) return command_line::Fail(err, written);
            auto composite = ReadCompositeModel(dest.string());
            if (!composite.ok()) return command_line::Fail(err, composite.status());
            out << "composite " << name << ": " << parts.size() << " parts, " << composite.value().labels.size() - 1
                << " classes merged -> " << dest.string() << "\n";
            return command_line::kExitOk;
          }};
}

}  // namespace tucker_seg::tools
