// The prediction pipeline: nnU-Net's sliding window against golden files, and geometry on real CTs.
#include "model_store/inference/predictor.h"

#include <fstream>
#include <regex>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/utils.h>
#include <nlohmann/json.hpp>

#include "image_io/image_io.h"
#include "model_store/import/nnunet_import.h"
#include "model_store/format/raw_tensor.h"
#include "model_store/inference/resample.h"
#include "model_store/network/loaded_model.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;




// A 1x1x1 "network" whose output is a fixed function of HU: 0 = air (<= -500 HU), 1 = soft
// tissue, 2 = bone (> 300 HU). Its logits are linear in the normalised intensity, so any error in
// geometry, transposition or resampling shows up as disagreement with thresholding the input.
class HuBands : public PatchNetwork {
 public:
  explicit HuBands(const IntensityProperties& p) : air_((-500.0 - p.mean) / p.std), bone_((300.0 - p.mean) / p.std) {}
  torch::Tensor Forward(const torch::Tensor& x) const override {
    const auto tissue = (x - air_) * 100.0;
    return torch::cat({torch::zeros_like(x), tissue, tissue + (x - bone_) * 100.0}, 1);
  }
  int64_t num_classes() const override { return 3; }

 private:
  double air_, bone_;
};

ModelInfo ThresholdModel(std::array<int, 3> transpose = {0, 1, 2}) {
  ModelInfo info;
  info.name = "bone-threshold";
  info.patch_size = {32, 64, 64};
  info.spacing = {1.5, 1.5, 1.5};
  info.transpose_forward = transpose;
  for (int a = 0; a < 3; ++a) info.transpose_backward[transpose[a]] = a;
  ChannelNormalization ch;
  ch.name = "CT";
  ch.scheme = "CTNormalization";
  ch.intensity.mean = 0;
  ch.intensity.std = 500;
  ch.intensity.percentile_00_5 = -1024;
  ch.intensity.percentile_99_5 = 3000;
  info.channels = {ch};
  info.labels = {{0, "background"}, {1, "soft tissue"}, {2, "bone"}};
  return info;
}

// Dice of {voxels above `hu`} against {labels >= `label`}.
double Dice(const CtVolume& ct, const LabelMap& labels, double hu, uint8_t label) {
  int64_t both = 0, a = 0, b = 0;
  for (size_t i = 0; i < ct.voxels.size(); ++i) {
    const bool truth = ct.voxels[i] > hu, pred = labels.voxels[i] >= label;
    both += truth && pred;
    a += truth;
    b += pred;
  }
  return 2.0 * static_cast<double>(both) / static_cast<double>(a + b);
}

// Body (> -500 HU) must agree to 0.95. Bone (> 300 HU) is reported and held to 0.8: thin,
// partial-volume bone loses voxels when resampled to 1.5 mm and back (measured 0.81-0.91 on these
// CTs), but a one-voxel shift or a flipped axis costs far more than that.
void ExpectGeometryAndDice(const CtVolume& ct, const ModelInfo& info, const std::string& what) {
  HuBands net(info.channels[0].intensity);
  PredictionOptions o;
  o.window.batch = 4;
  auto p = Predict(info, net, ct, o);
  ASSERT_TRUE(p.ok()) << what << ": " << p.status().message();
  EXPECT_EQ(p.value().labels.geometry, ct.geometry) << what;
  ASSERT_EQ(p.value().labels.voxels.size(), ct.voxels.size());
  const double body = Dice(ct, p.value().labels, -500, 1), bone = Dice(ct, p.value().labels, 300, 2);
  std::cout << "[ dice     ] " << what << ": body " << body << ", bone " << bone << "\n";
  EXPECT_GE(body, 0.95) << what;
  EXPECT_GE(bone, 0.80) << what;
  EXPECT_EQ(p.value().label_table.size(), 3u);
}

TEST(Prediction, DicomSeriesJpeg2000KeepsGeometryAndAgreesWithThresholding) {
  torch::set_num_threads(2);
  auto ct = ReadCt(testing::TotalSegmentatorExample("example_ct_dicom").string());
  ASSERT_TRUE(ct.ok()) << ct.status().message();
  EXPECT_EQ(ct.value().geometry.size, (std::array<int64_t, 3>{512, 512, 20}));
  ExpectGeometryAndDice(ct.value(), ThresholdModel(), "DICOM series");
}

