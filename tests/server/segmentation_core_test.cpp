// The serving core without a server or a stream: admission from a request's header alone, and a
// run on the bundled model whose progress goes to a recording sink.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include <ATen/Parallel.h>

#include "server/serving/segmentation_core.h"
#include "test_paths.h"
#include "wire/volume_wire.h"

namespace tucker_seg::server {
namespace {

// The bundled model store on the CPU, uncalibrated, behind one worker.
class SegmentationCore : public ::testing::Test {
 protected:
  void SetUp() override {
    at::set_num_threads(2);
    auto catalog = LoadModelPool((testing::SourceDir() / "models").string());
    ASSERT_TRUE(catalog.ok()) << catalog.status().message();
    // Costs the tests can reason about: 1 s per tile, 2 s besides (never run for real at that).
    for (auto& model : catalog.value().models)
      for (auto& v : model.variants) v.seconds_per_tile = 1, v.fixed_seconds = 2;
    auto profiles = ProbeDevices("cpu", 2);
    ASSERT_TRUE(profiles.ok()) << profiles.status().message();
    auto device = std::make_unique<ServedDevice>();
    device->profile = profiles.value()[0];
    device->catalog.Publish(std::make_shared<const ModelCatalog>(std::move(catalog.value())));
    device->scheduler = std::make_unique<Scheduler>(SchedulerOptions{1, 2});
    state_.devices.push_back(std::move(device));
    metrics_ = std::make_unique<ServerMetrics>(profiles.value());
    state_.selector = &selector_;
    state_.metrics = metrics_.get();
    state_.memory_budget = &budget_;
  }

  // A request for a CT of `size` voxels at `spacing` mm, int16.
  static RequestSpec Request(Xyz<int64_t> size, double spacing) {
    CtVolume ct;
    ct.geometry.size = size;
    ct.geometry.spacing = {spacing, spacing, spacing};
    RequestSpec spec;
    wire::ToWire(ct.geometry, tuckerseg::v1::VOXEL_TYPE_INT16, &spec.volume);
    return spec;
  }
  // The CT an admitted header announced, every voxel soft tissue (40 HU).
  static CtVolume SoftTissueCt(const Admission& admitted) {
    CtVolume ct;
    ct.geometry = admitted.volume().geometry;
    ct.voxels.assign(static_cast<size_t>(ct.geometry.NumVoxels()), 40.0f);
    return ct;
  }

  ServiceState state_;
  VariantSelector selector_{SelectorOptions{}};
  MemoryBudget budget_{1LL << 30};
  std::unique_ptr<ServerMetrics> metrics_;
};

// Records what the core reports; says "cancelled" once told to.
class RecordingSink final : public ProgressSink {
 public:
  Status StillWanted() override { return cancelled_ ? Cancelled("the test cancelled the request") : Status::Ok(); }
  void Queued(const std::string& variant, double, int position) override { stages_.push_back("queued:" + variant + ":" + std::to_string(position)); }
  void Running(const std::string& variant, int64_t done, int64_t total) override {
    if (done == 0) stages_.push_back("running:" + variant);
    tiles_done_ = done;
    tiles_total_ = total;
  }
  bool cancelled_ = false;
  std::vector<std::string> stages_;
  int64_t tiles_done_ = 0, tiles_total_ = 0;
};

TEST_F(SegmentationCore, RefusesFromTheHeaderNamingTheField) {
  RequestRecord record;
  auto spec = Request({32, 32, 20}, 3);
  spec.model = "no-such-model";
  auto refused = Admit(state_, spec, &record);
  EXPECT_EQ(refused.status().code(), StatusCode::kNotFound) << refused.status().message();

  spec = Request({32, 32, 20}, 3);
  spec.variant = "df0.42";
  refused = Admit(state_, spec, &record);
  EXPECT_EQ(refused.status().code(), StatusCode::kNotFound);
  EXPECT_NE(refused.status().message().find("header.variant 'df0.42'"), std::string::npos) << refused.status().message();

  spec = Request({32, 32, 20}, 3);
  spec.roi_subset = {"liver", "unicorn"};
  refused = Admit(state_, spec, &record);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("header.roi_subset: 'unicorn'"), std::string::npos) << refused.status().message();

  for (const double step : {0.05, 1.5, std::nan("")}) {
    spec = Request({32, 32, 20}, 3);
    spec.step = step;
    refused = Admit(state_, spec, &record);
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << step;
    EXPECT_NE(refused.status().message().find("header.step must be 0 (the server's 0.5) or in [0.1, 1]"), std::string::npos)
        << refused.status().message();
  }

  spec = Request({1, 1, 1}, 1e12);  // one voxel whose grid at the model's spacing is astronomical
  refused = Admit(state_, spec, &record);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("max_grid_voxels"), std::string::npos) << refused.status().message();

  spec = Request({32, 32, 20}, 3);
  spec.request_id = "a\nforged line";
  spec.model = "bad\nname";
  refused = Admit(state_, spec, &record);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(record.id, "a_forged_line");
  EXPECT_EQ(budget_.reserved(), 0);  // nothing refused holds memory
}

