// std::mutex with clang's thread-safety annotations, for the libraries that build without
// abseil (the engine libraries, which also build against a bare LibTorch). GCC ignores the
// annotations; the thread_safety_analysis test compiles the sources with clang to check them.
#pragma once

#include <mutex>

#if defined(__clang__)
#define TS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define TS_THREAD_ANNOTATION(x)
#endif

#define TS_CAPABILITY(x) TS_THREAD_ANNOTATION(capability(x))
#define TS_SCOPED_CAPABILITY TS_THREAD_ANNOTATION(scoped_lockable)
#define TS_GUARDED_BY(x) TS_THREAD_ANNOTATION(guarded_by(x))
#define TS_ACQUIRE(...) TS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define TS_RELEASE(...) TS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TS_EXCLUDES(...) TS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))

namespace tucker_seg {

class TS_CAPABILITY("mutex") Mutex {
 public:
  void Lock() TS_ACQUIRE() { mu_.lock(); }
  void Unlock() TS_RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

// Holds `mu` for its scope.
class TS_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) TS_ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() TS_RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

}  // namespace tucker_seg
