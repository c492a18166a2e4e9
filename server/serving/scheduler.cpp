#include "server/serving/scheduler.h"

#include <algorithm>

namespace tucker_seg::server {

Scheduler::Scheduler(SchedulerOptions options) : options_(options) {
  const int n = std::max(1, options_.workers);
  {
    absl::MutexLock lock(&mutex_);
    running_.resize(static_cast<size_t>(n));
  }
  for (int i = 0; i < n; ++i) workers_.emplace_back([this, i] { WorkerLoop(static_cast<size_t>(i)); });
}

Scheduler::~Scheduler() { Shutdown(); }

Result<Scheduler::Ticket> Scheduler::Submit(Work work, double estimated_seconds) {
  absl::MutexLock lock(&mutex_);
  if (stopping_) return Unavailable("the server is shutting down");
  if (static_cast<int>(queue_.size()) >= options_.max_queue) {
    return ResourceExhausted("the request queue is full (max_queue " + std::to_string(options_.max_queue) + "); retry later");
  }
  queue_.push_back({std::move(work), estimated_seconds, ++last_ticket_});
  work_ready_.Signal();
  return last_ticket_;
}

bool Scheduler::Cancel(Ticket ticket) {
  absl::MutexLock lock(&mutex_);
  const auto it = std::find_if(queue_.begin(), queue_.end(), [ticket](const Item& item) { return item.ticket == ticket; });
  if (it == queue_.end()) return false;
  queue_.erase(it);
  return true;
}

double Scheduler::EstimatedWaitSeconds() const {
  absl::MutexLock lock(&mutex_);
  double outstanding = 0;
  int busy = 0;
  const auto now = options_.clock->Now();
  for (const auto& r : running_) {
    if (!r.busy) continue;
    ++busy;
    outstanding += std::max(0.0, r.estimated_seconds - std::chrono::duration<double>(now - r.start).count());
  }
  if (queue_.empty() && busy < static_cast<int>(running_.size())) return 0;
  for (const auto& item : queue_) outstanding += item.estimated_seconds;
  return outstanding / static_cast<double>(running_.size());
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

void Scheduler::WorkerLoop(size_t index) {
  for (;;) {
    Item item;
    {
      absl::MutexLock lock(&mutex_);
      while (!stopping_ && queue_.empty()) work_ready_.Wait(&mutex_);
      if (queue_.empty()) return;  // stopping and drained
      item = std::move(queue_.front());
      queue_.pop_front();
      running_[index] = {true, item.estimated_seconds, options_.clock->Now()};
    }
    item.work();
    absl::MutexLock lock(&mutex_);
    running_[index].busy = false;
  }
}

}  // namespace tucker_seg::server
