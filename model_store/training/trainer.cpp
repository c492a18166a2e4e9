#include "model_store/training/trainer.h"

#include <torch/torch.h>

#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <random>

#include "model_store/inference/predictor.h"
#include "model_store/network/libtorch_executor.h"
#include "model_store/format/safetensors.h"
#include "model_store/inference/sliding_window.h"

namespace tucker_seg {

namespace F = torch::nn::functional;

PatchSampler::PatchSampler(const std::vector<TrainingCase>& cases, const Int3& patch, const TrainerOptions& o)
    : patch_(patch), options_(o), rng_(o.seed) {
  for (const auto& c : cases) {
    Int3 pad{};
    Case p;
    p.image = PadToTile(c.image, patch, &pad);  // as at inference: zeros, lower pad = difference / 2
    if (c.labels.defined()) {
      p.labels = PadToTile(c.labels.unsqueeze(0), patch, &pad).squeeze(0);
      p.foreground = p.labels.nonzero();  // (n, 3)
    }
    padded_.push_back(p);
  }
}

std::pair<torch::Tensor, torch::Tensor> PatchSampler::Batch(int64_t batch) {
  std::vector<torch::Tensor> images, labels;
  for (int64_t b = 0; b < batch; ++b) {
    const auto& c = padded_[Uniform(static_cast<int64_t>(padded_.size()))];
    Int3 start{};
    const bool centre_on_foreground = c.foreground.defined() && c.foreground.size(0) > 0 &&
                                      Uniform(0.0, 1.0) < options_.foreground_oversampling;
    const auto voxel = centre_on_foreground ? c.foreground[Uniform(c.foreground.size(0))] : torch::Tensor();
    for (int a = 0; a < 3; ++a) {
      const int64_t room = c.image.size(a + 1) - patch_[a];
      start[a] = centre_on_foreground ? std::clamp(voxel[a].item<int64_t>() - patch_[a] / 2, int64_t{0}, room) : Uniform(room + 1);
    }
    torch::Tensor image, label;
    if (options_.spatial_augmentation > 0 && Uniform(0.0, 1.0) < options_.spatial_augmentation) {
      std::tie(image, label) = Transformed(c, start);
    } else {
      image = Crop(c.image.squeeze(0), start).unsqueeze(0).clone();
      if (c.labels.defined()) label = Crop(c.labels, start);
    }
    if (options_.augment) Augment(image);
    images.push_back(image);
    if (label.defined()) labels.push_back(label);
  }
  return {torch::stack(images), labels.empty() ? torch::Tensor() : torch::stack(labels)};
}

torch::Tensor PatchSampler::Crop(const torch::Tensor& volume, const Int3& start) const {
  return volume.slice(0, start[0], start[0] + patch_[0]).slice(1, start[1], start[1] + patch_[1])
      .slice(2, start[2], start[2] + patch_[2]);
}

// Scaling 0.7-1.4 as nnU-Net; rotation about axis 0 (+-15 degrees, in the plane of axes 1 and 2,
// whose spacings are equal in CT).
std::pair<torch::Tensor, torch::Tensor> PatchSampler::Transformed(const Case& c, const Int3& start) {
  const double scale = Uniform(0.7, 1.4), angle = Uniform(-15.0, 15.0) * M_PI / 180.0;
  const double cos_a = std::cos(angle), sin_a = std::sin(angle);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  std::array<torch::Tensor, 3> offset;  // output voxel minus patch centre, per axis
  for (int a = 0; a < 3; ++a) offset[a] = torch::arange(patch_[a], opts) - (patch_[a] - 1) / 2.0;
  auto o0 = offset[0].view({-1, 1, 1}).expand({patch_[0], patch_[1], patch_[2]});
  auto o1 = offset[1].view({1, -1, 1}).expand({patch_[0], patch_[1], patch_[2]});
  auto o2 = offset[2].view({1, 1, -1}).expand({patch_[0], patch_[1], patch_[2]});
  std::array<torch::Tensor, 3> source{
      o0 * scale,
      (o1 * cos_a - o2 * sin_a) * scale,
      (o1 * sin_a + o2 * cos_a) * scale,
  };
  std::array<torch::Tensor, 3> normalised;  // grid_sample's [-1, 1], align_corners = true
  for (int a = 0; a < 3; ++a) {
    const double size = static_cast<double>(c.image.size(a + 1));
    const double centre = static_cast<double>(start[a]) + (patch_[a] - 1) / 2.0;
    normalised[a] = (source[a] + centre) * (2.0 / (size - 1)) - 1;
  }
  const auto grid = torch::stack({normalised[2], normalised[1], normalised[0]}, -1).unsqueeze(0);  // (x, y, z)
  auto sample = [&](const torch::Tensor& volume, torch::nn::functional::GridSampleFuncOptions::mode_t mode) {
    return F::grid_sample(volume.to(torch::kFloat32).unsqueeze(0), grid,
                          F::GridSampleFuncOptions().mode(mode).padding_mode(torch::kZeros).align_corners(true))
        .squeeze(0);
  };
  auto image = sample(c.image, torch::kBilinear);
  torch::Tensor labels;
  if (c.labels.defined()) labels = sample(c.labels.unsqueeze(0), torch::kNearest).squeeze(0).round().to(torch::kInt64);
  return {image, labels};
}

int64_t PatchSampler::Uniform(int64_t n) { return std::uniform_int_distribution<int64_t>(0, n - 1)(rng_); }
double PatchSampler::Uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }

