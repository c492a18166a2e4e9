// Admission control, ordering and draining of the scheduler; jobs block on promises the test
// controls, time is a ManualClock.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <future>
#include <mutex>
#include <optional>

#include "server/serving/scheduler.h"

namespace tucker_seg::server {
namespace {

WorkItem Item(std::function<void()> work, double estimated_seconds, double fastest_seconds = 0,
              Clock::TimePoint due = Clock::TimePoint::max()) {
  return {[work = std::move(work)](const Dispatch&) { work(); }, estimated_seconds, fastest_seconds, due};
}

// What the workers handed each piece of work, in the order the work ran. Declared before the
// scheduler, so that the scheduler joins its workers before the log goes away.
struct DispatchLog {
  std::mutex mutex;
  std::vector<std::string> order;
  std::vector<Dispatch> seen;
  // Work that logs itself as `name`; with `expect` > 0 it then reports that run estimate.
  std::function<void(const Dispatch&)> Work(const std::string& name, double expect = 0) {
    return [this, name, expect](const Dispatch& d) {
      std::lock_guard<std::mutex> lock(mutex);
      order.push_back(name);
      seen.push_back(d);
      if (expect > 0) d.expect(expect);
    };
  }
  void Note(const std::string& name) {
    std::lock_guard<std::mutex> lock(mutex);
    order.push_back(name);
  }
};

// One worker held by a job until `release` is set: work submitted meanwhile queues behind it, and
// `log` records what each piece of work was handed. Members in this order, so that the scheduler
// joins its workers before the promise and the log go away.
class SchedulerWithAHeldWorker : public ::testing::Test {
 protected:
  void SetUp() override {
    std::promise<void> started;
    ASSERT_TRUE(scheduler.Submit(Item([&started, this] { started.set_value(); released.wait(); }, 1.0)).ok());
    started.get_future().wait();
    now = clock.Now();
  }
  ManualClock clock;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  DispatchLog log;
  Scheduler scheduler{{/*workers=*/1, /*max_queue=*/8, &clock}};
  Clock::TimePoint now;
};

TEST(Scheduler, RefusesWorkBeyondTheQueueAndDrainsOnShutdown) {
  ManualClock clock;
  Scheduler scheduler({/*workers=*/1, /*max_queue=*/2, &clock});
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> first_started;
  std::atomic<int> finished{0};
  ASSERT_TRUE(scheduler.Submit(Item([&] { first_started.set_value(); released.wait(); ++finished; }, 4.0)).ok());
  first_started.get_future().wait();  // the worker holds the first job
  EXPECT_EQ(scheduler.running(), 1);
  ASSERT_TRUE(scheduler.Submit(Item([&] { ++finished; }, 3.0, 1.0)).ok());
  ASSERT_TRUE(scheduler.Submit(Item([&] { ++finished; }, 3.0, 1.0)).ok());
  EXPECT_EQ(scheduler.queued(), 2);
  // Ahead of new work: the running job's 4 s + 6 s queued, one worker; then 1 s of it has run,
  // and once it has overrun its estimate, only the queue counts.
  EXPECT_DOUBLE_EQ(scheduler.EstimatedWaitSeconds(), 10.0);
  EXPECT_DOUBLE_EQ(scheduler.FastestWaitSeconds(Clock::TimePoint::max()), 6.0);  // 4 s + two at 1 s
  clock.Advance(std::chrono::seconds(1));
  EXPECT_DOUBLE_EQ(scheduler.EstimatedWaitSeconds(), 9.0);
  clock.Advance(std::chrono::seconds(10));
  EXPECT_DOUBLE_EQ(scheduler.EstimatedWaitSeconds(), 6.0);

  const Status full = scheduler.Submit(Item([&] { ++finished; }, 1.0)).status();
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("max_queue 2"), std::string::npos) << full.message();