TEST(Prediction, NiftiCtsKeepGeometryAndAgreeWithThresholding) {
  torch::set_num_threads(2);
  for (const char* name : {"example_ct.nii.gz", "unlabeled_ct_1p5mm.nii.gz"}) {
    auto ct = ReadCt(testing::TotalSegmentatorExample(name).string());
    ASSERT_TRUE(ct.ok()) << ct.status().message();
    ExpectGeometryAndDice(ct.value(), ThresholdModel(), name);
  }
}

TEST(Prediction, RotatedVolumeAndTransposedModelKeepGeometry) {
  torch::set_num_threads(2);
  auto ct = ReadCt(testing::TotalSegmentatorExample("example_ct_sm.nii.gz").string());
  ASSERT_TRUE(ct.ok()) << ct.status().message();
  // A rotation about z by 30 degrees plus a flip of y: a non-identity, orthonormal direction.
  const double c = std::cos(M_PI / 6), s = std::sin(M_PI / 6);
  ct.value().geometry.direction = {c, s, 0, s, -c, 0, 0, 0, 1};
  ct.value().geometry.spacing = {1.5, 1.5, 5.0};  // anisotropic (ratio > 3): the separate-z path
  ExpectGeometryAndDice(ct.value(), ThresholdModel(), "rotated");
  ExpectGeometryAndDice(ct.value(), ThresholdModel({2, 0, 1}), "rotated, transposed model");
  // Written and read back, the label map keeps the geometry.
  HuBands net(ThresholdModel().channels[0].intensity);
  auto p = Predict(ThresholdModel(), net, ct.value(), {});
  ASSERT_TRUE(p.ok());
  const auto dir = testing::TempDir("prediction-write");
  ASSERT_TRUE(WriteLabelMap((dir / "labels.nii.gz").string(), p.value().labels).ok());
  auto back = ReadCt((dir / "labels.nii.gz").string());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back.value().geometry.size, ct.value().geometry.size);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(back.value().geometry.spacing[i], ct.value().geometry.spacing[i], 1e-5);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(back.value().geometry.origin[i], ct.value().geometry.origin[i], 1e-3);
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(back.value().geometry.direction[i], ct.value().geometry.direction[i], 1e-5);
}

// Mirroring flips each tile, predicts, and flips back: for a pointwise network the average over
// all flips must equal the plain prediction (a missing flip-back would scramble it).
TEST(Prediction, SlidingWindowMirroringFlipsBack) {
  torch::manual_seed(4);
  const ModelInfo info = ThresholdModel();
  HuBands net(info.channels[0].intensity);
  const auto image = torch::randn({1, 40, 70, 70});
  SlidingWindowOptions plain, mirrored;
  mirrored.mirror = true;
  auto a = SlidingWindowLogits(image, info.patch_size, net, plain);
  auto b = SlidingWindowLogits(image, info.patch_size, net, mirrored);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_LE((a.value() - b.value()).abs().max().item<double>(), 1e-3);
}