// nnU-Net-like intensity augmentation (no mirroring: left/right classes must stay apart).
void PatchSampler::Augment(torch::Tensor& image) {
  if (Uniform(0.0, 1.0) < 0.15) image.mul_(Uniform(0.75, 1.25));  // brightness
  if (Uniform(0.0, 1.0) < 0.15) {                                   // contrast
    const auto mean = image.mean();
    image.sub_(mean).mul_(Uniform(0.75, 1.25)).add_(mean);
  }
  if (Uniform(0.0, 1.0) < 0.1) {  // Gaussian noise, from a generator seeded by our own stream
    auto gen = at::detail::createCPUGenerator(rng_());
    image.add_(at::normal(0.0, Uniform(0.0, 0.1), image.sizes(), gen));
  }
}

namespace {

using Clock = std::chrono::steady_clock;

std::vector<torch::Tensor> Parameters(PlainConvUNet& net) {
  std::vector<torch::Tensor> params;
  for (auto& [name, t] : net.Weights()) {
    t.requires_grad_(true);
    params.push_back(t);
  }
  return params;
}


double LearningRate(const TrainerOptions& o, int64_t step) {
  if (o.schedule == "constant") return o.learning_rate;
  return o.learning_rate * std::pow(1.0 - static_cast<double>(step) / static_cast<double>(o.steps), 0.9);
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const std::vector<torch::Tensor>& params, const TrainerOptions& o) {
  if (o.optimizer == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.learning_rate).momentum(0.99).nesterov(true).weight_decay(o.weight_decay));
  }
  return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(o.learning_rate).weight_decay(o.weight_decay));
}

void SetLearningRate(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups()) group.options().set_lr(lr);
}

Status SaveCheckpoint(const PlainConvUNet& net, const torch::optim::Optimizer& opt, const std::string& path, int64_t step) {
  torch::NoGradGuard no_grad;
  WeightMap w;
  for (const auto& [k, t] : net.Weights()) w[k] = t.detach();
  TS_RETURN_IF_ERROR(WriteSafetensors(path, w, {{"step", std::to_string(step)}}));
  try {
    torch::save(opt, path + ".optimizer");
  } catch (const std::exception& e) {
    return Internal("cannot save optimizer state: " + std::string(e.what()).substr(0, 200));
  }
  return Status::Ok();
}

// Loads a checkpoint into the network's tensors and the optimizer; returns the step it reached.
Result<int64_t> LoadCheckpoint(PlainConvUNet& net, torch::optim::Optimizer& opt, const std::string& path) {
  std::map<std::string, std::string> metadata;
  auto saved = ReadSafetensors(path, &metadata);
  if (!saved.ok()) return saved.status();
  torch::NoGradGuard no_grad;
  auto current = net.Weights();
  for (auto& [k, t] : current) {
    auto it = saved.value().find(k);
    if (it == saved.value().end() || it->second.sizes() != t.sizes()) {
      return InvalidArgument("checkpoint '" + path + "' does not fit this network (tensor '" + k + "')");
    }
    t.copy_(it->second);
  }
  try {
    torch::load(opt, path + ".optimizer");
  } catch (const std::exception& e) {
    return DataLoss("cannot read optimizer state '" + path + ".optimizer': " + std::string(e.what()).substr(0, 200));
  }
  const auto step = metadata.find("step");
  if (step == metadata.end()) return int64_t{0};
  try {
    return std::stoll(step->second);
  } catch (const std::exception&) {
    return DataLoss("checkpoint '" + path + "' has a step that is not a number");
  }
}

void Progress(std::ostream* out, int64_t step, int64_t steps, double loss, double elapsed, int64_t first) {
  if (!out) return;
  const int width = 30;
  const int filled = static_cast<int>(width * (step + 1) / steps);
  const double per_step = elapsed / static_cast<double>(step + 1 - first);
  const auto eta = static_cast<int64_t>(per_step * static_cast<double>(steps - step - 1));
  *out << "\r[" << std::string(filled, '#') << std::string(width - filled, '.') << "] step " << step + 1 << "/" << steps
       << " loss " << std::fixed << std::setprecision(4) << loss << " ETA " << eta / 60 << "m" << std::setw(2)
       << std::setfill('0') << eta % 60 << "s" << std::setfill(' ') << std::flush;
  if (step + 1 == steps) *out << "\n";
}

