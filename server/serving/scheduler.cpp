#include "server/serving/scheduler.h"

#include <algorithm>

namespace tucker_seg::server {
namespace {

double SecondsBetween(Clock::TimePoint from, Clock::TimePoint to) { return std::chrono::duration<double>(to - from).count(); }

double SecondsUntil(Clock::TimePoint now, Clock::TimePoint due) {
  return due == Clock::TimePoint::max() ? kNoBudget : SecondsBetween(now, due);
}

}  // namespace

Scheduler::Scheduler(SchedulerOptions options) : options_(options) {
  const int n = std::max(1, options_.workers);
  {
    absl::MutexLock lock(&mutex_);
    running_.resize(static_cast<size_t>(n));
  }
  for (int i = 0; i < n; ++i) workers_.emplace_back([this, i] { WorkerLoop(static_cast<size_t>(i)); });
}

Scheduler::~Scheduler() { Shutdown(); }

Result<Scheduler::Ticket> Scheduler::Submit(WorkItem item) {
  absl::MutexLock lock(&mutex_);
  if (stopping_) return Unavailable("the server is shutting down");
  if (static_cast<int>(queue_.size()) >= options_.max_queue) {
    return ResourceExhausted("the request queue is full (max_queue " + std::to_string(options_.max_queue) + "); retry later");
  }
  const auto now = options_.clock->Now();
  if (last_ticket_ > 0) {
    const double gap = SecondsBetween(last_arrival_, now);
    mean_arrival_gap_ = mean_arrival_gap_ == 0 ? gap : mean_arrival_gap_ + 0.2 * (gap - mean_arrival_gap_);
  }
  last_arrival_ = now;
  const auto after = std::upper_bound(queue_.begin(), queue_.end(), item.due, [](Clock::TimePoint due, const Item& queued) {
    return due < queued.work.due;
  });
  queue_.insert(after, Item{std::move(item), ++last_ticket_, now});
  work_ready_.Signal();
  return last_ticket_;
}

Scheduler::Announcement Scheduler::Announce(Clock::TimePoint due, double fastest_seconds) {
  absl::MutexLock lock(&mutex_);
  announced_.push_back({++last_announcement_, due, fastest_seconds});
  return Announcement(this, last_announcement_);
}

void Scheduler::Withdraw(Ticket ticket) {
  absl::MutexLock lock(&mutex_);
  announced_.erase(std::remove_if(announced_.begin(), announced_.end(), [ticket](const Announced& a) { return a.ticket == ticket; }),
                   announced_.end());
}

Scheduler::Announcement& Scheduler::Announcement::operator=(Announcement&& other) noexcept {
  if (this != &other) {
    if (scheduler_) scheduler_->Withdraw(ticket_);
    scheduler_ = other.scheduler_;
    ticket_ = other.ticket_;
    other.scheduler_ = nullptr;
  }
  return *this;
}

Scheduler::Announcement::~Announcement() {
  if (scheduler_) scheduler_->Withdraw(ticket_);
}

bool Scheduler::Cancel(Ticket ticket) {
  absl::MutexLock lock(&mutex_);
  const auto it = std::find_if(queue_.begin(), queue_.end(), [ticket](const Item& item) { return item.ticket == ticket; });
  if (it == queue_.end()) return false;
  queue_.erase(it);
  return true;
}

std::vector<double> Scheduler::WorkersFreeIn(Clock::TimePoint now, size_t except) const {
  std::vector<double> free_in;
  for (size_t i = 0; i < running_.size(); ++i) {
    if (i == except) continue;
    const Running& r = running_[i];
    free_in.push_back(r.busy ? std::max(0.0, r.estimated_seconds - SecondsBetween(r.start, now)) : 0.0);
  }
  return free_in;
}

double Scheduler::EstimatedWaitSeconds() const {
  absl::MutexLock lock(&mutex_);
  const bool idle_worker = std::any_of(running_.begin(), running_.end(), [](const Running& r) { return !r.busy; });
  if (queue_.empty() && idle_worker) return 0;
  const std::vector<double> free_in = WorkersFreeIn(options_.clock->Now(), running_.size());
  double outstanding = 0;
  for (double f : free_in) outstanding += f;
  for (const auto& item : queue_) outstanding += item.work.estimated_seconds;
  return outstanding / static_cast<double>(running_.size());
}

double Scheduler::FastestWaitSeconds(Clock::TimePoint due) const {
  absl::MutexLock lock(&mutex_);
  std::vector<double> free_in = WorkersFreeIn(options_.clock->Now(), running_.size());
  for (const auto& item : queue_) {
    if (item.work.due > due) break;  // it would go ahead of these
    *std::min_element(free_in.begin(), free_in.end()) += item.work.fastest_seconds;
  }
  return *std::min_element(free_in.begin(), free_in.end());
}

int Scheduler::queued() const {
  absl::MutexLock lock(&mutex_);
  return static_cast<int>(queue_.size());
}

int Scheduler::running() const {
  absl::MutexLock lock(&mutex_);
  return static_cast<int>(std::count_if(running_.begin(), running_.end(), [](const Running& r) { return r.busy; }));
}

void Scheduler::Shutdown() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    work_ready_.SignalAll();
  }
  for (auto& w : workers_)
    if (w.joinable()) w.join();
}

