// The variant selector and the dominance rule, on synthetic variants (no networks needed).
#include <gtest/gtest.h>

#include <limits>

#include "server/serving/selector.h"

namespace tucker_seg::server {
namespace {

VariantEntry MakeVariant(const std::string& name, std::optional<double> quality, double seconds_per_tile) {
  VariantEntry v;
  v.name = name;
  v.quality = quality;
  v.seconds_per_tile = seconds_per_tile;
  return v;
}

// original: 1.0 s/tile; df0.5: 0.5 s/tile, quality 0.95; df0.3: 0.25 s/tile, quality 0.8.
ModelEntry ThreeVariants() {
  ModelEntry m;
  m.name = "m";
  m.variants = {MakeVariant("original", 1.0, 1.0), MakeVariant("df0.5", 0.95, 0.5), MakeVariant("df0.3", 0.8, 0.25)};
  return m;
}

SelectionRequest Auto(int64_t tiles = 10) {
  SelectionRequest r;
  r.variant = "auto";
  r.tiles = tiles;
  return r;
}

TEST(Selector, PinnedVariantIsUsedAndUnknownNamesAreNotFound) {
  const auto m = ThreeVariants();
  VariantSelector selector({});
  SelectionRequest r = Auto();
  r.variant = "df0.3";
  auto s = selector.Select(m, r, 0);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.value().variant->name, "df0.3");
  EXPECT_EQ(s.value().reason, "pinned");
  EXPECT_DOUBLE_EQ(s.value().predicted_seconds, 2.5);
  r.variant = "df0.9";
  auto missing = selector.Select(m, r, 0);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("df0.9"), std::string::npos);
}

TEST(Selector, WithoutBudgetPicksTheMostAccurate) {
  const auto m = ThreeVariants();
  VariantSelector selector({});
  auto s = selector.Select(m, Auto(), 100);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.value().variant->name, "original");
  EXPECT_EQ(s.value().reason, "most_accurate");
}

TEST(Selector, MovesToCheaperVariantsAsLoadRisesAndBackAsSoonAsItFalls) {
  const auto m = ThreeVariants();
  VariantSelector selector({/*latency_target_seconds=*/12});
  // 10 tiles: original 10 s, df0.5 5 s, df0.3 2.5 s; budget 12 s.
  auto idle = selector.Select(m, Auto(), 0);
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(idle.value().variant->name, "original");
  EXPECT_EQ(idle.value().reason, "most_accurate");

  auto busy = selector.Select(m, Auto(), 5);  // original 15 s > 12; df0.5 10 s fits
  ASSERT_TRUE(busy.ok());
  EXPECT_EQ(busy.value().variant->name, "df0.5");
  EXPECT_EQ(busy.value().reason, "downgraded_for_load");

  auto busier = selector.Select(m, Auto(), 9);  // df0.5 14 s > 12; df0.3 11.5 s fits
  ASSERT_TRUE(busier.ok());
  EXPECT_EQ(busier.value().variant->name, "df0.3");

  // No hysteresis: what the load allows now, whatever came before.
  auto easing = selector.Select(m, Auto(), 6);  // df0.5 11 s fits
  ASSERT_TRUE(easing.ok());
  EXPECT_EQ(easing.value().variant->name, "df0.5");
  auto calm = selector.Select(m, Auto(), 0);
  ASSERT_TRUE(calm.ok());
  EXPECT_EQ(calm.value().variant->name, "original");
  EXPECT_EQ(calm.value().reason, "most_accurate");
}

