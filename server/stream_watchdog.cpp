#include "server/stream_watchdog.h"

#include <algorithm>

namespace tucker_seg::server {

StreamWatchdog::Watch::~Watch() {
  absl::MutexLock lock(&dog_->mutex_);
  dog_->entries_.erase(entry_);
}

void StreamWatchdog::Watch::Mark(bool waiting) {
  absl::MutexLock lock(&dog_->mutex_);
  entry_->waiting_on_client = waiting;
  entry_->since = dog_->clock_.Now();
}

bool StreamWatchdog::Watch::timed_out() const {
  absl::MutexLock lock(&dog_->mutex_);
  return entry_->timed_out;
}

StreamWatchdog::StreamWatchdog(double idle_timeout_seconds, const Clock& clock) : timeout_(idle_timeout_seconds), clock_(clock) {
  if (idle_timeout_seconds > 0) thread_ = std::thread(&StreamWatchdog::Loop, this);
}

StreamWatchdog::~StreamWatchdog() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    stop_changed_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
}

std::unique_ptr<StreamWatchdog::Watch> StreamWatchdog::Register(grpc::ServerContext* context) {
  absl::MutexLock lock(&mutex_);
  entries_.push_back({context, true, clock_.Now(), false});
  return std::make_unique<Watch>(this, std::prev(entries_.end()));
}

void StreamWatchdog::Loop() {
  // Checks four times per timeout (at most once a second): a stream idles at most 1.25x as long.
  const auto period = absl::Seconds(std::min(1.0, timeout_.count() / 4));
  absl::MutexLock lock(&mutex_);
  while (!stopping_) {
    stop_changed_.WaitWithTimeout(&mutex_, period);
    CancelIdle();
  }
}

void StreamWatchdog::CancelIdleStreams() {
  absl::MutexLock lock(&mutex_);
  CancelIdle();
}

void StreamWatchdog::CancelIdle() {
  if (timeout_.count() <= 0) return;
  const auto now = clock_.Now();
  for (auto& e : entries_) {
    if (e.waiting_on_client && !e.timed_out && now - e.since > timeout_) {
      e.timed_out = true;
      e.context->TryCancel();
    }
  }
}

bool StreamWatchdog::AwaitWaitingOnClients(int streams, absl::Duration timeout) {
  absl::MutexLock lock(&mutex_);
  const auto enough = [this, streams]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return std::count_if(entries_.begin(), entries_.end(), [](const Entry& e) { return e.waiting_on_client; }) >= streams;
  };
  return mutex_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

}  // namespace tucker_seg::server
