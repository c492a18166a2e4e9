// Where time-dependent code reads the time: the steady clock in production, a clock that tests
// set and advance (ManualClock), so that no test waits out a real timeout or depends on how fast
// its machine runs.
#pragma once

#include <atomic>
#include <chrono>

namespace tucker_seg {

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
  // std::chrono::steady_clock.
  static const Clock& Real();
};

// Time stands still until Advance; safe to read from any thread.
class ManualClock final : public Clock {
 public:
  TimePoint Now() const override { return TimePoint(std::chrono::steady_clock::duration(ticks_.load())); }
  void Advance(std::chrono::steady_clock::duration by) { ticks_ += by.count(); }

 private:
  std::atomic<std::chrono::steady_clock::rep> ticks_{std::chrono::steady_clock::now().time_since_epoch().count()};
};

}  // namespace tucker_seg