TEST(Selector, DispatchKeepsTheQueueBehindWithinItsBudget) {
  const auto m = ThreeVariants();
  VariantSelector selector({/*latency_target_seconds=*/12});
  // 12 s left; behind it two requests with 9 s left, 2.5 s each at their fastest: the original
  // (10 s) would make both late, df0.5 (5 s) the second (done at 10 s), df0.3 keeps both.
  DispatchView view{12, {}, {{9, 2.5}, {9, 2.5}}};
  auto s = selector.Dispatch(m, Auto(), view);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.value().variant->name, "df0.3");
  EXPECT_EQ(s.value().reason, "downgraded_for_load");
  EXPECT_NE(s.value().detail.find("2 queued behind"), std::string::npos) << s.value().detail;
  view.behind.pop_back();  // one behind: df0.5 then 7.5 s for it
  EXPECT_EQ(selector.Dispatch(m, Auto(), view).value().variant->name, "df0.5");
  view.behind.clear();
  EXPECT_EQ(selector.Dispatch(m, Auto(), view).value().variant->name, "original");
  // A pinned variant is run whatever the queue.
  SelectionRequest pinned = Auto();
  pinned.variant = "original";
  view.behind.assign(5, {1, 2.5});
  auto p = selector.Dispatch(m, pinned, view);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.value().variant->name, "original");
  EXPECT_EQ(p.value().reason, "pinned");
}

TEST(Selector, OverBudgetTakesTheFastestAndDeadlinesTightenTheBudget) {
  const auto m = ThreeVariants();
  VariantSelector selector({/*latency_target_seconds=*/100});
  SelectionRequest r = Auto();
  r.deadline_seconds = 1;  // nothing finishes 10 tiles in 1 s
  auto s = selector.Select(m, r, 0);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.value().variant->name, "df0.3");
  EXPECT_EQ(s.value().reason, "fastest_over_budget");
}

TEST(Selector, MinQualityFiltersAndIsValidated) {
  const auto m = ThreeVariants();
  VariantSelector selector({/*latency_target_seconds=*/3});
  SelectionRequest r = Auto();
  r.min_quality = 0.9;  // df0.3 (0.8) excluded; nothing fits 3 s, so the fastest allowed: df0.5
  auto s = selector.Select(m, r, 0);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.value().variant->name, "df0.5");
  r.min_quality = 1.5;
  auto bad = selector.Select(m, r, 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("min_quality"), std::string::npos);
}

TEST(Selector, ARequestCostsAFixedPartPlusItsTilesTimesTheDevicesLoad) {
  auto m = ThreeVariants();
  m.variants[1].fixed_seconds = 1.0;  // calibrated: 1 s besides the tiles
  VariantSelector selector({0, /*cost_smoothing=*/0.5});
  EXPECT_DOUBLE_EQ(selector.RunSeconds(m, m.variants[1], 10), 6.0);  // 1 + 10 x 0.5
  EXPECT_DOUBLE_EQ(selector.RunSeconds(m, m.variants[1], 10, /*slowdown=*/2), 12.0);
  // A df0.5 request of 10 tiles took 9 s instead of 6: ratio 1.5. The load factor's mean goes
  // half way (1.25), its deviation to 0.125; the estimate uses mean + 2 x deviation = 1.5.
  selector.Observe(m, m.variants[1], 9, 10);
  EXPECT_DOUBLE_EQ(selector.RunSeconds(m, m.variants[1], 10), 9.0);
  // Every variant on the device: the original had not run, and is now predicted 1.5 x 10 s.
  EXPECT_DOUBLE_EQ(selector.RunSeconds(m, m.variants[0], 10), 15.0);
  // Requests as fast as calibrated bring it back: ratio 1, mean 1.125, deviation 0.125.
  selector.Observe(m, m.variants[1], 6, 10);
  EXPECT_DOUBLE_EQ(selector.RunSeconds(m, m.variants[1], 10), 6.0 * 1.375);
}

