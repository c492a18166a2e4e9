// --stream-idle-timeout: cancels a Segment stream whose client has neither sent nor taken bytes
// for that long while the server waits on it (the header, the voxels, or room to write the
// result). Time spent queued or running counts as activity: that wait is the server's, not the
// client's. gRPC's sync API has no read timeout, so one thread checks every open stream; tests give
// it a ManualClock and sweep by hand after advancing it.
#pragma once

#include <chrono>
#include <list>
#include <thread>

#include <grpcpp/server_context.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "vocabulary/clock.h"

namespace tucker_seg::server {

class StreamWatchdog {
 private:
  struct Entry {
    grpc::ServerContext* context = nullptr;
    bool waiting_on_client = false;
    Clock::TimePoint since;
    bool timed_out = false;
  };

 public:
  // One stream's registration; the handler marks when it waits on the client and when not.
  class Watch {
   public:
    Watch(StreamWatchdog* dog, std::list<Entry>::iterator entry) : dog_(dog), entry_(entry) {}
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;
    ~Watch();
    void WaitingOnClient() { Mark(true); }
    void Working() { Mark(false); }
    // Whether the watchdog cancelled this stream for idling.
    bool timed_out() const;

   private:
    void Mark(bool waiting);
    StreamWatchdog* dog_;
    std::list<Entry>::iterator entry_;
  };

  // 0 seconds: never cancels (Watch still works).
  explicit StreamWatchdog(double idle_timeout_seconds, const Clock& clock = Clock::Real());
  ~StreamWatchdog();
  StreamWatchdog(const StreamWatchdog&) = delete;
  StreamWatchdog& operator=(const StreamWatchdog&) = delete;

  std::unique_ptr<Watch> Register(grpc::ServerContext* context) ABSL_LOCKS_EXCLUDED(mutex_);
  double idle_timeout_seconds() const { return timeout_.count(); }
  // Cancels every stream that has waited on its client longer than the timeout (the watchdog's
  // thread does this four times per timeout).
  void CancelIdleStreams() ABSL_LOCKS_EXCLUDED(mutex_);
  // Blocks until `streams` registered streams wait on their clients, or `timeout` passes; whether
  // they do.
  bool AwaitWaitingOnClients(int streams, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mutex_);
  void CancelIdle() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const std::chrono::duration<double> timeout_;
  const Clock& clock_;
  mutable absl::Mutex mutex_;
  absl::CondVar stop_changed_;
  std::list<Entry> entries_ ABSL_GUARDED_BY(mutex_);
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::thread thread_;
};

}  // namespace tucker_seg::server