// The loop shared by training and distillation; `loss_of` maps a sampled batch to a loss.
template <typename LossFn>
Result<TrainingLog> Loop(PlainConvUNet& net, PatchSampler& sampler, const TrainerOptions& o, LossFn loss_of) {
  if (o.steps < 1 || o.batch < 1) return InvalidArgument("steps and batch must be >= 1");
  if (o.optimizer != "adamw" && o.optimizer != "sgd") return InvalidArgument("optimizer must be 'adamw' or 'sgd', got '" + o.optimizer + "'");
  if (o.schedule != "poly" && o.schedule != "constant") return InvalidArgument("schedule must be 'poly' or 'constant', got '" + o.schedule + "'");
  torch::manual_seed(o.seed);
  auto params = Parameters(net);
  auto opt = MakeOptimizer(params, o);
  TrainingLog log;
  if (o.resume && !o.checkpoint.empty() && std::filesystem::exists(o.checkpoint)) {
    auto step = LoadCheckpoint(net, *opt, o.checkpoint);
    if (!step.ok()) return step.status();
    log.first_step = step.value();
    for (int64_t s = 0; s < log.first_step; ++s) sampler.Batch(o.batch);  // replay the sampler so the run repeats
  }
  const auto start = Clock::now();
  for (int64_t step = log.first_step; step < o.steps; ++step) {
    SetLearningRate(*opt, LearningRate(o, step));
    auto [images, labels] = sampler.Batch(o.batch);
    opt->zero_grad();
    torch::Tensor loss = loss_of(images, labels);
    loss.backward();
    torch::nn::utils::clip_grad_norm_(params, 12.0);
    opt->step();
    log.losses.push_back(loss.item<double>());
    Progress(o.progress, step, o.steps, log.losses.back(), std::chrono::duration<double>(Clock::now() - start).count(), log.first_step);
    if (!o.checkpoint.empty() && ((step + 1) % o.checkpoint_every == 0 || step + 1 == o.steps)) {
      TS_RETURN_IF_ERROR(SaveCheckpoint(net, *opt, o.checkpoint, step + 1));
    }
  }
  for (auto& p : params) p.requires_grad_(false);
  log.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return log;
}

}  // namespace

torch::Tensor DiceCrossEntropyLoss(const torch::Tensor& logits, const torch::Tensor& target) {
  const int64_t k = logits.size(1);
  const auto ce = F::cross_entropy(logits, target);
  const auto probs = logits.softmax(1);
  const auto onehot = F::one_hot(target, k).movedim(-1, 1).to(probs.scalar_type());
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < logits.dim(); ++d) dims.push_back(d);
  const auto intersection = (probs * onehot).sum(dims);
  const auto denominator = probs.sum(dims) + onehot.sum(dims);
  const auto dice = (2 * intersection + 1e-5) / (denominator + 1e-5);
  return ce + (1 - dice.slice(0, 1).mean());  // foreground classes only
}

Result<TrainingLog> Train(PlainConvUNet& net, const Int3& patch, const std::vector<TrainingCase>& cases, const TrainerOptions& o) {
  if (cases.empty()) return InvalidArgument("no training cases");
  for (const auto& c : cases)
    if (!c.labels.defined()) return InvalidArgument("training needs labels for every case");
  PatchSampler sampler(cases, patch, o);
  return Loop(net, sampler, o, [&](const torch::Tensor& images, const torch::Tensor& labels) {
    return DiceCrossEntropyLoss(LibTorchForward(net, images, LibTorchOps::Training()), labels);
  });
}

Result<TrainingLog> Distill(PlainConvUNet& student, const PlainConvUNet& teacher, const Int3& patch,
                            const std::vector<TrainingCase>& images, const TrainerOptions& o) {
  if (images.empty()) return InvalidArgument("no images to distill on");
  // The teacher's whole-image predictions stand in for labels when sampling patches.
  std::vector<TrainingCase> pseudo_labeled;
  const auto teacher_executor = MakeExecutor(teacher);
  {
    torch::NoGradGuard no_grad;
    const UNetPatchNetwork teacher_net(*teacher_executor);
    for (const auto& c : images) {  // c.labels is never read
      auto logits = SlidingWindowLogits(c.image, patch, teacher_net, {});
      if (!logits.ok()) return logits.status();
      pseudo_labeled.push_back({c.image, logits.value().argmax(0)});
    }
  }
  PatchSampler sampler(pseudo_labeled, patch, o);
  const double t = o.temperature;
  return Loop(student, sampler, o, [&](const torch::Tensor& batch, const torch::Tensor&) {
    torch::Tensor teacher_logits;
    {
      torch::NoGradGuard no_grad;
      teacher_logits = teacher_executor->Forward(batch);
    }
    const auto student_logits = LibTorchForward(student, batch, LibTorchOps::Training());
    const auto target = (teacher_logits / t).softmax(1);
    const auto log_student = (student_logits / t).log_softmax(1);
    const auto soft = F::kl_div(log_student, target, F::KLDivFuncOptions().reduction(torch::kBatchMean)) * (t * t) /
                      static_cast<double>(batch.size(2) * batch.size(3) * batch.size(4));
    if (o.pseudo_label_weight == 0) return soft;
    return soft + o.pseudo_label_weight * DiceCrossEntropyLoss(student_logits, teacher_logits.argmax(1));
  });
}

}  // namespace tucker_seg