  release.set_value();
  scheduler.Shutdown();  // queued work still runs
  EXPECT_EQ(finished.load(), 3);
  EXPECT_EQ(scheduler.Submit(Item([] {}, 1.0)).status().code(), StatusCode::kUnavailable);
}

TEST(Scheduler, CancelledQueuedWorkLeavesTheQueueAndNeverRuns) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  std::atomic<int> ran{0};
  Scheduler scheduler({/*workers=*/1, /*max_queue=*/1});
  auto running = scheduler.Submit(Item([&] { started.set_value(); released.wait(); }, 5.0));
  ASSERT_TRUE(running.ok());
  started.get_future().wait();
  auto queued = scheduler.Submit(Item([&] { ++ran; }, 5.0));
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(scheduler.Submit(Item([&] { ++ran; }, 5.0)).status().code(), StatusCode::kResourceExhausted);  // the queue is full

  EXPECT_TRUE(scheduler.Cancel(queued.value()));
  EXPECT_EQ(scheduler.queued(), 0);
  EXPECT_FALSE(scheduler.Cancel(running.value()));  // a worker has it: it finishes on its own
  auto next = scheduler.Submit(Item([&] { ran += 10; }, 5.0));  // the freed queue entry takes new work
  EXPECT_TRUE(next.ok()) << next.status().message();
  release.set_value();
  scheduler.Shutdown();
  EXPECT_EQ(ran.load(), 10);
}

TEST(Scheduler, IdleWorkersMeanNoWait) {
  // Declared before the scheduler, so the scheduler joins its workers before these go away.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  Scheduler scheduler({/*workers=*/2, /*max_queue=*/4});
  EXPECT_EQ(scheduler.EstimatedWaitSeconds(), 0.0);
  ASSERT_TRUE(scheduler.Submit(Item([&] { started.set_value(); released.wait(); }, 5.0)).ok());
  started.get_future().wait();
  EXPECT_EQ(scheduler.EstimatedWaitSeconds(), 0.0);  // one of two workers is free
  release.set_value();
}

TEST_F(SchedulerWithAHeldWorker, EarliestDueWorkGoesFirstAndSeesTheQueueBehindIt) {
  ASSERT_TRUE(scheduler.Submit({log.Work("no budget", 2.5), 1.0, 0.5}).ok());
  ASSERT_TRUE(scheduler.Submit({log.Work("due in 9 s", 2.5), 1.0, 0.5, now + std::chrono::seconds(9)}).ok());
  ASSERT_TRUE(scheduler.Submit({log.Work("due in 3 s", 2.5), 1.0, 0.25, now + std::chrono::seconds(3)}).ok());
  // Work due in 5 s would wait behind the running job (1 s) and the one due in 3 s at its fastest.
  EXPECT_DOUBLE_EQ(scheduler.FastestWaitSeconds(now + std::chrono::seconds(5)), 1.25);
  clock.Advance(std::chrono::seconds(1));
  release.set_value();
  scheduler.Shutdown();
  ASSERT_EQ(log.order, (std::vector<std::string>{"due in 3 s", "due in 9 s", "no budget"}));
  // The first one dispatched: 2 s left of its 3, two requests behind it (8 s left, and none).
  EXPECT_DOUBLE_EQ(log.seen[0].view.seconds_left, 2.0);
  ASSERT_EQ(log.seen[0].view.behind.size(), 2u);
  EXPECT_DOUBLE_EQ(log.seen[0].view.behind[0].seconds_left, 8.0);
  EXPECT_DOUBLE_EQ(log.seen[0].view.behind[0].fastest_run_seconds, 0.5);
  EXPECT_EQ(log.seen[0].view.behind[1].seconds_left, kNoBudget);
  EXPECT_TRUE(log.seen[0].view.other_workers_free_in.empty());  // one worker
  EXPECT_EQ(log.seen[2].view.seconds_left, kNoBudget);
  EXPECT_TRUE(log.seen[2].view.behind.empty());
}

