// Admission and execution: a bounded FIFO queue in front of N inference workers. Submit takes
// the work only when it returns OK (RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE once
// shutting down). Shutdown drains: queued work still runs, then the workers stop. No gRPC here.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "vocabulary/clock.h"
#include "vocabulary/status.h"

namespace tucker_seg::server {

struct SchedulerOptions {
  int workers = 1;
  int max_queue = 8;  // waiting requests, not counting the ones running
  const Clock* clock = &Clock::Real();  // how long running work has run, for the wait estimate
};

class Scheduler {
 public:
  using Work = std::function<void()>;

  explicit Scheduler(SchedulerOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  using Ticket = uint64_t;
  // `estimated_seconds`: how long the work should run, for the wait estimate of later requests.
  Result<Ticket> Submit(Work work, double estimated_seconds) ABSL_LOCKS_EXCLUDED(mutex_);
  // Takes queued work out of the queue (its caller gave up while waiting): true when it was still
  // queued and will never run; false once a worker has taken it.
  bool Cancel(Ticket ticket) ABSL_LOCKS_EXCLUDED(mutex_);
  // Expected wait for work submitted now: estimated work ahead of it spread over the workers.
  double EstimatedWaitSeconds() const ABSL_LOCKS_EXCLUDED(mutex_);
  int queued() const ABSL_LOCKS_EXCLUDED(mutex_);
  int running() const ABSL_LOCKS_EXCLUDED(mutex_);
  void Shutdown() ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  struct Item {
    Work work;
    double estimated_seconds = 0;
    Ticket ticket = 0;
  };
  struct Running {
    bool busy = false;
    double estimated_seconds = 0;
    Clock::TimePoint start;
  };
  void WorkerLoop(size_t index) ABSL_LOCKS_EXCLUDED(mutex_);

  const SchedulerOptions options_;
  mutable absl::Mutex mutex_;
  absl::CondVar work_ready_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mutex_);
  std::vector<Running> running_ ABSL_GUARDED_BY(mutex_);  // one per worker
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  Ticket last_ticket_ ABSL_GUARDED_BY(mutex_) = 0;
  std::vector<std::thread> workers_;  // started in the constructor, joined by Shutdown
};

}  // namespace tucker_seg::server
