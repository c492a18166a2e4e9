// evaluate: Dice against reference labels and, with --reference, agreement Dice with another
// model's predictions; written to <model>/<tag>.json and into a variant's manifest.
#include <filesystem>
#include <iomanip>
#include <memory>
#include <optional>

#include "image_io/image_io.h"
#include "vocabulary/atomic_file.h"
#include "model_store/format/variant_manifest.h"
#include "model_store/inference/predictor.h"
#include "model_store/network/loaded_model.h"
#include "model_store/tools/command.h"
#include "model_store/training/training_data.h"

namespace tucker_seg::tools {
namespace fs = std::filesystem;
namespace {

struct EvaluateFlags {
  std::string model, reference, tag = kServingEvaluation;
  std::vector<std::string> images, labels;
  double step = 0.5;
};

double Mean(const std::map<int64_t, double>& dice) {
  double sum = 0;
  for (const auto& [id, d] : dice) sum += d;
  return sum / static_cast<double>(std::max<size_t>(1, dice.size()));
}

void PrintCase(const ModelInfo& info, const EvaluationCase& c, bool with_reference, std::ostream& out) {
  if (with_reference) out << "  " << std::left << std::setw(28) << "class" << std::right << std::setw(8) << "Dice" << std::setw(11) << "agreement\n";
  for (const auto& [id, name] : info.labels) {
    if (id == 0 || (!c.dice.count(id) && !c.agreement.count(id))) continue;
    out << "  " << std::left << std::setw(28) << name << std::right << std::setw(8);
    if (c.dice.count(id)) out << c.dice.at(id); else out << "-";
    if (with_reference) {
      out << std::setw(10);
      if (c.agreement.count(id)) out << c.agreement.at(id); else out << "-";
    }
    out << "\n";
  }
}

Result<EvaluationCase> EvaluateCase(const RunnableModel& subject, const RunnableModel* reference, const std::string& image,
                                    const std::string& labels, const PredictionOptions& options) {
  const ModelInfo& info = subject.info;
  std::vector<int64_t> ids;
  for (size_t i = 1; i < info.labels.size(); ++i) ids.push_back(info.labels[i].first);
  TS_ASSIGN_OR_RETURN(CtVolume ct, ReadCt(image));
  TS_ASSIGN_OR_RETURN(LabelValues seg, ReadCt(labels));
  UNetPatchNetwork net(*subject.executor);
  TS_ASSIGN_OR_RETURN(Prediction pred, Predict(info, net, ct, options));
  if (!(seg.geometry == ct.geometry)) seg = ResampleLabelsNearest(seg, ct.geometry);
  EvaluationCase c;
  c.image = image;
  c.labels = labels;
  c.dice = DicePerLabel(pred.labels, seg, ids);
  c.mean_dice = Mean(c.dice);
  if (reference) {
    UNetPatchNetwork ref_net(*reference->executor);
    TS_ASSIGN_OR_RETURN(Prediction ref, Predict(reference->info, ref_net, ct, options));
    const LabelValues ref_values{ref.labels.geometry, {ref.labels.voxels.begin(), ref.labels.voxels.end()}};
    c.agreement = DicePerLabel(pred.labels, ref_values, ids);
    c.agreement_dice = Mean(c.agreement);
  }
  return c;
}

int Evaluate(const EvaluateFlags& f, std::ostream& out, std::ostream& err) {
  if (f.images.size() != f.labels.size()) {
    err << "error: --labels must name one label map per image (" << f.images.size() << " images, " << f.labels.size() << " label maps)\n";
    return command_line::kExitUsage;
  }
  auto loaded = LoadNetwork(f.model);
  if (!loaded.ok()) return command_line::Fail(err, loaded.status());
  const RunnableModel subject = loaded.value().Runnable();
  std::optional<RunnableModel> reference;
  if (!f.reference.empty()) {
    auto r = LoadNetwork(f.reference);
    if (!r.ok()) return command_line::Fail(err, r.status());
    reference = r.value().Runnable();
  }
  PredictionOptions options;
  options.window.step = f.step;
  Evaluation evaluation;
  evaluation.step = f.step;
  for (size_t i = 0; i < f.images.size(); ++i) {
    auto c = EvaluateCase(subject, reference ? &*reference : nullptr, f.images[i], f.labels[i], options);
    if (!c.ok()) return command_line::Fail(err, c.status());
    out << f.images[i] << ": mean Dice " << std::fixed << std::setprecision(3) << c.value().mean_dice << " over "
        << c.value().dice.size() << " classes";
    if (reference) out << ", agreement Dice with " << reference->info.name << " " << *c.value().agreement_dice;
    out << "\n";
    PrintCase(subject.info, c.value(), reference.has_value(), out);
    evaluation.cases.push_back(std::move(c).value());
  }
  const Status written = WriteFileAtomically((fs::path(f.model) / (f.tag + ".json")).string(), ToJson(evaluation).dump(2) + "\n");
  if (!written.ok()) return command_line::Fail(err, written);
  auto manifest = ReadVariantManifest(f.model);  // an original has none
  if (manifest.ok()) {
    manifest.value().evaluations[f.tag] = evaluation;
    const Status noted = WriteVariantManifest(manifest.value(), f.model);
    if (!noted.ok()) return command_line::Fail(err, noted);
  } else if (manifest.status().code() != StatusCode::kNotFound) {
    return command_line::Fail(err, manifest.status());
  }
  return command_line::kExitOk;
}

}  // namespace

Command AddEvaluateCommand(CLI::App& parent) {
  auto f = std::make_shared<EvaluateFlags>();
  CLI::App* app = parent.add_subcommand(
      "evaluate", "Per-class and mean Dice against labels (and agreement Dice with a reference model's predictions); written to "
                  "<model>/<tag>.json and, for a variant, into its manifest.");
  app->add_option("model", f->model, "Model or variant folder")->required()->check(CLI::ExistingDirectory);
  app->add_option("--images", f->images, "CTs")->required()->delimiter(',');
  app->add_option("--labels", f->labels, "Their reference label maps, one per CT")->required()->delimiter(',');
  app->add_option("--reference", f->reference, "Model folder whose predictions give the agreement Dice")->check(CLI::ExistingDirectory);
  app->add_option("--step", f->step, "Sliding-window step, a fraction of the patch")->check(CLI::Range(0.01, 1.0))->capture_default_str();
  app->add_option("--tag", f->tag, "Name of the evaluation; the server selects on 'evaluation'")->capture_default_str();
  return {app, [f](std::ostream& out, std::ostream& err) { return Evaluate(*f, out, err); }};
}

}  // namespace tucker_seg::tools
