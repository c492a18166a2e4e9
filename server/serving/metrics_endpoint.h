// The HTTP endpoint beside the gRPC port: GET /metrics (Prometheus text format), /healthz (200
// while the process runs) and /readyz (200 while Segment calls are served, 503 otherwise) for
// probes that cannot speak gRPC or TLS.
//
// One thread runs a poll() loop over non-blocking sockets. Every connection has a deadline
// (request read, answer written, closed), whatever it sends: a client that trickles one byte a
// second is cut off at the deadline instead of holding anything for hours, and many such clients
// cost a socket each, not a thread. Requests are HTTP/1.x GETs (or HEADs) of at most 8 KiB of header; every
// answer closes the connection. When `max_connections` are open, new ones wait in the kernel's
// backlog until one ends. IPv4 and IPv6 ("[::]:9180" accepts both).
//
// Why not prometheus-cpp's Exposer: its civetweb cannot start worker threads in a process that
// has Debian's libtorch_cpu loaded ("Cannot create first worker thread", reproduced with a
// ten-line program linking both), so the server serialises its prometheus-cpp registry itself.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "vocabulary/clock.h"
#include "vocabulary/status.h"

namespace tucker_seg::server {

struct HttpLimits {
  double connection_deadline_seconds = 10;  // from accept to close
  int max_connections = 256;
  size_t max_request_bytes = 8192;
};

class MetricsEndpoint {
 public:
  using Render = std::function<std::string()>;  // the exposition text, produced per scrape
  using Ready = std::function<bool()>;

  // `listen`: "host:port", "[v6-host]:port" ("0.0.0.0", "[::]" for every interface; port 0
  // picks a free one).
  // Deadlines are measured on `clock` (tests pass a ManualClock and call CheckDeadlines).
  static Result<std::unique_ptr<MetricsEndpoint>> Start(const std::string& listen, Render render, Ready ready, HttpLimits limits = {},
                                                        const Clock& clock = Clock::Real());
  ~MetricsEndpoint();
  int port() const { return port_; }
  // Closes the connections whose deadline has passed on the clock now. The loop does this by
  // itself when the nearest deadline comes; a test that advanced a ManualClock calls it.
  void CheckDeadlines();
  // Blocks until `connections` are open (accepted and not yet closed) or `timeout` passes;
  // whether they are.
  bool AwaitOpenConnections(int connections, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  MetricsEndpoint() = default;
  void Serve();
  void SetOpenConnections(int connections) ABSL_LOCKS_EXCLUDED(mutex_);
  std::string Answer(const std::string& request_head) const;

  Render render_;
  Ready ready_;
  HttpLimits limits_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: wakes the loop to stop (stopping_) or to look at the clock again
  std::atomic<bool> stopping_{false};
  const Clock* clock_ = &Clock::Real();
  absl::Mutex mutex_;
  int open_connections_ ABSL_GUARDED_BY(mutex_) = 0;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace tucker_seg::server
