// Admission control and draining of the scheduler; jobs block on promises the test controls.
#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "server/serving/scheduler.h"

namespace tucker_seg::server {
namespace {

TEST(Scheduler, RefusesWorkBeyondTheQueueAndDrainsOnShutdown) {
  ManualClock clock;
  Scheduler scheduler({/*workers=*/1, /*max_queue=*/2, &clock});
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> first_started;
  std::atomic<int> finished{0};
  ASSERT_TRUE(scheduler.Submit([&] { first_started.set_value(); released.wait(); ++finished; }, 4.0).ok());
  first_started.get_future().wait();  // the worker holds the first job
  EXPECT_EQ(scheduler.running(), 1);
  ASSERT_TRUE(scheduler.Submit([&] { ++finished; }, 3.0).ok());
  ASSERT_TRUE(scheduler.Submit([&] { ++finished; }, 3.0).ok());
  EXPECT_EQ(scheduler.queued(), 2);
  // Ahead of new work: the running job's 4 s + 6 s queued, one worker; then 1 s of it has run,
  // and once it has overrun its estimate, only the queue counts.
  EXPECT_DOUBLE_EQ(scheduler.EstimatedWaitSeconds(), 10.0);
  clock.Advance(std::chrono::seconds(1));
  EXPECT_DOUBLE_EQ(scheduler.EstimatedWaitSeconds(), 9.0);
  clock.Advance(std::chrono::seconds(10));
  EXPECT_DOUBLE_EQ(scheduler.EstimatedWaitSeconds(), 6.0);

  const Status full = scheduler.Submit([&] { ++finished; }, 1.0).status();
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("max_queue 2"), std::string::npos) << full.message();

  release.set_value();
  scheduler.Shutdown();  // queued work still runs
  EXPECT_EQ(finished.load(), 3);
  EXPECT_EQ(scheduler.Submit([] {}, 1.0).status().code(), StatusCode::kUnavailable);
}

TEST(Scheduler, CancelledQueuedWorkLeavesTheQueueAndNeverRuns) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  std::atomic<int> ran{0};
  Scheduler scheduler({/*workers=*/1, /*max_queue=*/1});
  auto running = scheduler.Submit([&] { started.set_value(); released.wait(); }, 5.0);
  ASSERT_TRUE(running.ok());
  started.get_future().wait();
  auto queued = scheduler.Submit([&] { ++ran; }, 5.0);
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(scheduler.Submit([&] { ++ran; }, 5.0).status().code(), StatusCode::kResourceExhausted);  // the queue is full

  EXPECT_TRUE(scheduler.Cancel(queued.value()));
  EXPECT_EQ(scheduler.queued(), 0);
  EXPECT_FALSE(scheduler.Cancel(running.value()));  // a worker has it: it finishes on its own
  auto next = scheduler.Submit([&] { ran += 10; }, 5.0);  // the freed queue entry takes new work
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
  ASSERT_TRUE(scheduler.Submit([&] { started.set_value(); released.wait(); }, 5.0).ok());
  started.get_future().wait();
  EXPECT_EQ(scheduler.EstimatedWaitSeconds(), 0.0);  // one of two workers is free
  release.set_value();
}

}  // namespace
}  // namespace tucker_seg::server
