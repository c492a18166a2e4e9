// train: a PlainConvUNet from scratch on labeled CTs (Dice + cross-entropy).
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <memory>

#include "image_io/image_io.h"
#include "model_store/tools/command.h"
#include "model_store/tools/training_flags.h"

namespace tucker_seg::tools {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct TrainFlags {
  std::string architecture, classes, out;
  std::vector<std::string> images, labels;
  std::vector<int64_t> class_ids;
  std::vector<double> spacing;
  std::string orientation = "RAS";
  TrainerOptions trainer;
};

// The model's description before training: labels from the class table, the architecture with
// one output per class, normalisation statistics from the first CT's labelled voxels (as nnU-Net's
// fingerprint).
Result<ModelInfo> DescribeModel(const TrainFlags& f) {
  TS_ASSIGN_OR_RETURN(ArchitectureFile arch, ReadArchitectureFile(f.architecture));
  std::ifstream classes_in(f.classes);
  if (!classes_in) return NotFound("classes file '" + f.classes + "' cannot be read");
  const json classes = json::parse(classes_in, nullptr, /*allow_exceptions=*/false);
  if (classes.is_discarded() || !classes.is_object()) return InvalidArgument("classes file '" + f.classes + "' must be a JSON object");
  ModelInfo info;
  info.name = fs::path(f.out).filename().string();
  info.orientation = f.orientation;
  info.labels = {{0, "background"}};
  for (int64_t id : f.class_ids) {
    const std::string key = std::to_string(id);
    if (!classes.contains(key) || !classes[key].is_string()) return InvalidArgument("class id " + key + " is not in " + f.classes);
    info.labels.emplace_back(id, classes[key].get<std::string>());
  }
  info.network = arch.network;
  info.network.num_classes = static_cast<int64_t>(info.labels.size());
  TS_RETURN_IF_ERROR(info.network.Validate());
  info.patch_size = arch.patch_size;
  info.spacing = Zyx<double>{{f.spacing[0], f.spacing[1], f.spacing[2]}};
  TS_ASSIGN_OR_RETURN(CtVolume first_ct, ReadCt(f.images[0]));
  TS_ASSIGN_OR_RETURN(LabelValues first_seg, ReadCt(f.labels[0]));
  TS_ASSIGN_OR_RETURN(IntensityProperties intensity, ForegroundIntensity(first_ct, first_seg, f.class_ids));
  info.channels = {{"CT", "CTNormalization", false, intensity}};
  return info;
}

int Train(const TrainFlags& f, std::ostream& out, std::ostream& err) {
  auto described = DescribeModel(f);
  if (!described.ok()) return command_line::Fail(err, described.status());
  ModelInfo& info = described.value();
  auto cases = LoadCases(info, f.images, &f.labels);
  if (!cases.ok()) return command_line::Fail(err, cases.status());
  TrainerOptions options = f.trainer;
  options.progress = &out;
  options.checkpoint = (fs::path(f.out) / "training-checkpoint.safetensors").string();
  fs::create_directories(f.out);
  auto net = PlainConvUNet::Create(info.network, PlainConvUNet::RandomWeights(info.network, options.seed));
  if (!net.ok()) return command_line::Fail(err, net.status());
  auto log = tucker_seg::Train(net.value(), info.patch_size, cases.value(), options);
  if (!log.ok()) return command_line::Fail(err, log.status());
  info.provenance = {{"source", "trained by tucker-seg-models train"}, {"images", f.images},
                     {"training", TrainingRecord(options, log.value())}};
  const Status st = SaveModel(Model{info, net.value().Weights()}, f.out);
  if (!st.ok()) return command_line::Fail(err, st);
  out << "trained " << info.name << ": " << info.labels.size() - 1 << " classes, " << net.value().NumParameters()
      << " parameters, " << options.steps << " steps in " << std::fixed << std::setprecision(0) << log.value().seconds
      << " s, final loss " << std::setprecision(4) << log.value().losses.back() << " -> " << f.out << "\n";
  return command_line::kExitOk;
}

}  // namespace

Command AddTrainCommand(CLI::App& parent) {
  auto f = std::make_shared<TrainFlags>();
  CLI::App* app = parent.add_subcommand("train", "Train a PlainConvUNet from scratch on labeled CTs (Dice + cross-entropy).");
  app->add_option("--architecture", f->architecture, "Architecture JSON file (model_store/architectures/)")->required()->check(CLI::ExistingFile);
  app->add_option("--images", f->images, "Training CTs")->required()->delimiter(',');
  app->add_option("--labels", f->labels, "Their label maps, one per CT")->required()->delimiter(',');
  app->add_option("--classes", f->classes, "JSON object: label id -> class name")->required()->check(CLI::ExistingFile);
  app->add_option("--class-ids", f->class_ids, "Label ids to learn")->required()->delimiter(',');
  app->add_option("--spacing", f->spacing, "Network spacing in mm")->required()->delimiter(',')->expected(3)
      ->check(CLI::PositiveNumber)->type_name("Z,Y,X");
  app->add_option("--out", f->out, "Model folder to write")->required();
  AddOrientationOption(app, &f->orientation);
  AddTrainerFlags(app, &f->trainer, /*distillation=*/false);
  return {app, [f](std::ostream& out, std::ostream& err) { return Train(*f, out, err); }};
}

}  // namespace tucker_seg::tools
