// predict: a whole CT segmented in-process (nnU-Net preprocessing, sliding window, export on the
// input's grid).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <set>
#include <sstream>

#include <torch/utils.h>

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

struct PredictFlags {
  std::vector<std::string> inputs;
  std::string model, output, output_type, statistics, variant, roi_subset, roi_coarse;
  bool include_masks_at_border = false;
  PredictionOptions prediction;
  DeviceFlags device;
};

// What `predict` runs, loaded once for all its CTs: one network, or every part of a composite
// model, and the --roi-coarse network.
struct PredictModel {
  std::optional<CompositeModel> composite;
  std::vector<RunnableModel> parts;  // one entry for an ordinary model or variant
  std::optional<RunnableModel> coarse;
  std::vector<std::string> roi_names;
  Provenance provenance;
};

Result<PredictModel> LoadPredictModel(const PredictFlags& f) {
  PredictModel m;
  std::vector<std::string> folders{f.model};
  if (IsCompositeModel(f.model)) {
    TS_ASSIGN_OR_RETURN(CompositeModel composite, ReadCompositeModel(f.model));
    folders.clear();
    for (const auto& dir : composite.part_dirs) folders.push_back(f.variant.empty() ? dir : dir + "/variants/" + f.variant);
    m.composite = std::move(composite);
  }
  for (const auto& folder : folders) {
    TS_ASSIGN_OR_RETURN(LoadedModel loaded, LoadNetworkOn(folder, f.device));
    m.parts.push_back(loaded.Runnable());
  }
  // A coarse pass only with a cheaper network to run it: with the model itself it would cost
  // about what it saves.
  if (!f.roi_subset.empty() && !f.roi_coarse.empty()) {
    TS_ASSIGN_OR_RETURN(LoadedModel coarse, LoadNetworkOn(f.roi_coarse, f.device));
    m.coarse = coarse.Runnable();
  }
  std::stringstream names(f.roi_subset);
  for (std::string name; std::getline(names, name, ',');) m.roi_names.push_back(name);
  const auto manifest = ReadVariantManifest(f.model);  // variants only; the original has agreement 1
  const std::string variant = m.composite ? (f.variant.empty() ? "original" : f.variant) : VariantName(f.model);
  const std::optional<double> quality = manifest.ok() ? manifest.value().Quality() : variant == "original" ? std::optional<double>(1.0) : std::nullopt;
  m.provenance = {m.composite ? m.composite->name : m.parts[0].info.name, variant, quality, command_line::ProjectVersion(),
                  f.prediction.window.step};
  return m;
}

