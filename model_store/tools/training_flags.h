// What train, finetune, distill and evaluate share: the trainer's flags and reading CTs (and
// label maps) into training cases.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "command_line/command_line.h"
#include "model_store/training/trainer.h"
#include "model_store/training/training_data.h"

namespace tucker_seg::tools {

// --steps, --batch, --lr, --optimizer, --schedule, --seed, --checkpoint-every, --resume,
// --spatial-augmentation, --foreground-oversampling bound to `options` (defaults shown from it);
// `distillation` adds --temperature and --pseudo-label-weight.
void AddTrainerFlags(CLI::App* app, TrainerOptions* options, bool distillation);

// The run's settings and outcome, as recorded in provenance and manifests.
nlohmann::json TrainingRecord(const TrainerOptions& options, const TrainingLog& log);

// Unlabeled images: a folder holding NIfTI files stands for those files (sorted by name); any
// other folder is read as one DICOM series.
std::vector<std::string> ExpandNiftiFolders(const std::vector<std::string>& items);

// Reads the CTs (and, when `labels` is given, their label maps, one per CT) into training cases
// in the model's space.
Result<std::vector<TrainingCase>> LoadCases(const ModelInfo& info, const std::vector<std::string>& images,
                                            const std::vector<std::string>* labels);

}  // namespace tucker_seg::tools