// A canonical-orientation model sees the same array whichever way the file stores the voxels.
TEST(Prediction, CanonicalOrientationUndoesStorageFlipsAndPermutations) {
  auto ct = ReadCt(testing::TotalSegmentatorExample("example_ct_sm.nii.gz").string());  // stored RAS: direction (-1, -1, 1)
  ASSERT_TRUE(ct.ok());
  const CtVolume& a = ct.value();
  // The same patient stored as LPS with x and y swapped: voxel (x, y, z) of b is voxel (X-1-y', ...) of a.
  CtVolume b;
  const auto& s = a.geometry.size;
  b.geometry.size = {s[1], s[0], s[2]};
  b.geometry.spacing = {a.geometry.spacing[1], a.geometry.spacing[0], a.geometry.spacing[2]};
  b.geometry.direction = {0, 1, 0, 1, 0, 0, 0, 0, 1};  // index x -> world +Y, index y -> world +X
  b.geometry.origin = a.geometry.origin;  // the physical placement is irrelevant to the array view
  b.voxels.resize(a.voxels.size());
  for (int64_t z = 0; z < s[2]; ++z)
    for (int64_t y = 0; y < s[1]; ++y)
      for (int64_t x = 0; x < s[0]; ++x) {
        // a's index x runs towards world -X (right), so world +X (left) is x' = s0-1-x; same for y.
        const int64_t bx = s[1] - 1 - y, by = s[0] - 1 - x;
        b.voxels[static_cast<size_t>(bx + s[1] * (by + s[0] * z))] = a.voxels[static_cast<size_t>(x + s[0] * (y + s[1] * z))];
      }
  ModelInfo info = ThresholdModel();
  info.orientation = "RAS";
  auto pa = Preprocess(info, a), pb = Preprocess(info, b);
  ASSERT_TRUE(pa.ok() && pb.ok());
  ASSERT_EQ(pa.value().image.sizes(), pb.value().image.sizes());
  EXPECT_LE((pa.value().image - pb.value().image).abs().max().item<double>(), 1e-4);
  // And the labels come back in each file's own storage order.
  HuBands net(info.channels[0].intensity);
  auto la = Predict(info, net, a, {}), lb = Predict(info, net, b, {});
  ASSERT_TRUE(la.ok() && lb.ok());
  int64_t differ = 0;
  for (int64_t z = 0; z < s[2]; ++z)
    for (int64_t y = 0; y < s[1]; ++y)
      for (int64_t x = 0; x < s[0]; ++x)
        differ += la.value().labels.voxels[static_cast<size_t>(x + s[0] * (y + s[1] * z))] !=
                  lb.value().labels.voxels[static_cast<size_t>((s[1] - 1 - y) + s[1] * ((s[0] - 1 - x) + s[0] * z))];
  EXPECT_EQ(differ, 0);
}

TEST(Prediction, CropsToTheNonZeroBoxAlongEachAxis) {
  // nnU-Net's crop_to_nonzero: outside the box of non-zero voxels everything is background, though
  // 0 HU is soft tissue to the network; inside it a zero voxel is predicted like any other. A box
  // with a different extent along each axis, with and without the model's transpose, shows each
  // axis's bounds land on their own axis.
  CtVolume ct;
  ct.geometry.size = {48, 40, 36};
  ct.geometry.spacing = {1.5, 1.5, 1.5};  // the model's: no resampling, so labels are exact
  ct.voxels.assign(static_cast<size_t>(ct.geometry.NumVoxels()), 0.0f);
  const auto index = [](int64_t x, int64_t y, int64_t z) { return static_cast<size_t>((z * 40 + y) * 48 + x); };
  const auto inside = [](int64_t x, int64_t y, int64_t z) { return x >= 5 && x < 30 && y >= 8 && y < 33 && z >= 3 && z < 20; };
  for (int64_t z = 0; z < 36; ++z)
    for (int64_t y = 0; y < 40; ++y)
      for (int64_t x = 0; x < 48; ++x)
        if (inside(x, y, z)) ct.voxels[index(x, y, z)] = 40.0f;
  ct.voxels[index(12, 20, 10)] = 0.0f;  // a zero inside the box
  for (const std::array<int, 3>& transpose : {std::array<int, 3>{0, 1, 2}, std::array<int, 3>{2, 0, 1}}) {
    const ModelInfo info = ThresholdModel(transpose);
    HuBands net(info.channels[0].intensity);
    auto p = Predict(info, net, ct, {});
    ASSERT_TRUE(p.ok()) << p.status().message();
    int64_t wrong = 0;
    for (int64_t z = 0; z < 36; ++z)
      for (int64_t y = 0; y < 40; ++y)
        for (int64_t x = 0; x < 48; ++x) wrong += p.value().labels.voxels[index(x, y, z)] != (inside(x, y, z) ? 1 : 0);
    EXPECT_EQ(wrong, 0) << "transpose " << transpose[0] << transpose[1] << transpose[2];
  }
}

