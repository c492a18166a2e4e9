#include "server/metrics_endpoint.h"

#include <httplib.h>

namespace tucker_seg::server {

Result<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(const std::string& listen, Render render, Ready ready) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("metrics_listen '" + listen + "' must be host:port or [host]:port");
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "*") host = "0.0.0.0";
  char* end = nullptr;
  const long port = std::strtol(listen.c_str() + colon + 1, &end, 10);
  if (end == listen.c_str() + colon + 1 || *end != '\0' || port < 0 || port > 65535) {
    return InvalidArgument("metrics_listen '" + listen + "': port must be 0..65535");
  }

  std::unique_ptr<MetricsEndpoint> e(new MetricsEndpoint());
  e->http_ = std::make_unique<httplib::Server>();
  auto& http = *e->http_;
  http.new_task_queue = [] { return new httplib::ThreadPool(16); };
  http.set_read_timeout(2, 0);
  http.set_write_timeout(2, 0);
  http.set_keep_alive_timeout(5);
  http.set_keep_alive_max_count(100);
  http.set_payload_max_length(8192);
  http.Get("/metrics", [render](const httplib::Request&, httplib::Response& response) {
    response.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& response) { response.set_content("ok\n", "text/plain"); });
  http.Get("/readyz", [ready](const httplib::Request&, httplib::Response& response) {
    const bool is_ready = ready();
    response.status = is_ready ? 200 : 503;
    response.set_content(is_ready ? "ready\n" : "not ready: calibrating, or shutting down\n", "text/plain");
  });
  http.set_error_handler([](const httplib::Request&, httplib::Response& response) {
    if (response.status == 404) response.set_content("not found: this endpoint serves GET /metrics, /healthz and /readyz\n", "text/plain");
  });
  e->port_ = port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, static_cast<int>(port)) ? static_cast<int>(port) : -1);
  if (e->port_ <= 0) return Unavailable("metrics endpoint: cannot listen on " + listen);
  e->thread_ = std::thread([&http, &listening_ended = e->listening_ended_] {
    http.listen_after_bind();
    listening_ended = true;
  });
  return e;
}

MetricsEndpoint::~MetricsEndpoint() {
  if (!thread_.joinable()) return;
  // httplib's stop() does nothing until its accept loop runs: wait for that (or for its end).
  while (!http_->is_running() && !listening_ended_) std::this_thread::yield();
  http_->stop();
  thread_.join();
}

}  // namespace tucker_seg::server