TEST(Selector, TimeOffTheWorkerIsLearnedAsAMeanPlusTwiceItsDeviation) {
  VariantSelector selector({0, /*cost_smoothing=*/0.5});
  EXPECT_DOUBLE_EQ(selector.OffWorkerSeconds(), 0.0);  // nothing observed: nothing reserved
  selector.ObserveOffWorker(0.04);                     // the first observation is the mean
  EXPECT_DOUBLE_EQ(selector.OffWorkerSeconds(), 0.04);
  // 0.08: the mean goes half way (0.06), the deviation to half of |0.08 - 0.06| (0.01).
  selector.ObserveOffWorker(0.08);
  EXPECT_NEAR(selector.OffWorkerSeconds(), 0.06 + 2 * 0.01, 1e-12);
  selector.ObserveOffWorker(-1);  // not a duration: ignored
  selector.ObserveOffWorker(std::numeric_limits<double>::infinity());
  EXPECT_NEAR(selector.OffWorkerSeconds(), 0.08, 1e-12);
}

TEST(Selector, VariantsSlowerAndLessAccurateThanAnotherAreNotSelectable) {
  ModelEntry m;
  m.name = "m";
  m.variants = {MakeVariant("original", 1.0, 1.0), MakeVariant("df0.5", 0.9, 1.2), MakeVariant("df0.3", 0.8, 0.3),
                MakeVariant("unevaluated", std::nullopt, 0.1)};
  MarkDominatedVariants(&m);
  EXPECT_TRUE(m.variants[0].selectable);
  EXPECT_FALSE(m.variants[1].selectable);
  EXPECT_NE(m.variants[1].not_selectable_reason.find("than original"), std::string::npos) << m.variants[1].not_selectable_reason;
  EXPECT_TRUE(m.variants[2].selectable);
  EXPECT_FALSE(m.variants[3].selectable);
  EXPECT_NE(m.variants[3].not_selectable_reason.find("agreement"), std::string::npos);
  // Auto never picks a variant that is not selectable, even under load.
  VariantSelector selector({/*latency_target_seconds=*/1});
  auto s = selector.Select(m, Auto(), 50);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.value().variant->name, "df0.3");
}

// A variant this device cannot run (an int8 variant on a GPU, or on a CPU without oneDNN's int8
// kernels) is not selectable, says why, dominates nothing, and a request pinning it is refused
// with the reason; across precisions, dominance compares speed and quality as for any variant.
TEST(Selector, VariantsTheDeviceCannotRunAreNeitherSelectedNorPinned) {
  ModelEntry m;
  m.name = "m";
  m.device = "cuda:0:test";
  m.variants = {MakeVariant("original", 1.0, 1.0), MakeVariant("original-int8", 0.99, 0.0), MakeVariant("df0.3", 0.8, 0.5),
                MakeVariant("df0.3-int8", 0.79, 0.6)};
  m.variants[1].precision = m.variants[3].precision = "int8";
  m.variants[1].cannot_run = "an int8 variant runs on the CPU engine only, not on cuda:0";
  MarkDominatedVariants(&m);
  EXPECT_TRUE(m.variants[0].selectable);
  EXPECT_FALSE(m.variants[1].selectable);
  EXPECT_NE(m.variants[1].not_selectable_reason.find("cannot run on this device: an int8 variant"), std::string::npos)
      << m.variants[1].not_selectable_reason;
  EXPECT_TRUE(m.variants[2].selectable);  // 0.0 s/tile of a variant that cannot run dominates nothing
  EXPECT_FALSE(m.variants[3].selectable);  // slower and less accurate than df0.3
  EXPECT_NE(m.variants[3].not_selectable_reason.find("than df0.3"), std::string::npos);
  VariantSelector selector({/*latency_target_seconds=*/1});
  SelectionRequest pinned = Auto();
  pinned.variant = "original-int8";
  auto s = selector.Select(m, pinned, 0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("cannot run on cuda:0:test"), std::string::npos) << s.status().message();
}

