// predict: a whole CT segmented in-process (nnU-Net preprocessing, sliding window, export on the
// input's grid).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <sstream>

#include <torch/torch.h>

#include "image_io/image_io.h"
#include "image_io/segmentation_files.h"
#include "vocabulary/atomic_file.h"
#include "model_store/format/composite.h"
#include "model_store/format/variant_manifest.h"
#include "model_store/inference/predictor.h"
#include "model_store/network/loaded_model.h"
#include "model_store/tools/command.h"

namespace tucker_seg::tools {
namespace {

// "original" for a model folder, the folder's name for a variant (…/variants/df0.3).
std::string VariantName(const std::string& folder) {
  const std::filesystem::path path = std::filesystem::path(folder).lexically_normal();
  const std::filesystem::path dir = path.filename().empty() ? path.parent_path() : path;
  return dir.parent_path().filename() == "variants" ? dir.filename().string() : "original";
}

// --roi-subset: the outputs of `info` named in the comma-separated `names`.
std::vector<int64_t> RoiOutputs(const ModelInfo& info, const std::string& names) {
  std::vector<int64_t> outputs;
  std::stringstream list(names);
  for (std::string name; std::getline(list, name, ',');)
    for (size_t i = 1; i < info.labels.size(); ++i)
      if (info.labels[i].second == name) outputs.push_back(static_cast<int64_t>(i));
  return outputs;
}

// Only the --roi-subset classes stay, in the labels and the table; a name that is no class of the
// model is an error.
Status KeepOnly(const std::string& names, Prediction* p) {
  std::vector<bool> keep(256, false);
  LabelTable table{{0, "background"}};
  std::stringstream list(names);
  for (std::string name; std::getline(list, name, ',');) {
    bool found = false;
    for (const auto& [id, label] : p->label_table)
      if (id != 0 && label == name) keep[static_cast<size_t>(id)] = found = true, table.emplace_back(id, label);
    if (!found) return InvalidArgument("--roi-subset: '" + name + "' is not a class of this model");
  }
  for (auto& v : p->labels.voxels)
    if (!keep[v]) v = 0;
  p->label_table = std::move(table);
  return Status::Ok();
}

struct PredictFlags {
  std::vector<std::string> inputs;
  std::string model, output, output_type, statistics, variant, roi_subset, roi_coarse;
  bool exclude_masks_at_border = false;
  PredictionOptions prediction;
  DeviceFlags device;
};

// One CT: predict (every part of a composite), write its outputs, print what was found.
int PredictOne(const PredictFlags& f, const std::string& input_path, const std::string& output, const std::string& statistics,
               std::ostream& out, std::ostream& err) {
  const auto type = f.output_type.empty() ? OutputType(DefaultOutputType(output)) : ParseOutputType(f.output_type);
  if (!type.ok()) return command_line::Fail(err, type.status());
  auto input = ReadCtInput(input_path);
  if (!input.ok()) return command_line::Fail(err, input.status());
  const CtVolume& ct = input.value().ct;
  PredictionOptions prediction = f.prediction;
  const bool show_tiles = isatty(STDERR_FILENO);
  prediction.window.on_tiles = [show_tiles](int64_t done, int64_t total) {
    if (!show_tiles) return;
    std::fprintf(stderr, "\rsegmenting: %lld/%lld tiles%s", static_cast<long long>(done), static_cast<long long>(total),
                 done == total ? "\n" : "");
    std::fflush(stderr);
  };
  // One model or variant folder; a composite model runs each part and merges their labels.
  std::vector<std::string> folders{f.model};
  std::optional<CompositeModel> composite;
  if (IsCompositeModel(f.model)) {
    auto read = ReadCompositeModel(f.model);
    if (!read.ok()) return command_line::Fail(err, read.status());
    composite = std::move(read.value());
    folders.clear();
    for (const auto& dir : composite->part_dirs) folders.push_back(f.variant.empty() ? dir : dir + "/variants/" + f.variant);
  }
  Prediction combined;
  std::string name;
  for (size_t part = 0; part < folders.size(); ++part) {
    auto model = LoadNetworkOn(folders[part], f.device);
    if (!model.ok()) return command_line::Fail(err, model.status());
    UNetPatchNetwork patch_net(model.value().network);
    PredictionOptions options = prediction;
    std::optional<LoadedModel> coarse_model;
    std::optional<UNetPatchNetwork> coarse;
    if (!f.roi_subset.empty()) {
      const std::vector<int64_t> outputs = RoiOutputs(model.value().info, f.roi_subset);
      if (outputs.empty()) continue;  // a composite part without any of the classes
      // A coarse pass only with a cheaper network to run it: with the model itself it
      // would cost about what it saves.
      if (!f.roi_coarse.empty()) {
        auto loaded = LoadNetworkOn(f.roi_coarse, f.device);
        if (!loaded.ok()) return command_line::Fail(err, loaded.status());
        coarse_model.emplace(std::move(loaded.value()));
        coarse.emplace(coarse_model->network);
        options.roi = RoiOptions{&*coarse, outputs};
      }
    }
    auto p = Predict(model.value().info, patch_net, ct, options);
    if (!p.ok()) return command_line::Fail(err, p.status());
    if (!composite) {
      combined = std::move(p.value());
      name = model.value().info.name;
      break;
    }
    combined.coarse_tiles += p->coarse_tiles;
    combined.full_tiles += p->full_tiles;
    const Status merged = MergePartLabels(*composite, part, p->labels, &combined.labels);
    if (!merged.ok()) return command_line::Fail(err, merged);
    combined.tiles += p->tiles;
    combined.network_shape = p->network_shape;
    auto& t = combined.timings;
    t.preprocess_seconds += p->timings.preprocess_seconds;
    t.network_seconds += p->timings.network_seconds;
    t.aggregation_seconds += p->timings.aggregation_seconds;
    t.export_seconds += p->timings.export_seconds;
  }
  if (composite) {
    combined.label_table = composite->labels;
    name = composite->name;
    if (combined.labels.voxels.empty()) combined.labels = LabelMap{ct.geometry, std::vector<uint8_t>(ct.voxels.size(), 0)};
  }
  if (!f.roi_subset.empty()) {
    const Status kept = KeepOnly(f.roi_subset, &combined);
    if (!kept.ok()) return command_line::Fail(err, kept);
  }
  const Prediction* p = &combined;
  const auto manifest = ReadVariantManifest(f.model);  // variants only; the original has agreement 1
  const std::string variant = composite ? (f.variant.empty() ? "original" : f.variant) : VariantName(f.model);
  const std::optional<double> quality = manifest.ok() ? manifest.value().Quality() : variant == "original" ? std::optional<double>(1.0) : std::nullopt;
  const Provenance provenance{name, variant, quality, command_line::ProjectVersion()};
  Status written = WriteSegmentationFiles(output, p->labels, p->label_table, {type.value(), input.value().nifti_codes, provenance});
  if (written.ok() && !statistics.empty()) {
    const auto stats = SegmentationStatistics(ct, p->labels, p->label_table, provenance, f.exclude_masks_at_border);
    written = stats.ok() ? WriteFileAtomically(statistics, stats.value().dump(2) + "\n") : stats.status();
  }
  if (!written.ok()) return command_line::Fail(err, written);

  const auto& g = ct.geometry;
  const auto& t = p->timings;
  const auto& window = f.prediction.window;
  out << "predict " << name << (composite ? " (" + std::to_string(folders.size()) + " parts)" : "") << ": " << g.size[0] << "x" << g.size[1] << "x" << g.size[2]
      << " voxels at " << std::fixed << std::setprecision(2) << g.spacing[0] << "x" << g.spacing[1] << "x" << g.spacing[2]
      << " mm -> network grid " << ToString(p->network_shape) << ", " << p->tiles << " tiles (step "
      << window.step << ", batch " << window.batch << (window.mirror ? ", mirrored" : "") << ", "
      << f.device.device << " " << f.device.precision << ", " << torch::get_num_threads() << " CPU threads)\n"
      << "  preprocess " << t.preprocess_seconds << " s, network " << t.network_seconds << " s, aggregation "
      << t.aggregation_seconds << " s, export " << t.export_seconds << " s\n";
  if (p->coarse_tiles > 0) {
    out << "  roi-subset: coarse pass " << p->coarse_tiles << " tiles at step 1, then " << p->tiles << " of " << p->full_tiles
        << " tiles\n";
  }
  std::vector<int64_t> counts(256, 0);  // by label id
  for (uint8_t v : p->labels.voxels) ++counts[v];
  out << "  labels present:";
  for (const auto& [id, label] : p->label_table)
    if (id > 0 && counts[static_cast<size_t>(id)] > 0) out << " " << label << " (" << counts[static_cast<size_t>(id)] << ")";
  out << "\n  wrote " << output << (statistics.empty() ? "" : " and " + statistics) << "\n";
  return command_line::kExitOk;
}

}  // namespace

Command AddPredictCommand(CLI::App& parent) {
  auto f = std::make_shared<PredictFlags>();
  CLI::App* app = parent.add_subcommand(
      "predict", "Segment a whole CT in-process and write the label map on the input's grid; --step 0.8 reproduces TotalSegmentator.");
  app->add_option("model", f->model, "Model or variant folder")->required();
  app->add_option("-i,--input", f->inputs, "CTs: NIfTI/NRRD/MHA files, DICOM series folders or folders of NIfTI files")->required();
  app->add_option("-o,--output", f->output, "A .nii.gz file (multilabel map) or a folder (one <class>.nii.gz per class)")->required();
  app->add_option("--output-type", f->output_type, "per-class or multilabel (default: multilabel for an image file name, else per-class)")
      ->check(CLI::IsMember({"per-class", "multilabel"}));
  app->add_option("--statistics", f->statistics, "statistics.json in TotalSegmentator's format (volume mm3, intensity HU)");
  app->add_flag("--statistics-exclude-masks-at-border", f->exclude_masks_at_border,
                "Statistics: zero for classes within 3 voxels of the volume's border (likely cut off)");
  app->add_option("--step", f->prediction.window.step, "Sliding-window step, a fraction of the patch in (0, 1]")
      ->check(CLI::Range(0.01, 1.0))->capture_default_str();
  app->add_option("--batch", f->prediction.window.batch, "Tiles per network call")->check(CLI::Range(1, 64))->capture_default_str();
  app->add_flag("--mirror", f->prediction.window.mirror, "Test-time mirroring over the three axes");
  AddDeviceOptions(app, &f->device);

  app->add_option("--variant", f->variant, "Composite models: run this variant of every part (default: the originals)");
  app->add_option("--roi-subset", f->roi_subset,
                  "Only these classes (comma-separated names): composite parts without them are skipped; with --roi-coarse, only their tiles run");
  app->add_option("--roi-coarse", f->roi_coarse, "--roi-subset: a cheaper model or variant folder whose coarse pass finds the classes")
      ->check(CLI::ExistingDirectory);

  return {app, [f](std::ostream& out, std::ostream& err) {
            // Several CTs (files, DICOM folders, folders of NIfTI files): -o is a folder holding
            // <case>/ (per-class) or <case>.nii.gz (--output-type multilabel) for each.
            auto inputs = ExpandCtInputs(f->inputs);
            if (!inputs.ok()) return command_line::Fail(err, inputs.status());
            if (inputs.value().size() == 1) return PredictOne(*f, inputs.value()[0], f->output, f->statistics, out, err);
            if (HasImageExtension(f->output) || !f->statistics.empty()) {
              err << "error: with " << inputs.value().size() << " CTs, -o is a folder and --statistics is not available\n";
              return command_line::kExitUsage;
            }
            const bool multilabel = f->output_type == "multilabel";
            for (const auto& input : inputs.value()) {
              const std::string output = (std::filesystem::path(f->output) / (CaseName(input) + (multilabel ? ".nii.gz" : ""))).string();
              if (multilabel) std::filesystem::create_directories(f->output);
              if (const int code = PredictOne(*f, input, output, "", out, err)) return code;
            }
            return command_line::kExitOk;
          }};
}

}  // namespace tucker_seg::tools
