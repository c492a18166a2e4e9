#include "model_store/training/training_data.h"

#include <torch/torch.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "image_io/image_io.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

namespace fs = std::filesystem;


ModelInfo LiverSpleenModel() {
  ModelInfo info;
  info.name = "liver-spleen";
  info.patch_size = {16, 64, 64};
  info.spacing = {3, 3, 3};
  info.network.num_classes = 3;
  info.labels = {{0, "background"}, {1, "spleen"}, {5, "liver"}};
  info.channels = {{"CT", "CTNormalization", false, {}}};
  return info;
}

TEST(TrainingData, ForegroundIntensityAndLabelMappingOnARealCt) {
  auto ct = ReadCt(testing::TotalSegmentatorExample("example_ct_sm.nii.gz").string());
  auto seg = ReadCt(testing::TotalSegmentatorExample("example_seg.nii.gz").string());
  ASSERT_TRUE(ct.ok() && seg.ok());
  ModelInfo info = LiverSpleenModel();
  auto intensity = ForegroundIntensity(ct.value(), seg.value(), {1, 5});
  ASSERT_TRUE(intensity.ok()) << intensity.status().message();
  // Liver and spleen are soft tissue: mean in 0..200 HU, percentiles around it.
  EXPECT_GT(intensity.value().mean, 0);
  EXPECT_LT(intensity.value().mean, 200);
  EXPECT_LT(intensity.value().percentile_00_5, intensity.value().mean);
  EXPECT_GT(intensity.value().percentile_99_5, intensity.value().mean);
  info.channels[0].intensity = intensity.value();

  auto c = MakeTrainingCase(info, ct.value(), &seg.value());
  ASSERT_TRUE(c.ok()) << c.status().message();
  // Same 3 mm grid: the labels keep their voxel counts (spleen 9452, liver 38634 in the file),
  // other TotalSegmentator classes become background.
  EXPECT_EQ(c.value().labels.sizes(), (std::vector<int64_t>{30, 101, 122}));
  EXPECT_EQ((c.value().labels == 1).sum().item<int64_t>(), 9452);
  EXPECT_EQ((c.value().labels == 2).sum().item<int64_t>(), 38634);
  EXPECT_EQ(c.value().labels.max().item<int64_t>(), 2);
  EXPECT_EQ(c.value().image.sizes(), (std::vector<int64_t>{1, 30, 101, 122}));
}

TEST(TrainingData, DicePerLabelCountsOverlap) {
  LabelMap pred;
  pred.geometry.size = {4, 1, 1};
  pred.voxels = {0, 5, 5, 1};
  LabelValues ref;
  ref.geometry = pred.geometry;
  ref.voxels = {5, 5, 0, 1};
  const auto dice = DicePerLabel(pred, ref, {1, 5, 52});
  EXPECT_DOUBLE_EQ(dice.at(1), 1.0);
  EXPECT_DOUBLE_EQ(dice.at(5), 0.5);
  EXPECT_EQ(dice.count(52), 0u);  // absent from both
}

}  // namespace
}  // namespace tucker_seg