TEST_F(SchedulerWithAHeldWorker, SpareCapacityAccruesAtThePlannedUtilizationAndWorkerTimeSpendsIt) {
  // Three requests due in 10 s, queued together; the first takes 2 s of its worker (expecting 3),
  // the second 1 s, each with work waiting behind it all the time.
  ASSERT_TRUE(scheduler.Submit({[this](const Dispatch& d) {
                                  log.Work("first", 3.0)(d);
                                  clock.Advance(std::chrono::seconds(2));
                                },
                                1.0, 0.5, now + std::chrono::seconds(10)})
                  .ok());
  ASSERT_TRUE(scheduler.Submit({[this](const Dispatch& d) {
                                  log.Work("second", 1.0)(d);
                                  clock.Advance(std::chrono::seconds(1));
                                },
                                1.0, 0.5, now + std::chrono::seconds(10)})
                  .ok());
  ASSERT_TRUE(scheduler.Submit({log.Work("third", 1.0), 1.0, 0.5, now + std::chrono::seconds(10)}).ok());
  ASSERT_TRUE(scheduler.Submit({log.Work("no budget", 1.0), 1.0, 0.5}).ok());
  release.set_value();
  scheduler.Shutdown();
  ASSERT_EQ(log.order, (std::vector<std::string>{"first", "second", "third", "no budget"}));
  // An idle device starts with the planned capacity over one budget: 0.8 x 1 worker x 10 s.
  EXPECT_DOUBLE_EQ(log.seen[0].view.spare_seconds, kPlannedUtilization * 10);
  // Less the 2 s the first took (not the 3 it expected), plus 0.8 of those 2 s.
  EXPECT_NEAR(log.seen[1].view.spare_seconds, kPlannedUtilization * 10 - 2 + kPlannedUtilization * 2, 1e-9);
  // Less the second's 1 s, plus 0.8 of it.
  EXPECT_NEAR(log.seen[2].view.spare_seconds, kPlannedUtilization * 10 - 3 + kPlannedUtilization * 3, 1e-9);
  EXPECT_EQ(log.seen[3].view.spare_seconds, kNoBudget);  // no budget: no limit
}

TEST_F(SchedulerWithAHeldWorker, WorkerTimeSpendsTheSpareCapacityOnlyWhileOtherWorkWaits) {
  // As a closed-loop client does: each request is submitted as the one before it ends, or, for
  // the third, 0.1 s into the second's 1 s.
  const auto due_in_10 = [this] { return clock.Now() + std::chrono::seconds(10); };
  std::promise<void> all_submitted;
  const std::function<void(const Dispatch&)> second = [&](const Dispatch& d) {
    log.Work("second")(d);
    clock.Advance(std::chrono::milliseconds(100));
    const bool queued = scheduler.Submit({log.Work("third"), 1.0, 0.5, due_in_10()}).ok();
    all_submitted.set_value();
    EXPECT_TRUE(queued);
    clock.Advance(std::chrono::milliseconds(900));
  };
  const std::function<void(const Dispatch&)> first = [&](const Dispatch& d) {
    log.Work("first")(d);
    clock.Advance(std::chrono::seconds(2));
    const bool queued = scheduler.Submit({second, 1.0, 0.5, due_in_10()}).ok();
    if (!queued) all_submitted.set_value();
    EXPECT_TRUE(queued);
  };
  ASSERT_TRUE(scheduler.Submit({first, 1.0, 0.5, due_in_10()}).ok());
  release.set_value();
  all_submitted.get_future().wait();  // then Shutdown, which runs what is queued
  scheduler.Shutdown();
  ASSERT_EQ(log.order, (std::vector<std::string>{"first", "second", "third"}));
  EXPECT_DOUBLE_EQ(log.seen[0].view.spare_seconds, kPlannedUtilization * 10);
  // Nothing waited while the first ran: its 2 s spent nothing, and the capacity stays at its bound.
  EXPECT_DOUBLE_EQ(log.seen[1].view.spare_seconds, kPlannedUtilization * 10);
  // The third waited through 0.9 s of the second's 1 s.
  EXPECT_NEAR(log.seen[2].view.spare_seconds, kPlannedUtilization * 10 - 0.9 + kPlannedUtilization * 1, 1e-9);
}

