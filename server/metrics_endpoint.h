// A minimal HTTP/1.1 endpoint for Prometheus: GET /metrics -> text exposition format.
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

namespace tucker_seg::server {

class MetricsEndpoint {
 public:
  using Render = std::function<std::string()>;  // the exposition text, produced per scrape

  // `listen`: "host:port" (IPv4 or "0.0.0.0"; port 0 picks a free one).
  static Result<std::unique_ptr<MetricsEndpoint>> Start(const std::string& listen, Render render);
  ~MetricsEndpoint();
  int port() const { return port_; }

 private:
  MetricsEndpoint() = default;
  void Serve();
  void Answer(int connection);

  Render render_;
  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};  // written on shutdown to end the accept loop
  int port_ = 0;
  std::thread thread_;
};

}  // namespace tucker_seg::server