// Two devices with the same variants, timed differently: a GPU-like one 10x faster per tile.
struct TwoDevices {
  ModelEntry cpu = ThreeVariants();
  ModelEntry gpu = ThreeVariants();
  TwoDevices() {
    cpu.device = "cpu:test";
    gpu.device = "cuda:0:test";
    for (auto& v : gpu.variants) v.seconds_per_tile /= 10;
  }
  std::vector<DeviceCandidate> Candidates(double cpu_wait, double gpu_wait) const {
    return {{&cpu, cpu_wait, 1, std::nullopt}, {&gpu, gpu_wait, 1, int64_t{8} << 30}};
  }
};

TEST(Selector, SelectDevicePicksTheDeviceThatFinishesTheMostAccurateVariantSoonest) {
  TwoDevices d;
  VariantSelector selector({/*latency_target_seconds=*/12});
  auto p = selector.SelectDevice(d.Candidates(0, 0), Auto(10), 1 << 20);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p.value().device, 1u);
  EXPECT_EQ(p.value().selection.variant->name, "original");
  EXPECT_DOUBLE_EQ(p.value().selection.predicted_seconds, 1.0);
  EXPECT_NE(p.value().selection.detail.find("cuda:0:test"), std::string::npos) << p.value().selection.detail;
}

TEST(Selector, SelectDeviceMovesWorkToTheIdleDeviceWhenTheOtherIsLoaded) {
  TwoDevices d;
  VariantSelector selector({/*latency_target_seconds=*/12});
  // GPU queue 20 s: nothing fits there; the idle CPU runs the original in 10 s.
  auto p = selector.SelectDevice(d.Candidates(0, 20), Auto(10), 1 << 20);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.value().device, 0u);
  EXPECT_EQ(p.value().selection.variant->name, "original");
  // Both loaded: the CPU (wait 8 s) fits only df0.3 (2.5 s); the GPU (wait 11 s) still fits the original (1 s).
  p = selector.SelectDevice(d.Candidates(8, 11), Auto(10), 1 << 20);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.value().device, 1u);
  EXPECT_EQ(p.value().selection.variant->name, "original");
}

TEST(Selector, SelectDeviceCountsExternalGpuLoadAsSlowdown) {
  TwoDevices d;
  VariantSelector selector({/*latency_target_seconds=*/12});
  auto candidates = d.Candidates(0, 0);
  candidates[1].slowdown = 20;  // someone else keeps the GPU busy: 20 s for the original there
  auto p = selector.SelectDevice(candidates, Auto(10), 1 << 20);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.value().device, 0u);
  EXPECT_DOUBLE_EQ(p.value().selection.predicted_seconds, 10.0);
}

TEST(Selector, SelectDeviceSkipsDevicesWithoutTheMemoryAndRefusesWhenNoneHasIt) {
  TwoDevices d;
  VariantSelector selector({});
  auto candidates = d.Candidates(0, 0);
  candidates[1].free_bytes = 100 << 20;
  auto p = selector.SelectDevice(candidates, Auto(10), 200 << 20);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.value().device, 0u);  // the CPU has no GPU memory check
  candidates.erase(candidates.begin());
  auto refused = selector.SelectDevice(candidates, Auto(10), 200 << 20);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("200 MiB"), std::string::npos) << refused.status().message();
  EXPECT_NE(refused.status().message().find("cuda:0:test has 100 MiB free"), std::string::npos) << refused.status().message();
}

TEST(Selector, ObservationsAreKeptPerDevice) {
  TwoDevices d;
  VariantSelector selector({});
  selector.Observe(d.gpu, d.gpu.variants[0], /*seconds=*/2, /*tiles=*/10);  // twice the calibrated 1 s; weight 0.3
  // load factor: mean 1.3, deviation 0.3 x 0.7 = 0.21: 1 s x 1.72
  EXPECT_NEAR(selector.RunSeconds(d.gpu, d.gpu.variants[0], 10), 1.72, 1e-12);
  EXPECT_DOUBLE_EQ(selector.RunSeconds(d.cpu, d.cpu.variants[0], 10), 10.0);
}

}  // namespace
}  // namespace tucker_seg::server