// One CT: predict (every part of a composite), write its outputs, print what was found.
int PredictOne(const PredictFlags& f, const PredictModel& m, const std::string& input_path, const std::string& output,
               const std::string& statistics, std::ostream& out, std::ostream& err) {
  const auto type = f.output_type.empty() ? OutputType(DefaultOutputType(output)) : ParseOutputType(f.output_type);
  if (!type.ok()) return command_line::Fail(err, type.status());
  auto input = ReadCtInput(input_path);
  if (!input.ok()) return command_line::Fail(err, input.status());
  CtVolume& ct = input.value().ct;
  PredictionOptions prediction = f.prediction;
  const bool show_tiles = isatty(STDERR_FILENO);
  prediction.window.on_tiles = [show_tiles](int64_t done, int64_t total) {
    if (!show_tiles) return;
    std::fprintf(stderr, "\rsegmenting: %lld/%lld tiles%s", static_cast<long long>(done), static_cast<long long>(total),
                 done == total ? "\n" : "");
    std::fflush(stderr);
  };
  std::optional<UNetPatchNetwork> coarse;
  if (m.coarse) coarse.emplace(*m.coarse->executor);
  const std::set<std::string> roi(m.roi_names.begin(), m.roi_names.end());
  Prediction combined;
  if (m.composite) combined.labels = LabelMap{ct.geometry, std::vector<uint8_t>(ct.voxels.size(), 0)};
  for (size_t part = 0; part < m.parts.size(); ++part) {
    const RunnableModel& model = m.parts[part];
    UNetPatchNetwork patch_net(*model.executor);
    PredictionOptions options = prediction;
    if (!roi.empty()) {
      const std::vector<int64_t> outputs = OutputsNamed(model.info, roi);
      if (outputs.empty()) continue;  // a composite part without any of the classes
      if (coarse) options.roi = RoiOptions{&*coarse, outputs};
    }
    // The last prediction consumes the CT's voxels, unless the statistics read them afterwards.
    const bool consume = statistics.empty() && part + 1 == m.parts.size();
    auto p = consume ? Predict(model.info, patch_net, std::move(ct), options) : Predict(model.info, patch_net, ct, options);
    if (m.composite) model.executor->ReleaseIdleMemory();  // the next part needs its own activations, not these
    if (!p.ok()) return command_line::Fail(err, p.status());
    if (!m.composite) {
      combined = std::move(p.value());
      break;
    }
    const Status added = AddPartPrediction(*m.composite, part, p.value(), &combined);
    if (!added.ok()) return command_line::Fail(err, added);
  }
  if (m.composite) combined.label_table = m.composite->labels;
  if (!roi.empty()) {
    const Status kept = KeepOnlyClasses(m.roi_names, &combined.label_table, &combined.labels);
    if (!kept.ok()) return command_line::Fail(err, kept);
  }
  const Prediction* p = &combined;
  const Provenance& provenance = m.provenance;
  Status written = WriteSegmentationFiles(output, p->labels, p->label_table, {type.value(), input.value().nifti_codes, provenance});
  if (written.ok() && !statistics.empty()) {
    const auto stats = SegmentationStatistics(ct, p->labels, p->label_table, provenance, !f.include_masks_at_border);
    written = stats.ok() ? WriteStatisticsFiles(statistics, stats.value()) : stats.status();
  }
  if (!written.ok()) return command_line::Fail(err, written);

  const auto& g = p->labels.geometry;
  const auto& t = p->timings;
  const auto& window = f.prediction.window;
  out << "predict " << provenance.model << (m.composite ? " (" + std::to_string(m.parts.size()) + " parts)" : "") << ": " << g.size[0] << "x" << g.size[1] << "x" << g.size[2]
      << " voxels at " << std::fixed << std::setprecision(2) << g.spacing[0] << "x" << g.spacing[1] << "x" << g.spacing[2]
      << " mm -> network grid " << ToString(p->network_shape) << ", " << p->tiles << " tiles (step "
      << window.step << ", batch " << window.batch << (window.mirror ? ", mirrored" : "") << ", "
      << f.device.device << " " << f.device.precision << ", " << torch::get_num_threads() << " CPU threads)\n"
      << "  preprocess " << t.preprocess_seconds << " s, network " << t.network_seconds << " s, aggregation "
      << t.aggregation_seconds << " s, export " << t.export_seconds << " s";
  if (p->exported_voxels > 0) {
    out << " (" << std::setprecision(1) << 100.0 * static_cast<double>(p->interpolated_voxels) / static_cast<double>(p->exported_voxels)
        << "% of voxels interpolated, the rest in cells of one class)" << std::setprecision(2);
  }
  out << "\n";
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
  app->add_option("--statistics", f->statistics, "statistics.json in TotalSegmentator's format (volume mm3, intensity HU); "
                                                 "what made it in <name>_provenance.json beside it");
  app->add_flag("--statistics-include-masks-at-border,--stats_include_incomplete", f->include_masks_at_border,
                "Statistics also for classes within 3 voxels of the volume's border (default, as TotalSegmentator: 0 for them, likely cut off)");
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
            const bool several = inputs.value().size() > 1;
            if (several && (HasImageExtension(f->output) || !f->statistics.empty())) {
              err << "error: with " << inputs.value().size() << " CTs, -o is a folder and --statistics is not available\n";
              return command_line::kExitUsage;
            }
            auto model = LoadPredictModel(*f);
            if (!model.ok()) return command_line::Fail(err, model.status());
            if (!several) return PredictOne(*f, model.value(), inputs.value()[0], f->output, f->statistics, out, err);
            const bool multilabel = f->output_type == "multilabel";
            if (multilabel) std::filesystem::create_directories(f->output);
            for (const auto& input : inputs.value()) {
              const std::string output = (std::filesystem::path(f->output) / (CaseName(input) + (multilabel ? ".nii.gz" : ""))).string();
              if (const int code = PredictOne(*f, model.value(), input, output, "", out, err)) return code;
            }
            return command_line::kExitOk;
          }};
}

}  // namespace tucker_seg::tools