TEST(Prediction, ConsumingTheCtLabelsLikeKeepingItAndFreesItsVoxels) {
  // `predict` hands its CT over so that the sliding window's peak does not hold the input too; the
  // labels must be those of the prediction that leaves the CT with its caller, on its geometry.
  CtVolume ct;
  ct.geometry.size = {40, 36, 30};
  ct.geometry.spacing = {1.2, 1.0, 2.0};  // resampled to the model's 1.5 mm: the export interpolates
  ct.geometry.origin = {-10, 5, 30};
  ct.voxels.resize(static_cast<size_t>(ct.geometry.NumVoxels()));
  for (size_t i = 0; i < ct.voxels.size(); ++i) ct.voxels[i] = static_cast<float>(static_cast<int64_t>(i * 7919 % 1700) - 300);
  const ModelInfo info = ThresholdModel();
  HuBands net(info.channels[0].intensity);
  auto kept = Predict(info, net, ct, {});
  ASSERT_TRUE(kept.ok()) << kept.status().message();
  ASSERT_EQ(ct.voxels.size(), static_cast<size_t>(ct.geometry.NumVoxels()));
  const Geometry geometry = ct.geometry;
  auto consumed = Predict(info, net, std::move(ct), {});
  ASSERT_TRUE(consumed.ok()) << consumed.status().message();
  EXPECT_TRUE(ct.voxels.empty());  // NOLINT(bugprone-use-after-move): freeing them is the point
  EXPECT_EQ(consumed.value().labels.geometry, geometry);
  EXPECT_EQ(consumed.value().labels.voxels, kept.value().labels.voxels);
  EXPECT_GT(std::count(kept.value().labels.voxels.begin(), kept.value().labels.voxels.end(), 2), 0);  // not all one class
}

// K classes, each the best in its own band of intensity, with logits that vary smoothly and
// are never peaked: interpolated borders lie everywhere in a noisy CT.
class IntensityBands : public PatchNetwork {
 public:
  explicit IntensityBands(int64_t classes) : classes_(classes) {}
  torch::Tensor Forward(const torch::Tensor& x) const override {
    std::vector<torch::Tensor> logits;
    for (int64_t c = 0; c < classes_; ++c) logits.push_back(-(x - (-1.0 + 4.0 * c / classes_)).pow(2));
    return torch::cat(logits, 1);
  }
  int64_t num_classes() const override { return classes_; }

 private:
  int64_t classes_;
};

TEST(Prediction, LabelsAreTheArgmaxOfTheWholeVolumesResizedLogits) {
  // The streamed prediction (rows normalised by the export as it reads them, labels per output
  // slice) against the whole volume's normalised logits resized by LibTorch and argmaxed, wherever
  // the two best classes differ by more than 1e-4. Two tiles overlap along z, so the Gaussian's sums
  // vary per voxel and a row divided wrongly shows.
  CtVolume ct;
  ct.geometry.size = {40, 36, 30};
  ct.geometry.spacing = {1.2, 1.0, 2.0};  // to the model's 1.5 mm: every axis interpolates
  ct.voxels.resize(static_cast<size_t>(ct.geometry.NumVoxels()));
  for (size_t i = 0; i < ct.voxels.size(); ++i) ct.voxels[i] = static_cast<float>(static_cast<int64_t>(i * 7919 % 1700) - 300) + 0.5f;
  ModelInfo info = ThresholdModel();
  info.labels.clear();
  const int64_t classes = 7;
  for (int64_t c = 0; c < classes; ++c) info.labels.emplace_back(c, "band_" + std::to_string(c));
  IntensityBands net(classes);
  auto p = Predict(info, net, ct, {});
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p.value().tiles, 2);

  auto pre = Preprocess(info, ct);
  ASSERT_TRUE(pre.ok()) << pre.status().message();
  auto logits = SlidingWindowLogits(pre.value().image, info.patch_size, net, {});
  ASSERT_TRUE(logits.ok()) << logits.status().message();
  const torch::Tensor resized = torch::upsample_trilinear3d(logits.value().unsqueeze(0), {30, 36, 40}, false).squeeze(0);
  const torch::Tensor top2 = std::get<0>(resized.topk(2, 0));
  const torch::Tensor decided = (top2[0] - top2[1]) > 1e-4;
  const torch::Tensor expected = resized.argmax(0).to(torch::kUInt8);
  const torch::Tensor labels = torch::from_blob(p.value().labels.voxels.data(), {30, 36, 40}, torch::kUInt8);
  EXPECT_GT(decided.sum().item<int64_t>(), expected.numel() * 9 / 10);
  EXPECT_TRUE(torch::equal(labels.masked_select(decided), expected.masked_select(decided)));
  EXPECT_GT(std::get<0>(torch::_unique(expected)).numel(), 4);  // several classes win somewhere
}