TEST_F(SchedulerWithAHeldWorker, WorkOnItsWayCountsBehindUntilItIsSubmittedOrGivenUp) {
  // Two requests are being received (due in 6 s and 7 s); one of them gives up before it is queued.
  Scheduler::Announcement coming = scheduler.Announce(now + std::chrono::seconds(6), 0.5);
  std::optional<Scheduler::Announcement> gone = scheduler.Announce(now + std::chrono::seconds(7), 0.75);
  ASSERT_TRUE(scheduler.Submit({log.Work("first"), 1.0, 0.25, now + std::chrono::seconds(3)}).ok());
  ASSERT_TRUE(scheduler.Submit({log.Work("second"), 1.0, 0.25, now + std::chrono::seconds(4)}).ok());
  gone.reset();
  clock.Advance(std::chrono::seconds(1));
  release.set_value();
  scheduler.Shutdown();
  ASSERT_EQ(log.order, (std::vector<std::string>{"first", "second"}));
  // Behind the first: the queued second, then the one on its way (5 s of its 6 left, 0.5 s at its
  // fastest, arriving now); not the one that gave up.
  const std::vector<WaitingRequest>& behind = log.seen[0].view.behind;
  ASSERT_EQ(behind.size(), 2u);
  EXPECT_DOUBLE_EQ(behind[0].seconds_left, 3.0);
  EXPECT_DOUBLE_EQ(behind[1].seconds_left, 5.0);
  EXPECT_DOUBLE_EQ(behind[1].fastest_run_seconds, 0.5);
  EXPECT_DOUBLE_EQ(behind[1].arrives_in, 0.0);
  ASSERT_EQ(log.seen[1].view.behind.size(), 1u);  // still on its way when the second ran
  EXPECT_DOUBLE_EQ(log.seen[1].view.behind[0].fastest_run_seconds, 0.5);
}

TEST(Scheduler, WorkThatWouldBeLateBehindLongWorkRunsBetweenItsTiles) {
  ManualClock clock;
  std::promise<void> queued_all;
  std::shared_future<void> all_queued = queued_all.get_future().share();
  DispatchLog log;
  Scheduler scheduler({/*workers=*/1, /*max_queue=*/8, &clock});
  const auto now = clock.Now();
  // A whole CT: four tiles of 1 s, no budget; between tiles it says what is left.
  std::promise<void> started;
  ASSERT_TRUE(scheduler
                  .Submit({[&](const Dispatch& d) {
                             started.set_value();
                             all_queued.wait();
                             for (int tile = 1; tile < 4; ++tile) {
                               log.Note("ct tile " + std::to_string(tile));
                               clock.Advance(std::chrono::seconds(1));
                               EXPECT_EQ(d.between_steps(4.0 - tile), 0.0);  // the interleaved work took no clock time
                             }
                           },
                           4.0, 4.0})
                  .ok());
  started.get_future().wait();
  // Behind it: one request due in 2 s (late if it waits 3 s more), one without a budget.
  ASSERT_TRUE(scheduler.Submit({log.Work("no budget"), 0.5, 0.5}).ok());
  ASSERT_TRUE(scheduler.Submit({log.Work("due in 2 s"), 0.5, 0.5, now + std::chrono::seconds(2)}).ok());
  queued_all.set_value();
  scheduler.Shutdown();
  ASSERT_EQ(log.order, (std::vector<std::string>{"ct tile 1", "due in 2 s", "ct tile 2", "ct tile 3", "no budget"}));
  // The interleaved request, 1 s into its 2, sees the CT's 3 s left behind it, and gets no way to
  // interrupt in turn.
  EXPECT_DOUBLE_EQ(log.seen[0].view.seconds_left, 1.0);
  ASSERT_EQ(log.seen[0].view.behind.size(), 2u);
  EXPECT_EQ(log.seen[0].view.behind[0].seconds_left, kNoBudget);
  EXPECT_DOUBLE_EQ(log.seen[0].view.behind[0].fastest_run_seconds, 3.0);
  EXPECT_FALSE(log.seen[0].between_steps);
  EXPECT_TRUE(log.seen[0].interleaved);
  EXPECT_TRUE(log.seen[1].between_steps);
  EXPECT_FALSE(log.seen[1].interleaved);
}

}  // namespace
}  // namespace tucker_seg::server