Dispatch Scheduler::DispatchFor(size_t index, const Item& item, Clock::TimePoint now) {
  Dispatch dispatch;
  dispatch.view.seconds_left = SecondsUntil(now, item.work.due);
  dispatch.view.other_workers_free_in = WorkersFreeIn(now, index);
  for (const auto& behind : queue_) dispatch.view.behind.push_back({SecondsUntil(now, behind.work.due), behind.work.fastest_seconds});
  for (const Announced& coming : announced_) dispatch.view.behind.push_back({SecondsUntil(now, coming.due), coming.fastest_seconds});
  // The arrival rate, lower when nothing has come for longer than the usual gap.
  const double gap = std::max(mean_arrival_gap_, SecondsBetween(last_arrival_, now));
  dispatch.view.arrivals_per_second = mean_arrival_gap_ > 0 && gap > 0 ? 1 / gap : 0;
  dispatch.view.budget_seconds = item.work.due == Clock::TimePoint::max() ? kNoBudget : SecondsBetween(item.submitted, item.work.due);
  dispatch.view.fastest_run_seconds = item.work.fastest_seconds;
  const double capacity = kPlannedUtilization * static_cast<double>(running_.size());
  if (spare_seconds_ < kNoBudget) spare_seconds_ += capacity * SecondsBetween(spare_at_, now);
  spare_at_ = now;
  // Bounded: a long idle spell is not saved up for a long burst; and no debt, so that an overload
  // is not held against the load after it (with a debt of one budget, a closed-loop ramp ran only
  // the fastest variant for many seconds after its peak).
  spare_seconds_ = std::clamp(spare_seconds_, 0.0, capacity * dispatch.view.budget_seconds);
  dispatch.view.spare_seconds = dispatch.view.budget_seconds < kNoBudget ? spare_seconds_ : kNoBudget;
  return dispatch;
}

void Scheduler::Spend(double seconds) {
  if (spare_seconds_ < kNoBudget) spare_seconds_ -= seconds;
}

double Scheduler::WaitedThroughSeconds(Clock::TimePoint from, Clock::TimePoint now) const {
  if (queue_.empty()) return 0;
  Clock::TimePoint first = queue_.front().submitted;
  for (const Item& queued : queue_) first = std::min(first, queued.submitted);
  return std::max(0.0, SecondsBetween(std::max(from, first), now));
}

void Scheduler::WorkerLoop(size_t index) {
  for (;;) {
    Item item;
    Dispatch dispatch;
    {
      absl::MutexLock lock(&mutex_);
      while (!stopping_ && queue_.empty()) work_ready_.Wait(&mutex_);
      if (queue_.empty()) return;  // stopping and drained
      item = std::move(queue_.front());
      queue_.pop_front();
      const auto now = options_.clock->Now();
      running_[index] = {true, item.work.estimated_seconds, now, now, 0};
      dispatch = DispatchFor(index, item, now);
    }
    dispatch.expect = [this, index](double seconds) {
      absl::MutexLock lock(&mutex_);
      running_[index].estimated_seconds = seconds;
    };
    dispatch.between_steps = [this, index, due = item.work.due](double remaining_seconds) {
      return Interleave(index, due, remaining_seconds);
    };
    item.work.work(dispatch);
    absl::MutexLock lock(&mutex_);
    running_[index].busy = false;
    Spend(WaitedThroughSeconds(running_[index].taken, options_.clock->Now()));  // interleaved work included
  }
}

double Scheduler::Interleave(size_t index, Clock::TimePoint due, double remaining_seconds) {
  double took = 0;
  size_t limit = 0;  // work that arrives while interleaved work runs waits for the next call
  {
    absl::MutexLock lock(&mutex_);
    running_[index].estimated_seconds = remaining_seconds;
    running_[index].start = options_.clock->Now();
    limit = queue_.size();
  }
  for (size_t n = 0; n < limit; ++n) {
    Item item;
    Dispatch dispatch;
    {
      absl::MutexLock lock(&mutex_);
      const auto now = options_.clock->Now();
      Running& worker = running_[index];
      const double interleaved = worker.interleaved_seconds;
      const RunningWork running{remaining_seconds, SecondsUntil(now, due), SecondsBetween(worker.taken, now) - interleaved, interleaved};
      const std::vector<double> others = WorkersFreeIn(now, index);
      const auto picked = std::find_if(queue_.begin(), queue_.end(), [&](const Item& queued) {
        return InterleaveNow(running, {SecondsUntil(now, queued.work.due), queued.work.fastest_seconds}, others);
      });
      if (picked == queue_.end()) return took;
      item = std::move(*picked);
      queue_.erase(picked);
      worker.estimated_seconds = item.work.estimated_seconds + remaining_seconds;
      worker.start = now;
      dispatch = DispatchFor(index, item, now);
      // The interrupted work waits behind it, first.
      dispatch.view.behind.insert(dispatch.view.behind.begin(), WaitingRequest{running.seconds_left, remaining_seconds});
      dispatch.interleaved = true;
    }
    dispatch.expect = [this, index, remaining_seconds](double seconds) {
      absl::MutexLock lock(&mutex_);
      running_[index].estimated_seconds = seconds + remaining_seconds;
    };
    item.work.work(dispatch);
    absl::MutexLock lock(&mutex_);
    Running& worker = running_[index];
    const auto now = options_.clock->Now();
    worker.interleaved_seconds += SecondsBetween(worker.start, now);
    took += SecondsBetween(worker.start, now);
    worker.estimated_seconds = remaining_seconds;
    worker.start = now;
  }
  return took;
}

}  // namespace tucker_seg::server
