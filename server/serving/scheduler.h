// Admission and execution: a bounded queue in front of N inference workers, ordered by when each
// piece of work is due (earliest first; work without a due time after, first come first served).
// Submit takes the work only when it returns OK (RESOURCE_EXHAUSTED when the queue is full,
// UNAVAILABLE once shutting down). A worker that takes work hands it a Dispatch: how long it has,
// what the other workers still have to do, what waits behind it and how fast work has been
// arriving, so that the work can choose its variant then (late binding, dispatch_policy.h).
// Work calls Dispatch::between_steps between its steps (a prediction: slabs of preprocessing,
// tiles): queued work that would miss its budget waiting for it runs then, on the same worker
// (InterleaveNow; one level deep: interleaved work is not interrupted in turn), so that
// single-tile requests are not stuck behind a whole CT.
// Shutdown drains: queued work still runs, then the workers stop. No gRPC here.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/serving/dispatch_policy.h"
#include "vocabulary/clock.h"
#include "vocabulary/status.h"

namespace tucker_seg::server {

struct SchedulerOptions {
  int workers = 1;
  int max_queue = 8;  // waiting requests, not counting the ones running
  const Clock* clock = &Clock::Real();
};

// What a worker gives the work it takes.
struct Dispatch {
  DispatchView view;  // seconds measured from the moment the worker took the work
  // The run time the work expects once it has chosen (for the wait estimates of later requests).
  std::function<void(double seconds)> expect;
  // For the work to call between its steps with its estimated run time left: runs the queued work
  // that InterleaveNow picks before it goes on, and returns the seconds that took (not the
  // work's own run time). Empty for work that is itself interleaved.
  std::function<double(double remaining_seconds)> between_steps;
  bool interleaved = false;  // this work runs between the steps of other work
};

struct WorkItem {
  std::function<void(const Dispatch&)> work;
  double estimated_seconds = 0;  // its run time as far as anyone can tell before dispatch
  double fastest_seconds = 0;    // its run time with its fastest variant
  Clock::TimePoint due = Clock::TimePoint::max();  // when its budget ends; max(): no budget
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  using Ticket = uint64_t;
  Result<Ticket> Submit(WorkItem item) ABSL_LOCKS_EXCLUDED(mutex_);

  // Work on its way: admitted, its volume still being received. Until the Announcement goes away
  // (its work submitted, or given up), work dispatched meanwhile counts it behind itself, arriving
  // now: when a burst of requests opens its streams together, the first one dispatched does not
  // take the whole budget of the ones a few milliseconds behind it.
  class Announcement {
   public:
    Announcement() = default;
    Announcement(Announcement&& other) noexcept : scheduler_(other.scheduler_), ticket_(other.ticket_) { other.scheduler_ = nullptr; }
    Announcement& operator=(Announcement&& other) noexcept;
    Announcement(const Announcement&) = delete;
    Announcement& operator=(const Announcement&) = delete;
    ~Announcement();

   private:
    friend class Scheduler;
    Announcement(Scheduler* scheduler, Ticket ticket) : scheduler_(scheduler), ticket_(ticket) {}
    Scheduler* scheduler_ = nullptr;
    Ticket ticket_ = 0;
  };
  // `fastest_seconds`: its run time with its fastest variant.
  Announcement Announce(Clock::TimePoint due, double fastest_seconds) ABSL_LOCKS_EXCLUDED(mutex_);
  // Takes queued work out of the queue (its caller gave up while waiting): true when it was still
  // queued and will never run; false once a worker has taken it.
  bool Cancel(Ticket ticket) ABSL_LOCKS_EXCLUDED(mutex_);
  // Expected wait for work submitted now without a due time: estimated work ahead of it spread
  // over the workers.
  double EstimatedWaitSeconds() const ABSL_LOCKS_EXCLUDED(mutex_);
  // The shortest wait for work due at `due`: what runs now, then the work queued ahead of it at
  // its fastest.
  double FastestWaitSeconds(Clock::TimePoint due) const ABSL_LOCKS_EXCLUDED(mutex_);
  int queued() const ABSL_LOCKS_EXCLUDED(mutex_);
  int running() const ABSL_LOCKS_EXCLUDED(mutex_);
  const Clock& clock() const { return *options_.clock; }
  void Shutdown() ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  struct Item {
    WorkItem work;
    Ticket ticket = 0;
    Clock::TimePoint submitted;
  };
  struct Running {
    bool busy = false;
    double estimated_seconds = 0;  // its own estimate until it has chosen, then the chosen variant's
    Clock::TimePoint start;
    // For interleaving: when the worker took its work, and the time interleaved work has had since.
    Clock::TimePoint taken;
    double interleaved_seconds = 0;
  };
  void WorkerLoop(size_t index) ABSL_LOCKS_EXCLUDED(mutex_);
  // What the worker `index` tells `item`, taken now (accrues the spare capacity up to now).
  Dispatch DispatchFor(size_t index, const Item& item, Clock::TimePoint now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Worker time comes out of the spare capacity.
  void Spend(double seconds) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The seconds from `from` to `now` during which work waited in the queue: the worker time work
  // took (with the work interleaved into it) that it spends. Work that ran while nothing waited
  // delayed no one: a single closed-loop client keeps a device busy all the time, and spending that
  // time left the device no headroom at all (it ran only the fastest variant).
  double WaitedThroughSeconds(Clock::TimePoint from, Clock::TimePoint now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Between the steps of the work running on worker `index` (due at `due`, `remaining_seconds`
  // left): the queued work that InterleaveNow picks, run on this thread; the seconds it took.
  double Interleave(size_t index, Clock::TimePoint due, double remaining_seconds) ABSL_LOCKS_EXCLUDED(mutex_);
  // Seconds until each worker but `except` is done, by the estimates (0 for idle ones).
  std::vector<double> WorkersFreeIn(Clock::TimePoint now, size_t except) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const SchedulerOptions options_;
  mutable absl::Mutex mutex_;
  absl::CondVar work_ready_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mutex_);  // by due time, then by arrival
  std::vector<Running> running_ ABSL_GUARDED_BY(mutex_);  // one per worker
  struct Announced {
    Ticket ticket = 0;
    Clock::TimePoint due;
    double fastest_seconds = 0;
  };
  void Withdraw(Ticket ticket) ABSL_LOCKS_EXCLUDED(mutex_);
  std::vector<Announced> announced_ ABSL_GUARDED_BY(mutex_);  // in the order they came
  Ticket last_announcement_ ABSL_GUARDED_BY(mutex_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  Ticket last_ticket_ ABSL_GUARDED_BY(mutex_) = 0;
  // Arrivals: the last one, and the smoothed gap between them (0 until two have come).
  Clock::TimePoint last_arrival_ ABSL_GUARDED_BY(mutex_);
  double mean_arrival_gap_ ABSL_GUARDED_BY(mutex_) = 0;
  // Spare capacity (DispatchView::spare_seconds): kPlannedUtilization x workers per second since
  // spare_at_, less the worker time work took while other work waited (WaitedThroughSeconds;
  // measured, not its estimate: the estimates carry a margin, and spending it made a lightly
  // loaded device downgrade); at least 0, at most that capacity over the budget of the work being
  // dispatched. An idle device starts with that much.
  double spare_seconds_ ABSL_GUARDED_BY(mutex_) = kNoBudget;
  Clock::TimePoint spare_at_ ABSL_GUARDED_BY(mutex_);
  std::vector<std::thread> workers_;  // started in the constructor, joined by Shutdown
};

}  // namespace tucker_seg::server
