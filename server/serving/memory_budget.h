// The server-wide memory budget (--memory-budget): every admitted Segment call reserves its
// estimated bytes before it allocates anything and gives them back when it ends, so that a burst
// of large CTs is refused (RESOURCE_EXHAUSTED) instead of taking the process past its limit.
#pragma once

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "vocabulary/status.h"

namespace tucker_seg::server {

class MemoryBudget {
 public:
  // Holds bytes of the budget until destroyed (move-only).
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& other) noexcept : budget_(other.budget_), bytes_(other.bytes_) { other.budget_ = nullptr; }
    Reservation& operator=(Reservation&& other) noexcept;
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    ~Reservation() { Release(); }
    int64_t bytes() const { return bytes_; }

   private:
    friend class MemoryBudget;
    Reservation(MemoryBudget* budget, int64_t bytes) : budget_(budget), bytes_(bytes) {}
    void Release();
    MemoryBudget* budget_ = nullptr;
    int64_t bytes_ = 0;
  };

  explicit MemoryBudget(int64_t total_bytes) : total_(total_bytes) {}

  // RESOURCE_EXHAUSTED when `bytes` do not fit beside what is reserved now (retry later), or
  // INVALID_ARGUMENT when they exceed the whole budget (never admissible).
  Result<Reservation> Reserve(int64_t bytes) ABSL_LOCKS_EXCLUDED(mutex_);
  int64_t total() const { return total_; }
  int64_t reserved() const ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  const int64_t total_;
  mutable absl::Mutex mutex_;
  int64_t reserved_ ABSL_GUARDED_BY(mutex_) = 0;
};

// The budget when --memory-budget is 0: 60% of the memory this process may use (the cgroup's
// memory.max when set, otherwise the machine's), leaving room for the loaded networks.
int64_t DefaultMemoryBudget();

// "8G", "512M", "3000000000" -> bytes (K, M, G, T are powers of 1024). INVALID_ARGUMENT names
// `field`.
Result<int64_t> ParseByteSize(const std::string& text, const std::string& field);

}  // namespace tucker_seg::server
