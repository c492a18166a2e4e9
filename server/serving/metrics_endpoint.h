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

#include <functional>
#include <memory>
#include <string>
#include <thread>

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
  static Result<std::unique_ptr<MetricsEndpoint>> Start(const std::string& listen, Render render, Ready ready, HttpLimits limits = {});
  ~MetricsEndpoint();
  int port() const { return port_; }

 private:
  MetricsEndpoint() = default;
  void Serve();
  std::string Answer(const std::string& request_head) const;

  Render render_;
  Ready ready_;
  HttpLimits limits_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: the destructor's signal to stop
  int port_ = 0;
  std::thread thread_;
};

}  // namespace tucker_seg::server