TEST(Prediction, RoiSubsetRunsOnlyTheTilesItsClassesNeed) {
  // A long volume of soft tissue with one bone block near its start: asking for bone only must
  // run far fewer tiles, and give the same bone labels as the full prediction.
  CtVolume ct;
  ct.geometry.size = {64, 64, 320};
  ct.geometry.spacing = {1.5, 1.5, 1.5};
  ct.voxels.assign(static_cast<size_t>(ct.geometry.NumVoxels()), -100.0f);  // not 0: nnU-Net crops zeros away
  for (int64_t z = 20; z < 40; ++z)
    for (int64_t y = 20; y < 40; ++y)
      for (int64_t x = 20; x < 40; ++x) ct.voxels[static_cast<size_t>((z * 64 + y) * 64 + x)] = 800.0f;
  const ModelInfo info = ThresholdModel();
  HuBands net(info.channels[0].intensity);
  auto full = Predict(info, net, ct, {});
  ASSERT_TRUE(full.ok()) << full.status().message();
  PredictionOptions o;
  o.roi = RoiOptions{nullptr, {2}};  // bone; the coarse pass uses the same network
  auto roi = Predict(info, net, ct, o);
  ASSERT_TRUE(roi.ok()) << roi.status().message();
  EXPECT_EQ(roi.value().full_tiles, full.value().tiles);
  EXPECT_GT(roi.value().coarse_tiles, 0);
  EXPECT_LT(roi.value().tiles, full.value().tiles / 2);
  std::cout << "[ roi      ] tiles: full " << full.value().tiles << ", coarse " << roi.value().coarse_tiles << " + ROI "
            << roi.value().tiles << "\n";
  int64_t bone_full = 0, bone_same = 0, far_labelled = 0;
  for (size_t i = 0; i < ct.voxels.size(); ++i) {
    bone_full += full.value().labels.voxels[i] == 2;
    bone_same += full.value().labels.voxels[i] == 2 && roi.value().labels.voxels[i] == 2;
    if (i >= static_cast<size_t>(160 * 64 * 64)) far_labelled += roi.value().labels.voxels[i] != 0;  // far from the block
  }
  EXPECT_GT(bone_full, 7000);
  EXPECT_EQ(bone_same, bone_full);
  EXPECT_EQ(far_labelled, 0);  // tiles that did not run are background

  o.roi = RoiOptions{nullptr, {7}};
  EXPECT_FALSE(Predict(info, net, ct, o).ok());  // not an output of the network
}

TEST(Prediction, StreamingKeepsOnlyOneTileDepthOfLogits) {
  // A long, narrow volume: the slab buffer must hold one tile's depth, not the whole length.
  CtVolume ct;
  ct.geometry.size = {40, 40, 400};
  ct.geometry.spacing = {1.5, 1.5, 1.5};
  ct.voxels.assign(static_cast<size_t>(ct.geometry.NumVoxels()), 0.0f);
  for (size_t i = 0; i < ct.voxels.size(); ++i) ct.voxels[i] = (i % 7 == 0) ? 500.0f : -100.0f;
  const ModelInfo info = ThresholdModel();
  HuBands net(info.channels[0].intensity);
  auto p = Predict(info, net, ct, {});
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p.value().peak_logits_bytes, (3 + 1) * 32 * 64 * 64 * 4);  // (classes + weights) x tile depth
  EXPECT_GE(Dice(ct, p.value().labels, 300, 2), 0.99);
}

