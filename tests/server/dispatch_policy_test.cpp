// The choice at dispatch over synthetic queues: candidates are run times, most accurate first.
#include <gtest/gtest.h>

#include <cmath>

#include "server/serving/dispatch_policy.h"

namespace tucker_seg::server {
namespace {

const std::vector<double> kVariants = {4.0, 2.0, 1.0, 0.5};  // original, df0.5, df0.3, df0.1

TEST(DispatchPolicy, AnEmptyQueueGetsTheMostAccurateVariantThatFitsItsBudget) {
  EXPECT_EQ(ChooseAtDispatch(kVariants, {kNoBudget, {}, {}}).candidate, 0u);
  EXPECT_EQ(ChooseAtDispatch(kVariants, {4.0, {}, {}}).candidate, 0u);
  EXPECT_EQ(ChooseAtDispatch(kVariants, {3.9, {}, {}}).candidate, 1u);
  const auto choice = ChooseAtDispatch(kVariants, {1.5, {}, {}});
  EXPECT_EQ(choice.candidate, 2u);
  EXPECT_TRUE(choice.within_budget);
}

TEST(DispatchPolicy, TheQueueBehindPullsTheChoiceDown) {
  // Alone, 4.2 s would allow the original; three requests behind, each due in 5 s and 0.5 s at
  // their fastest, leave this one 3.5 s: df0.5 (2 s; they finish at 2.5, 3, 3.5).
  DispatchView view{4.2, {}, {{5, 0.5}, {5, 0.5}, {5, 0.5}}};
  EXPECT_EQ(ChooseAtDispatch(kVariants, view).candidate, 1u);
  // Seven behind at 0.5 s each, due in 5 s: 1.5 s left for this one: df0.3.
  view.behind.assign(7, {5, 0.5});
  EXPECT_EQ(ChooseAtDispatch(kVariants, view).candidate, 2u);
}

TEST(DispatchPolicy, OtherWorkersTakeTheirShareOfTheQueue) {
  // Two workers: the other is free in 1 s; four requests behind (0.5 s each, due in 2.8 s) split
  // between them. With df0.5 here (2 s) they finish at 1.5, 2, 2.5, 2.5; with the original the
  // other worker takes all four and the last finishes at 3 s.
  const DispatchView view{kNoBudget, {1.0}, {{2.8, 0.5}, {2.8, 0.5}, {2.8, 0.5}, {2.8, 0.5}}};
  EXPECT_EQ(ChooseAtDispatch(kVariants, view).candidate, 1u);
  // Due in 3 s, the original keeps them all.
  const DispatchView later{kNoBudget, {1.0}, {{3, 0.5}, {3, 0.5}, {3, 0.5}, {3, 0.5}}};
  EXPECT_EQ(ChooseAtDispatch(kVariants, later).candidate, 0u);
}

TEST(DispatchPolicy, RequestsThatAreLateAnywayDoNotHoldThisOneBack) {
  // The request behind is due in 0.2 s: late even if this one ran nothing; the other one, due in
  // 10 s, leaves room for the original.
  const DispatchView view{kNoBudget, {}, {{0.2, 0.5}, {10, 0.5}}};
  EXPECT_EQ(ChooseAtDispatch(kVariants, view).candidate, 0u);
}

TEST(DispatchPolicy, RequestsExpectedToArriveCountBehindItAsEarlyAsOneInTwentyCome) {
  // An empty queue, 4.2 s left; requests arriving at 1 per second, each with a 2 s budget and
  // 0.5 s at its fastest. At their mean times (1 s, 2 s, ...) df0.5 (2 s) would keep them all;
  // but one time in 20 the first comes within 0.051 s, the second within 0.355 s, and so on: behind
  // df0.5 the first would then be late, behind df0.3 (1 s) none is.
  DispatchView view{4.2, {}, {}};
  view.budget_seconds = 2;
  view.fastest_run_seconds = 0.5;
  EXPECT_EQ(ChooseAtDispatch(kVariants, view).candidate, 0u);  // no arrival rate known yet
  view.arrivals_per_second = 1;
  EXPECT_EQ(ChooseAtDispatch(kVariants, view).candidate, 2u);
  const auto expected = ExpectedArrivals(view, 4.0);
  ASSERT_GE(expected.size(), 2u);
  EXPECT_NEAR(expected[0].arrives_in, -std::log(0.95), 1e-9);  // P(no arrival by then) = 0.95
  EXPECT_NEAR(expected[1].arrives_in, 0.3554, 1e-4);            // P(at most one by then) = 0.95
  EXPECT_NEAR(expected[0].seconds_left, 2 - std::log(0.95), 1e-9);
  EXPECT_DOUBLE_EQ(expected[0].fastest_run_seconds, 0.5);
  for (size_t k = 1; k < expected.size(); ++k) EXPECT_GT(expected[k].arrives_in, expected[k - 1].arrives_in);
  EXPECT_LE(expected.back().arrives_in, 4.0);  // within the horizon
  // Twice as fast: the arrivals come in half the time.
  view.arrivals_per_second = 2;
  EXPECT_NEAR(ExpectedArrivals(view, 4.0)[1].arrives_in, 0.3554 / 2, 1e-4);
}

TEST(DispatchPolicy, VariantsSlowerThanTheFastestRunOnlyWithinTheSpareCapacity) {
  // An empty queue and 5 s left would allow the original; the device has saved up 2.5 s of spare
  // capacity: df0.5 (2 s) is the most accurate it covers.
  DispatchView view{5.0, {}, {}};
  view.spare_seconds = 2.5;
  EXPECT_EQ(ChooseAtDispatch(kVariants, view).candidate, 1u);
  view.spare_seconds = 4.0;
  EXPECT_EQ(ChooseAtDispatch(kVariants, view).candidate, 0u);
  // None saved (a burst has used it up): the fastest, which runs whatever the headroom.
  view.spare_seconds = -1.0;
  const DispatchChoice choice = ChooseAtDispatch(kVariants, view);
  EXPECT_EQ(choice.candidate, 3u);
  EXPECT_TRUE(choice.within_budget);
}

TEST(DispatchPolicy, ARequestThatCannotMakeItsBudgetTakesTheFastest) {
  const auto choice = ChooseAtDispatch(kVariants, {0.3, {}, {{10, 0.5}}});
  EXPECT_EQ(choice.candidate, 3u);
  EXPECT_FALSE(choice.within_budget);
  // The fastest need not be the last candidate.
  EXPECT_EQ(ChooseAtDispatch({4.0, 0.4, 0.6}, {0.1, {}, {}}).candidate, 1u);
}

TEST(DispatchPolicy, ASingleCandidateIsAlwaysChosen) {
  EXPECT_EQ(ChooseAtDispatch({4.0}, {1.0, {}, {{1, 4}}}).candidate, 0u);
  EXPECT_EQ(ChooseAtDispatch({}, {}).candidate, 0u);
}

TEST(DispatchPolicy, ARequestThatWouldBeLateBehindLongWorkRunsBetweenItsTiles) {
  // 3 s of a whole CT left, already past its budget; a one-tile request with 1.5 s left and 0.4 s
  // at its fastest would finish at 3.4 s after it, so it goes first.
  const RunningWork late_ct{3.0, 1.0, /*own_seconds=*/2.0, /*interleaved_seconds=*/0};
  EXPECT_TRUE(InterleaveNow(late_ct, {1.5, 0.4}, {}));
  // In time by waiting: it waits.
  EXPECT_FALSE(InterleaveNow(late_ct, {3.5, 0.4}, {}));
  // Another worker is free in 0.5 s: it waits for that one.
  EXPECT_FALSE(InterleaveNow(late_ct, {1.5, 0.4}, {0.5}));
  // Late even if it ran now, or without a budget: no reason to interrupt.
  EXPECT_FALSE(InterleaveNow(late_ct, {0.3, 0.4}, {}));
  EXPECT_FALSE(InterleaveNow(late_ct, {kNoBudget, 0.4}, {}));
  // Work about as short as the waiting request is not interrupted: 1 s left against 0.4 s.
  EXPECT_FALSE(InterleaveNow({1.0, 0.5, 2.0, 0}, {0.9, 0.4}, {}));
  // Interleaved work has had twice the worker time the CT has had: the CT's turn.
  EXPECT_FALSE(InterleaveNow({3.0, 1.0, 2.0, 4.0}, {1.5, 0.4}, {}));
  EXPECT_TRUE(InterleaveNow({3.0, 1.0, 2.0, 3.9}, {1.5, 0.4}, {}));
}

TEST(DispatchPolicy, InterleavingDoesNotMakeRunningWorkLateThatWouldBeInTime) {
  // The running work has 3 s left of 3.2 s: 0.4 s more would make it late.
  EXPECT_FALSE(InterleaveNow({3.0, 3.2, 1.0}, {1.5, 0.4}, {}));
  // With 3.5 s it can afford the 0.4 s.
  EXPECT_TRUE(InterleaveNow({3.0, 3.5, 1.0}, {1.5, 0.4}, {}));
  // Running work without a budget is never late.
  EXPECT_TRUE(InterleaveNow({3.0, kNoBudget, 1.0}, {1.5, 0.4}, {}));
}

}  // namespace
}  // namespace tucker_seg::server
