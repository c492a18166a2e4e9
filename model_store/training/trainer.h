// Training, fine-tuning and label-free distillation of a PlainConvUNet (dense or Tucker variant)
// in LibTorch: nnU-Net-style loss (soft Dice + cross-entropy), AdamW or SGD with Nesterov, poly or
// constant learning rate, patch sampling with foreground oversampling, spatial (scaling, rotation)
// and intensity augmentation, fixed seeds, checkpoints and resume.
#pragma once

#include <ostream>
#include <random>
#include <utility>
#include <string>
#include <vector>

#include <torch/types.h>

#include "model_store/network/network.h"
#include "vocabulary/status.h"

namespace tucker_seg {

// One preprocessed case: image (1, Z, Y, X) in the network's space; labels (Z, Y, X) int64
// output indices, or undefined for an unlabeled case.
struct TrainingCase {
  torch::Tensor image;
  torch::Tensor labels;
};

struct TrainerOptions {
  int64_t steps = 1000;
  int64_t batch = 2;
  std::string optimizer = "adamw";  // "adamw" or "sgd" (Nesterov, momentum 0.99 as nnU-Net)
  double learning_rate = 1e-3;
  std::string schedule = "poly";    // "poly" (lr * (1 - step/steps)^0.9) or "constant"
  double weight_decay = 3e-5;
  double foreground_oversampling = 0.33;  // share of patches centred on a labelled voxel
  bool augment = true;                    // intensity scaling, contrast, Gaussian noise
  double spatial_augmentation = 0.2;      // share of patches scaled and rotated (0: none)
  double temperature = 2.0;               // distillation: softening of both outputs
  // Distillation: weight of Dice + cross-entropy against the teacher's own argmax (pseudo-labels).
  // The soft KL term alone is dominated by background voxels; this term weighs every class equally.
  double pseudo_label_weight = 1.0;
  uint64_t seed = 12345;
  std::string checkpoint;         // path of the checkpoint file; empty: none
  int64_t checkpoint_every = 100;
  bool resume = false;            // continue from `checkpoint` if it exists
  std::ostream* progress = nullptr;
};

// Samples training patches (B, 1, patch) with their labels (B, patch): foreground oversampling on
// the cases' labels, spatial and intensity augmentation; seeded, so that runs repeat.
class PatchSampler {
 public:
  PatchSampler(const std::vector<TrainingCase>& cases, const Int3& patch, const TrainerOptions& options);
  // Labels are undefined when the cases are unlabeled.
  std::pair<torch::Tensor, torch::Tensor> Batch(int64_t batch);

 private:
  struct Case {
    torch::Tensor image, labels, foreground;  // padded to the patch as at inference
  };
  torch::Tensor Crop(const torch::Tensor& volume, const Int3& start) const;
  // The patch centred where `start` puts it, resampled through a random scaling and rotation:
  // image trilinear, labels nearest, zeros outside the volume.
  std::pair<torch::Tensor, torch::Tensor> Transformed(const Case& c, const Int3& start);
  void Augment(torch::Tensor& image);
  int64_t Uniform(int64_t n);
  double Uniform(double lo, double hi);

  Int3 patch_;
  TrainerOptions options_;
  std::mt19937_64 rng_;
  std::vector<Case> padded_;
};

struct TrainingLog {
  int64_t first_step = 0;  // > 0 when resumed
  std::vector<double> losses;
  double seconds = 0;
};

// Supervised training against labels (the cases must all be labeled).
Result<TrainingLog> Train(PlainConvUNet& net, const Int3& patch, const std::vector<TrainingCase>& cases,
                          const TrainerOptions& options);

// Label-free distillation: on patches of the images the student matches the teacher's softened
// class probabilities (KL divergence at `temperature`, scaled by T^2) plus, weighted by
// `pseudo_label_weight`, Dice + cross-entropy against the teacher's argmax. Patches are centred on
// voxels the teacher segments (its whole-image prediction) at `foreground_oversampling`; labels
// are never read.
Result<TrainingLog> Distill(PlainConvUNet& student, const PlainConvUNet& teacher, const Int3& patch,
                            const std::vector<TrainingCase>& images, const TrainerOptions& options);

// Soft Dice (foreground classes, over the whole batch) + cross-entropy; logits (B, K, ...),
// target (B, ...) int64.
torch::Tensor DiceCrossEntropyLoss(const torch::Tensor& logits, const torch::Tensor& target);

}  // namespace tucker_seg