// The network calls made, for tests that check when work stops.
class CountingNetwork : public HuBands {
 public:
  using HuBands::HuBands;
  torch::Tensor Forward(const torch::Tensor& x) const override {
    ++calls;
    return HuBands::Forward(x);
  }
  mutable int calls = 0;
};

TEST(Prediction, CancellationStopsPreprocessingBeforeAnyTile) {
  CtVolume ct;
  ct.geometry.size = {40, 40, 400};  // 400 rows: 25 slabs of preprocessing
  ct.geometry.spacing = {1.5, 1.5, 1.5};
  ct.voxels.assign(static_cast<size_t>(ct.geometry.NumVoxels()), 100.0f);
  const ModelInfo info = ThresholdModel();
  CountingNetwork net(info.channels[0].intensity);
  PredictionOptions options;
  int asked = 0;
  // The client goes away while the second slab is preprocessed.
  options.window.should_continue = [&asked] { return ++asked < 2 ? Status::Ok() : Cancelled("the client cancelled the request"); };
  auto p = Predict(info, net, ct, options);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(asked, 2);
  EXPECT_EQ(net.calls, 0) << "preprocessing ran to the end and the window started";
}

TEST(Prediction, WorkEstimateRefusesHugeGridsBeforeCountingTiles) {
  const ModelInfo info = ThresholdModel();
  Geometry g;
  g.size = {200, 180, 90};
  g.spacing = {1, 1, 2};
  const WorkLimits limits{int64_t{256} << 20, 20000};
  auto fine = EstimateWork(info, g, 0.5, limits);
  ASSERT_TRUE(fine.ok()) << fine.status().message();
  EXPECT_EQ(fine.value().tiles, EstimateTiles(info, g, 0.5));
  EXPECT_EQ(fine.value().grid_voxels, fine.value().grid[0] * fine.value().grid[1] * fine.value().grid[2]);
  EXPECT_EQ(fine.value().window_bytes, EstimateWindowBytes(info, g));
  // One voxel that claims to be kilometres wide, or wider than a double's integers reach.
  g.size = {1, 1, 1};
  for (double spacing : {3000.0, 1e12, 1e300}) {
    g.spacing = {spacing, spacing, spacing};
    const auto refused = EstimateWork(info, g, 0.5, limits);
    ASSERT_FALSE(refused.ok()) << spacing;
    EXPECT_NE(refused.status().message().find("more than max_grid_voxels 268435456"), std::string::npos) << refused.status().message();
  }
  // A long thin grid within the voxel limit but with too many tiles.
  g.size = {4000, 1, 1};
  g.spacing = {10, 1, 1};
  const auto tiles = EstimateWork(info, g, 0.5, {int64_t{1} << 40, 100});
  ASSERT_FALSE(tiles.ok());
  EXPECT_NE(tiles.status().message().find("more than max_tiles 100"), std::string::npos) << tiles.status().message();
}

TEST(Prediction, BadVolumesAreRejectedWithClearMessages) {
  const ModelInfo info = ThresholdModel();
  HuBands net(info.channels[0].intensity);
  auto make = [] {
    CtVolume ct;
    ct.geometry.size = {8, 8, 8};
    ct.voxels.assign(512, 100.0f);
    return ct;
  };
  auto expect = [&](CtVolume ct, const std::string& message) {
    auto p = Predict(info, net, ct, {});
    ASSERT_FALSE(p.ok()) << message;
    EXPECT_THAT(p.status().message(), HasSubstr(message));
  };
  CtVolume ct = make();
  ct.geometry.spacing[1] = 0;
  expect(ct, "spacing.y is 0.000000, must be finite and > 0");
  ct = make();
  ct.geometry.spacing[2] = -1.5;
  expect(ct, "spacing.z is -1.500000, must be finite and > 0");
  ct = make();
  ct.voxels[77] = std::nanf("");
  expect(ct, "voxel 77 is not finite");
  ct = make();
  ct.geometry.size = {8, 0, 8};
  ct.voxels.clear();
  expect(ct, "size.y is 0, must be >= 1");
  ct = make();
  ct.geometry.direction = {1, 0, 0, 0.5, 1, 0, 0, 0, 1};
  expect(ct, "direction is not orthonormal");
  ct = make();
  ct.geometry.spacing = {0.05, 0.05, 0.05};
  expect(ct, "smaller than one voxel along axis 0 after resampling to 1.5");
  EXPECT_TRUE(Predict(info, net, make(), {}).ok());  // and a good one passes
}

