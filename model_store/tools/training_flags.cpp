#include "model_store/tools/training_flags.h"

#include <algorithm>
#include <filesystem>
#include <optional>

#include "image_io/image_io.h"

namespace tucker_seg::tools {
namespace fs = std::filesystem;

void AddTrainerFlags(CLI::App* app, TrainerOptions* o, bool distillation) {
  app->add_option("--steps", o->steps, "Optimizer steps")->check(CLI::Range(int64_t{1}, int64_t{10000000}))->capture_default_str();
  app->add_option("--batch", o->batch, "Patches per step")->check(CLI::Range(int64_t{1}, int64_t{64}))->capture_default_str();
  app->add_option("--lr", o->learning_rate, "Learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--optimizer", o->optimizer, "adamw, or sgd (Nesterov, momentum 0.99 as nnU-Net)")
      ->check(CLI::IsMember({"adamw", "sgd"}))->capture_default_str();
  app->add_option("--schedule", o->schedule, "poly or constant learning rate")->check(CLI::IsMember({"poly", "constant"}))->capture_default_str();
  app->add_option("--seed", o->seed, "Random seed (patches, augmentation, initialisation)")->capture_default_str();
  app->add_option("--checkpoint-every", o->checkpoint_every, "Steps between checkpoints")
      ->check(CLI::Range(int64_t{1}, int64_t{10000000}))->capture_default_str();
  app->add_flag("--resume", o->resume, "Continue from the checkpoint when there is one");
  app->add_option("--spatial-augmentation", o->spatial_augmentation, "Share of patches scaled and rotated")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app->add_option("--foreground-oversampling", o->foreground_oversampling, "Share of patches centred on foreground")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  if (distillation) {
    app->add_option("--temperature", o->temperature, "Softening of teacher and student outputs")->check(CLI::PositiveNumber)->capture_default_str();
    app->add_option("--pseudo-label-weight", o->pseudo_label_weight, "Weight of Dice + cross-entropy against the teacher's argmax")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
  }
}

nlohmann::json TrainingRecord(const TrainerOptions& o, const TrainingLog& log) {
  return {{"steps", o.steps}, {"batch", o.batch}, {"optimizer", o.optimizer}, {"learning_rate", o.learning_rate},
          {"schedule", o.schedule}, {"seed", o.seed}, {"seconds", log.seconds},
          {"final_loss", log.losses.empty() ? 0.0 : log.losses.back()}};
}

namespace {

bool IsNifti(const fs::path& p) {
  const std::string name = p.filename().string();
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with(".nii") || ends_with(".nii.gz");
}

}  // namespace

std::vector<std::string> ExpandNiftiFolders(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const auto& item : items) {
    std::vector<std::string> files;
    std::error_code ec;
    if (fs::is_directory(item, ec)) {
      for (const auto& entry : fs::directory_iterator(item, ec))
        if (entry.is_regular_file() && IsNifti(entry.path())) files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) files.push_back(item);
    out.insert(out.end(), files.begin(), files.end());
  }
  return out;
}

Result<std::vector<TrainingCase>> LoadCases(const ModelInfo& info, const std::vector<std::string>& images,
                                            const std::vector<std::string>* labels) {
  if (images.empty()) return InvalidArgument("images: at least one CT is needed");
  if (labels && labels->size() != images.size()) {
    return InvalidArgument("labels: one label map per image is needed (" + std::to_string(images.size()) + " images, " +
                           std::to_string(labels->size()) + " label maps)");
  }
  std::vector<TrainingCase> cases;
  for (size_t i = 0; i < images.size(); ++i) {
    TS_ASSIGN_OR_RETURN(CtVolume ct, ReadCt(images[i]));
    std::optional<LabelValues> seg;
    if (labels) {
      TS_ASSIGN_OR_RETURN(seg, ReadCt((*labels)[i]));
    }
    auto c = MakeTrainingCase(info, ct, seg ? &*seg : nullptr);
    if (!c.ok()) return Annotate(c.status(), images[i]);
    cases.push_back(c.value());
  }
  return cases;
}

}  // namespace tucker_seg::tools
