// finetune and distill: load a (compressed) model, train it in place, save it, note the run in its
// variant manifest.
#include <iomanip>
#include <memory>

#include "model_store/format/variant_manifest.h"
#include "model_store/network/loaded_model.h"
#include "model_store/tools/command.h"
#include "model_store/tools/training_flags.h"

namespace tucker_seg::tools {
namespace {

struct AdaptFlags {
  bool distill = false;
  std::string model, teacher;
  std::vector<std::string> images, labels;
  TrainerOptions trainer;
};

int Adapt(const AdaptFlags& f, std::ostream& out, std::ostream& err) {
  auto model = LoadNetwork(f.model);
  if (!model.ok()) return command_line::Fail(err, model.status());
  if (model.value().execution.int8) {  // training changes the weights its calibrated ranges were measured for
    return command_line::Fail(err, InvalidArgument(f.model + " is an int8 variant: fine-tune or distill its float32 source, then quantize that again"));
  }
  PlainConvUNet& net = model.value().network;
  const auto images = f.distill ? ExpandNiftiFolders(f.images) : f.images;
  auto cases = LoadCases(model.value().info, images, f.distill ? nullptr : &f.labels);
  if (!cases.ok()) return command_line::Fail(err, cases.status());
  TrainerOptions options = f.trainer;
  options.progress = &out;
  Result<TrainingLog> log = Internal("not run");
  if (f.distill) {
    auto teacher = LoadNetwork(f.teacher);
    if (!teacher.ok()) return command_line::Fail(err, teacher.status());
    log = Distill(net, teacher.value().network, model.value().info.patch_size, cases.value(), options);
  } else {
    log = Train(net, model.value().info.patch_size, cases.value(), options);
  }
  if (!log.ok()) return command_line::Fail(err, log.status());
  nlohmann::json record = TrainingRecord(options, log.value());
  record["images"] = images;
  if (f.distill) {
    record["teacher"] = f.teacher;
    record["temperature"] = options.temperature;
    record["pseudo_label_weight"] = options.pseudo_label_weight;
    record["foreground_oversampling"] = options.foreground_oversampling;
  }
  const std::string kind = f.distill ? "distilled" : "finetuned";
  Model updated{model.value().info, net.Weights()};
  updated.info.provenance[kind] = record;
  const Status saved = SaveModel(updated, f.model);
  if (!saved.ok()) return command_line::Fail(err, saved);
  auto manifest = ReadVariantManifest(f.model);  // an original has none
  if (manifest.ok()) {
    manifest.value().adaptations[kind] = record;
    // The serving evaluation scored the weights just replaced; the server must not select on it.
    manifest.value().evaluations.erase(kServingEvaluation);
    const Status noted = WriteVariantManifest(manifest.value(), f.model);
    if (!noted.ok()) return command_line::Fail(err, noted);
  } else if (manifest.status().code() != StatusCode::kNotFound) {
    return command_line::Fail(err, manifest.status());
  }
  out << (f.distill ? "distill " : "finetune ") << model.value().info.name << ": " << options.steps << " steps in " << std::fixed
      << std::setprecision(0) << log.value().seconds << " s, loss " << std::setprecision(4) << log.value().losses.front() << " -> "
      << log.value().losses.back() << "\n";
  return command_line::kExitOk;
}

// The defaults both share: the paper fine-tunes at a constant, small learning rate with AdamW.
TrainerOptions AdaptDefaults(bool distill) {
  TrainerOptions o;
  o.steps = distill ? 300 : 200;
  o.learning_rate = distill ? 1e-4 : 1e-5;
  o.schedule = "constant";
  o.weight_decay = 1e-2;
  return o;
}

}  // namespace

Command AddFinetuneCommand(CLI::App& parent) {
  auto f = std::make_shared<AdaptFlags>();
  f->trainer = AdaptDefaults(false);
  CLI::App* app = parent.add_subcommand(
      "finetune", "Fine-tune a (compressed) model with labels; the paper's setting is AdamW at a constant lr of 1e-5.");
  app->add_option("model", f->model, "Variant (or model) folder, updated in place")->required()->check(CLI::ExistingDirectory);
  app->add_option("--images", f->images, "Training CTs")->required()->delimiter(',');
  app->add_option("--labels", f->labels, "Their label maps, one per CT")->required()->delimiter(',');
  AddTrainerFlags(app, &f->trainer, /*distillation=*/false);
  return {app, [f](std::ostream& out, std::ostream& err) { return Adapt(*f, out, err); }};
}

Command AddDistillCommand(CLI::App& parent) {
  auto f = std::make_shared<AdaptFlags>();
  f->distill = true;
  f->trainer = AdaptDefaults(true);
  CLI::App* app = parent.add_subcommand(
      "distill",
      "Label-free: the variant learns the teacher's softened outputs on unlabeled CTs, plus Dice + cross-entropy against the "
      "teacher's argmax; patches are centred on what the teacher segments.");
  app->add_option("model", f->model, "Variant folder, updated in place")->required()->check(CLI::ExistingDirectory);
  app->add_option("--teacher", f->teacher, "The original model folder")->required()->check(CLI::ExistingDirectory);
  app->add_option("--images", f->images, "Unlabeled CTs: files, folders of NIfTI files, or DICOM series folders")->required()->delimiter(',');
  AddTrainerFlags(app, &f->trainer, /*distillation=*/true);
  return {app, [f](std::ostream& out, std::ostream& err) { return Adapt(*f, out, err); }};
}

}  // namespace tucker_seg::tools
