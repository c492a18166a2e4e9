// The HTTP endpoint beside the gRPC port (cpp-httplib): GET /metrics (Prometheus text format),
// /healthz (200 while the process runs) and /readyz (200 while Segment calls are served, 503
// otherwise) for probes that cannot speak gRPC or TLS.
//
// Scrapes are served concurrently by a pool of threads, each read and write limited to 2 s, so a
// client that trickles bytes holds one thread, not the endpoint. IPv4 and IPv6 ("[::]:9180").
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

#include "vocabulary/status.h"

namespace httplib {
class Server;
}

namespace tucker_seg::server {

class MetricsEndpoint {
 public:
  using Render = std::function<std::string()>;  // the exposition text, produced per scrape
  using Ready = std::function<bool()>;

  // `listen`: "host:port", "[v6-host]:port" ("0.0.0.0", "[::]" for every interface; port 0
  // picks a free one).
  static Result<std::unique_ptr<MetricsEndpoint>> Start(const std::string& listen, Render render, Ready ready);
  ~MetricsEndpoint();
  int port() const { return port_; }

 private:
  MetricsEndpoint() = default;

  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  std::atomic<bool> listening_ended_{false};
  std::thread thread_;
};

}  // namespace tucker_seg::server
