// Admission and execution: a bounded FIFO queue in front of N inference workers. Submit takes
// the work only when it returns OK (RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE once
// shutting down). Shutdown drains: queued work still runs, then the workers stop. No gRPC here.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "vocabulary/status.h"

namespace tucker_seg::server {

struct SchedulerOptions {
  int workers = 1;
  int max_queue = 8;  // waiting requests, not counting the ones running
};

class Scheduler {
 public:
  using Work = std::function<void()>;

  explicit Scheduler(SchedulerOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // `estimated_seconds`: how long the work should run, for the wait estimate of later requests.
  Status Submit(Work work, double estimated_seconds);
  // Expected wait for work submitted now: estimated work ahead of it spread over the workers.
  double EstimatedWaitSeconds() const;
  int queued() const;
  int running() const;
  void Shutdown();

 private:
  using Clock = std::chrono::steady_clock;
  struct Item {
    Work work;
    double estimated_seconds;
  };
  struct Running {
    bool busy = false;
    double estimated_seconds = 0;
    Clock::time_point start;
  };
  void WorkerLoop(size_t index);

  const SchedulerOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable work_ready_;
  std::deque<Item> queue_;         // guarded by mutex_
  std::vector<Running> running_;   // guarded by mutex_, one per worker
  bool stopping_ = false;          // guarded by mutex_
  std::vector<std::thread> workers_;
};

}  // namespace tucker_seg::server