// Two label maps of the same size, voxel by voxel: how many agree, how many of the first are foreground.
struct LabelAgreement {
  int64_t same = 0, foreground = 0;
};
LabelAgreement Compare(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  LabelAgreement out;
  for (size_t i = 0; i < a.size(); ++i) {
    out.same += a[i] == b[i];
    out.foreground += a[i] != 0;
  }
  return out;
}

// The path every non-CPU device runs (LibTorch's generic ops in the network, upsample + argmax
// in the export), taken on the CPU: a float64 copy of the bundled model through the same
// Predict must label a real CT like the CPU's fused kernels do.
TEST(Prediction, DeviceGenericPathAgreesWithTheCpuKernels) {
  auto model = LoadNetwork((testing::SourceDir() / "models/tucker-abdomen-3mm").string());
  ASSERT_TRUE(model.ok()) << model.status().message();
  auto ct = ReadCt(testing::TotalSegmentatorExample("example_ct_sm.nii.gz").string());
  ASSERT_TRUE(ct.ok()) << ct.status().message();
  const ModelInfo& info = model.value().info;

  const auto cpu_executor = model.value().Executor();
  UNetPatchNetwork cpu_net(*cpu_executor);
  auto fused = Predict(info, cpu_net, ct.value(), {});
  ASSERT_TRUE(fused.ok()) << fused.status().message();

  const auto generic_executor = MakeExecutor(model.value().network.To(torch::kCPU, torch::kFloat64));
  UNetPatchNetwork generic_net(*generic_executor);
  PredictionOptions generic_options;
  generic_options.cpu_export_kernel = false;
  auto generic = Predict(info, generic_net, ct.value(), generic_options);
  ASSERT_TRUE(generic.ok()) << generic.status().message();

  const auto& a = fused.value().labels.voxels;
  ASSERT_EQ(a.size(), generic.value().labels.voxels.size());
  const LabelAgreement agree = Compare(a, generic.value().labels.voxels);
  const double agreement = static_cast<double>(agree.same) / static_cast<double>(a.size());
  std::cout << "[ agree    ] generic vs fused: " << 100 * agreement << "% of " << a.size() << " voxels\n";
  EXPECT_GT(agree.foreground, 10000);  // the model segments something, so agreement is not all background
  EXPECT_GE(agreement, 0.999);
}

// The CPU engine's head adds its Gaussian-weighted logits into the sliding window's accumulator
// (no tile of logits is written): a real CT gets the same labels as with a tile of logits added
// by the window.
TEST(Prediction, EngineHeadSumLabelsLikeTheWindowsOwnSum) {
  auto model = LoadNetwork((testing::SourceDir() / "models/tucker-abdomen-3mm").string());
  ASSERT_TRUE(model.ok()) << model.status().message();
  auto ct = ReadCt(testing::TotalSegmentatorExample("example_ct_sm.nii.gz").string());
  ASSERT_TRUE(ct.ok()) << ct.status().message();
  const auto executor = model.value().Executor();
  UNetPatchNetwork engine(*executor);
  auto summed = Predict(model.value().info, engine, ct.value(), {});
  ASSERT_TRUE(summed.ok()) << summed.status().message();
  auto added = Predict(model.value().info, ForwardOnly(engine), ct.value(), {});
  ASSERT_TRUE(added.ok()) << added.status().message();
  const auto& a = summed.value().labels.voxels;
  ASSERT_EQ(a.size(), added.value().labels.voxels.size());
  const LabelAgreement agree = Compare(a, added.value().labels.voxels);
  EXPECT_GT(agree.foreground, 10000);
  EXPECT_EQ(agree.same, static_cast<int64_t>(a.size()));  // every voxel
}

}  // namespace
}  // namespace tucker_seg