TEST_F(SegmentationCore, AdmissionHoldsItsMemoryUntilItEnds) {
  RequestRecord record;
  {
    auto admitted = Admit(state_, Request({64, 64, 40}, 3), &record);
    ASSERT_TRUE(admitted.ok()) << admitted.status().message();
    EXPECT_EQ(admitted.value().volume().voxels, 64 * 64 * 40);
    EXPECT_GT(budget_.reserved(), 64 * 64 * 40 * 5);  // at least the CT's floats and its labels
    EXPECT_EQ(record.model, "tucker-abdomen-3mm");
    EXPECT_FALSE(record.id.empty());
    // A second request that does not fit beside the first one waits its turn.
    MemoryBudget small(budget_.reserved() + 1);
    state_.memory_budget = &small;
    auto first = Admit(state_, Request({64, 64, 40}, 3), &record);
    ASSERT_TRUE(first.ok()) << first.status().message();
    EXPECT_EQ(Admit(state_, Request({64, 64, 40}, 3), &record).status().code(), StatusCode::kResourceExhausted);
    state_.memory_budget = &budget_;
  }
  EXPECT_EQ(budget_.reserved(), 0);
}

TEST_F(SegmentationCore, RunsAnAdmittedRequestAndReportsItsProgress) {
  RequestRecord record;
  auto spec = Request({40, 40, 24}, 3);
  spec.variant = "df0.3";
  auto admitted = Admit(state_, spec, &record);
  ASSERT_TRUE(admitted.ok()) << admitted.status().message();
  const CtVolume ct = SoftTissueCt(admitted.value());
  RecordingSink sink;
  auto outcome = server::Run(state_, admitted.value(), ct, sink, &record);
  ASSERT_TRUE(outcome.ok()) << outcome.status().message();
  EXPECT_EQ(outcome.value().prediction.labels.geometry.size, ct.geometry.size);
  EXPECT_EQ(outcome.value().prediction.labels.voxels.size(), ct.voxels.size());
  EXPECT_EQ(record.variant, "df0.3");
  EXPECT_EQ(record.device, state_.devices[0]->profile.Label());
  EXPECT_EQ(sink.stages_, (std::vector<std::string>{"queued:df0.3:1", "running:df0.3"}));
  EXPECT_GT(sink.tiles_total_, 0);
  EXPECT_EQ(sink.tiles_done_, sink.tiles_total_);

  EXPECT_EQ(outcome.value().step, 0.5);  // the server's, nnU-Net's default

  RecordingSink gone;
  gone.cancelled_ = true;
  EXPECT_EQ(server::Run(state_, admitted.value(), ct, gone, &record).status().code(), StatusCode::kCancelled);
}

// TotalSegmentator's step of 0.8 (here 1: tiles side by side) runs fewer tiles than the server's
// 0.5, and the outcome says which step ran.
TEST_F(SegmentationCore, TheClientsStepDecidesTheTiles) {
  std::map<double, int64_t> tiles;
  for (const double step : {0.0, 1.0}) {
    RequestRecord record;
    auto spec = Request({150, 150, 40}, 3);  // patch 32 x 96 x 96: 3 x 3 x 2 tiles at 0.5, 2 x 2 x 2 at 1
    spec.variant = "df0.3";
    spec.step = step;
    auto admitted = Admit(state_, spec, &record);
    ASSERT_TRUE(admitted.ok()) << admitted.status().message();
    const CtVolume ct = SoftTissueCt(admitted.value());
    RecordingSink sink;
    auto outcome = server::Run(state_, admitted.value(), ct, sink, &record);
    ASSERT_TRUE(outcome.ok()) << outcome.status().message();
    tiles[outcome.value().step] = outcome.value().prediction.tiles;
  }
  ASSERT_EQ(tiles.size(), 2u);  // 0 ran as the server's 0.5
  EXPECT_LT(tiles.at(1.0), tiles.at(0.5));
}

TEST_F(SegmentationCore, ADeadlineNoVariantCanMeetIsRefusedBeforeItIsQueued) {
  RequestRecord record;
  auto spec = Request({40, 40, 24}, 3);
  spec.deadline = std::chrono::system_clock::now() + std::chrono::seconds(2);  // every variant needs 3 s or more
  auto admitted = Admit(state_, spec, &record);
  ASSERT_TRUE(admitted.ok()) << admitted.status().message();
  ASSERT_TRUE(record.budget_seconds.has_value());
  EXPECT_LE(*record.budget_seconds, 2.0);
  const CtVolume ct = SoftTissueCt(admitted.value());
  RecordingSink sink;
  const auto refused = server::Run(state_, admitted.value(), ct, sink, &record);
  EXPECT_EQ(refused.status().code(), StatusCode::kDeadlineExceeded) << refused.status().message();
  EXPECT_NE(refused.status().message().find("deadline"), std::string::npos) << refused.status().message();
  EXPECT_TRUE(sink.stages_.empty());  // never queued
}

}  // namespace
}  // namespace tucker_seg::server
