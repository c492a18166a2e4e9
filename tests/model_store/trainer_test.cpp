#include "model_store/training/trainer.h"

#include <torch/torch.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model_store/inference/predictor.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

UNetConfig Tiny(int64_t classes) {
  UNetConfig c;
  c.num_classes = classes;
  c.features_per_stage = {8, 16, 16};
  c.kernel_sizes = {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  c.strides = {{1, 1, 1}, {2, 2, 2}, {2, 2, 2}};
  c.n_conv_per_stage = {1, 1, 1};
  c.n_conv_per_stage_decoder = {1, 1};
  return c;
}

// A noisy volume with a bright sphere (class 1) and a darker box (class 2).
TrainingCase Synthetic(uint64_t seed) {
  torch::manual_seed(seed);
  auto z = torch::arange(24).view({24, 1, 1}), y = torch::arange(32).view({1, 32, 1}), x = torch::arange(32).view({1, 1, 32});
  const auto sphere = ((z - 12).pow(2) + (y - 10).pow(2) + (x - 20).pow(2)) < 36;
  const auto box = (z > 4).logical_and(z < 20).logical_and(y > 18).logical_and(y < 28).logical_and(x > 4).logical_and(x < 14);
  auto labels = torch::zeros({24, 32, 32}, torch::kInt64).masked_fill(sphere, 1).masked_fill(box, 2);
  auto image = (labels == 1).to(torch::kFloat32) * 2.0 - (labels == 2).to(torch::kFloat32) * 1.5 + 0.3 * torch::randn({24, 32, 32});
  return {image.unsqueeze(0), labels};
}

double MeanDice(const torch::Tensor& pred, const torch::Tensor& ref, int64_t classes) {
  double sum = 0;
  for (int64_t c = 1; c < classes; ++c) {
    const auto p = pred == c, r = ref == c;
    sum += 2.0 * (p & r).sum().item<double>() / (p.sum().item<double>() + r.sum().item<double>());
  }
  return sum / static_cast<double>(classes - 1);
}

TEST(Trainer, LearnsASyntheticVolume) {
  torch::set_num_threads(2);
  const UNetConfig c = Tiny(3);
  auto net = PlainConvUNet::Create(c, PlainConvUNet::RandomWeights(c, 1)).value();
  TrainerOptions o;
  o.steps = 150;
  o.batch = 2;
  o.learning_rate = 3e-3;
  const TrainingCase train = Synthetic(1);
  auto log = Train(net, {16, 32, 32}, {train}, o);
  ASSERT_TRUE(log.ok()) << log.status().message();
  EXPECT_LT(log.value().losses.back(), log.value().losses.front());
  // Held-out volume: same shapes, new noise.
  const TrainingCase test = Synthetic(2);
  const auto executor = MakeExecutor(net);
  UNetPatchNetwork patch_net(*executor);
  auto logits = SlidingWindowLogits(test.image, {16, 32, 32}, patch_net, {});
  ASSERT_TRUE(logits.ok());
  EXPECT_GT(MeanDice(logits.value().argmax(0), test.labels, 3), 0.9);
}

// Every patch scaled and rotated: image and labels must go through the same transform. The image
// is the label map itself (a 3D checkerboard of 6-voxel blocks), so the rounded image patch
// equals the label patch except next to block borders, where trilinear and nearest differ.
TEST(Trainer, PatchSamplerSpatialAugmentationMovesImageAndLabelsTogether) {
  auto z = torch::arange(24).view({24, 1, 1}), y = torch::arange(48).view({1, 48, 1}), x = torch::arange(48).view({1, 1, 48});
  const auto labels = ((z / 6 + y / 6 + x / 6) % 2).to(torch::kInt64).expand({24, 48, 48}).contiguous();
  TrainerOptions o;
  o.augment = false;
  o.spatial_augmentation = 1.0;
  o.seed = 7;
  PatchSampler sampler({{labels.unsqueeze(0).to(torch::kFloat32), labels}}, {16, 32, 32}, o);
  double worst = 1.0;
  bool moved = false;
  for (int i = 0; i < 20; ++i) {
    auto [image, label] = sampler.Batch(1);
    ASSERT_EQ(image.sizes(), (std::vector<int64_t>{1, 1, 16, 32, 32}));
    ASSERT_EQ(label.sizes(), (std::vector<int64_t>{1, 16, 32, 32}));
    const double same = (image[0][0].round().to(torch::kInt64) == label[0]).to(torch::kFloat32).mean().item<double>();
    worst = std::min(worst, same);
    // A transformed patch is not a plain crop: trilinear sampling off the grid leaves fractions.
    moved = moved || (image[0][0] - image[0][0].round()).abs().max().item<double>() > 0.01;
  }
  EXPECT_GT(worst, 0.9);
  EXPECT_TRUE(moved);
}

TEST(Trainer, ResumeFromCheckpointRepeatsTheRun) {
  torch::set_num_threads(2);
  const UNetConfig c = Tiny(3);
  const auto init = PlainConvUNet::RandomWeights(c, 3);
  const auto dir = testing::TempDir("trainer-resume");
  TrainerOptions o;
  o.batch = 1;
  o.schedule = "constant";
  o.checkpoint_every = 5;
  const TrainingCase data = Synthetic(3);

  auto straight = PlainConvUNet::Create(c, init).value();  // 10 steps in one go
  o.steps = 10;
  ASSERT_TRUE(Train(straight, {16, 32, 32}, {data}, o).ok());

  auto first = PlainConvUNet::Create(c, init).value();  // 5 steps, checkpoint, then resume to 10
  o.steps = 5;
  o.checkpoint = (dir / "ckpt.safetensors").string();
  ASSERT_TRUE(Train(first, {16, 32, 32}, {data}, o).ok());
  auto resumed = PlainConvUNet::Create(c, init).value();
  o.steps = 10;
  o.resume = true;
  auto log = Train(resumed, {16, 32, 32}, {data}, o);
  ASSERT_TRUE(log.ok()) << log.status().message();
  EXPECT_EQ(log.value().first_step, 5);
  const auto a = straight.Weights(), b = resumed.Weights();
  for (const auto& [k, t] : a) EXPECT_LE((t - b.at(k)).abs().max().item<double>(), 1e-5) << k;
}

TEST(Trainer, DistillationPullsAStudentTowardsItsTeacher) {
  torch::set_num_threads(2);
  const UNetConfig c = Tiny(3);
  auto teacher = PlainConvUNet::Create(c, PlainConvUNet::RandomWeights(c, 5)).value();
  TrainerOptions teach;
  teach.steps = 150;
  teach.learning_rate = 3e-3;
  ASSERT_TRUE(Train(teacher, {16, 32, 32}, {Synthetic(1)}, teach).ok());
  auto student = PlainConvUNet::Create(c, PlainConvUNet::RandomWeights(c, 6)).value();
  const TrainingCase data = Synthetic(4);
  auto agreement = [&] {  // new executors each time: they run the weights the network has when made
    const auto teacher_executor = MakeExecutor(teacher), student_executor = MakeExecutor(student);
    const UNetPatchNetwork t(*teacher_executor), s(*student_executor);
    const auto a = SlidingWindowLogits(data.image, {16, 32, 32}, t, {}).value().argmax(0);
    const auto b = SlidingWindowLogits(data.image, {16, 32, 32}, s, {}).value().argmax(0);
    return (a == b).to(torch::kFloat32).mean().item<double>();
  };
  const double before = agreement();
  TrainerOptions o;
  o.steps = 150;
  o.batch = 2;
  o.learning_rate = 3e-3;
  TrainingCase unlabeled{data.image, torch::Tensor()};
  auto log = Distill(student, teacher, {16, 32, 32}, {unlabeled}, o);
  ASSERT_TRUE(log.ok()) << log.status().message();
  const double after = agreement();
  EXPECT_GT(after, before);
  EXPECT_GT(after, 0.9);
}

TEST(Trainer, BadOptionsAreRejectedByName) {
  const UNetConfig c = Tiny(3);
  auto net = PlainConvUNet::Create(c, PlainConvUNet::RandomWeights(c, 1)).value();
  TrainerOptions o;
  o.optimizer = "adam";
  auto r = Train(net, {16, 32, 32}, {Synthetic(1)}, o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), ::testing::HasSubstr("optimizer must be 'adamw' or 'sgd'"));
  r = Train(net, {16, 32, 32}, {{Synthetic(1).image, torch::Tensor()}}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), ::testing::HasSubstr("training needs labels"));
}

}  // namespace
}  // namespace tucker_seg
