#include "server/serving/metrics_endpoint.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <vector>

namespace tucker_seg::server {
namespace {

using TimePoint = Clock::TimePoint;

std::string HttpResponse(int code, const char* reason, const std::string& content_type, const std::string& body, bool with_body,
                         const std::string& extra_headers = "") {
  std::string r = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + content_type +
                  "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n" + extra_headers + "\r\n";
  if (with_body) r += body;
  return r;
}

enum class Phase { kReading, kWriting, kDraining };

struct Connection {
  int fd = -1;
  TimePoint deadline;
  Phase phase = Phase::kReading;
  std::string in;
  std::string out;
  size_t sent = 0;
};

// The end of the request head ("\r\n\r\n", or "\n\n" from a lenient client), npos while incomplete.
size_t HeadEnd(const std::string& in) {
  const size_t crlf = in.find("\r\n\r\n");
  if (crlf != std::string::npos) return crlf;
  return in.find("\n\n");
}

}  // namespace

Result<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(const std::string& listen, Render render, Ready ready, HttpLimits limits,
                                                                 const Clock& clock) {
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

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* addresses = nullptr;
  const int resolved = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &addresses);
  if (resolved != 0) return InvalidArgument("metrics_listen '" + listen + "': " + gai_strerror(resolved));
  std::unique_ptr<MetricsEndpoint> e(new MetricsEndpoint());
  std::string why = "no address";
  for (const addrinfo* a = addresses; a != nullptr && e->listen_fd_ < 0; a = a->ai_next) {
    const int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    const int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  // "[::]" takes IPv4 too
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      e->listen_fd_ = fd;
    } else {
      why = std::strerror(errno);
      close(fd);
    }
  }
  freeaddrinfo(addresses);
  if (e->listen_fd_ < 0) return Unavailable("metrics endpoint: cannot listen on " + listen + ": " + why);
  sockaddr_storage bound{};
  socklen_t bound_size = sizeof bound;
  getsockname(e->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &bound_size);
  e->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  e->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (e->wake_fd_ < 0) return Internal(std::string("metrics endpoint: eventfd: ") + std::strerror(errno));
  e->render_ = std::move(render);
  e->ready_ = std::move(ready);
  e->limits_ = limits;
  e->clock_ = &clock;
  e->thread_ = std::thread([endpoint = e.get()] { endpoint->Serve(); });
  return e;
}

MetricsEndpoint::~MetricsEndpoint() {
  if (thread_.joinable()) {
    stopping_ = true;
    CheckDeadlines();  // wakes the loop, which sees stopping_
    thread_.join();
  }
  if (wake_fd_ >= 0) close(wake_fd_);
  if (listen_fd_ >= 0) close(listen_fd_);
}

void MetricsEndpoint::CheckDeadlines() {
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

bool MetricsEndpoint::AwaitOpenConnections(int connections, absl::Duration timeout) {
  absl::MutexLock lock(&mutex_);
  const auto reached = [this, connections]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return open_connections_ == connections; };
  return mutex_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

void MetricsEndpoint::SetOpenConnections(int connections) {
  absl::MutexLock lock(&mutex_);
  open_connections_ = connections;
}

std::string MetricsEndpoint::Answer(const std::string& head) const {
  const std::string line = head.substr(0, head.find_first_of("\r\n"));
  const size_t sp1 = line.find(' '), sp2 = line.find(' ', sp1 == std::string::npos ? 0 : sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos || line.compare(sp2 + 1, 7, "HTTP/1.") != 0) {
    return HttpResponse(400, "Bad Request", "text/plain", "bad request: expected 'GET <path> HTTP/1.x'\n", true);
  }
  const std::string method = line.substr(0, sp1);
  std::string path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  const bool with_body = method != "HEAD";
  if (method != "GET" && method != "HEAD") {
    return HttpResponse(405, "Method Not Allowed", "text/plain", "only GET and HEAD\n", true, "Allow: GET, HEAD\r\n");
  }
  if (path == "/metrics") {
    try {
      return HttpResponse(200, "OK", "text/plain; version=0.0.4; charset=utf-8", render_(), with_body);
    } catch (const std::exception& ex) {
      return HttpResponse(500, "Internal Server Error", "text/plain", std::string("metrics: ") + ex.what() + "\n", with_body);
    }
  }
  if (path == "/healthz") return HttpResponse(200, "OK", "text/plain", "ok\n", with_body);
  if (path == "/readyz") {
    if (ready_()) return HttpResponse(200, "OK", "text/plain", "ready\n", with_body);
    return HttpResponse(503, "Service Unavailable", "text/plain", "not ready: calibrating, or shutting down\n", with_body);
  }
  return HttpResponse(404, "Not Found", "text/plain", "not found: this endpoint serves GET /metrics, /healthz and /readyz\n", with_body);
}

void MetricsEndpoint::Serve() {
  std::vector<Connection> connections;
  TimePoint accept_again;  // after a failed accept (out of descriptors, say): no busy loop
  const auto deadline = std::chrono::duration_cast<TimePoint::duration>(std::chrono::duration<double>(limits_.connection_deadline_seconds));
  std::vector<pollfd> polled;
  char buffer[4096];
  for (;;) {
    const auto now = clock_->Now();
    const bool accepting = static_cast<int>(connections.size()) < limits_.max_connections && now >= accept_again;
    polled.assign({{wake_fd_, POLLIN, 0}, {accepting ? listen_fd_ : -1, POLLIN, 0}});
    TimePoint next = accepting ? TimePoint::max() : accept_again;
    for (const Connection& c : connections) {
      polled.push_back({c.fd, static_cast<short>(c.phase == Phase::kWriting ? POLLOUT : POLLIN), 0});
      next = std::min(next, c.deadline);
    }
    int timeout_ms = -1;
    if (next != TimePoint::max()) {
      timeout_ms = static_cast<int>(std::clamp<int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1, 0, 60000));
    }
    if (poll(polled.data(), polled.size(), timeout_ms) < 0 && errno != EINTR) return;
    if (polled[0].revents != 0) {
      uint64_t wakes = 0;
      (void)!read(wake_fd_, &wakes, sizeof wakes);
      if (stopping_) break;
    }

    for (size_t i = 0; i < connections.size(); ++i) {
      Connection& c = connections[i];
      const short events = polled[i + 2].revents;
      if (events == 0) continue;
      if (c.phase == Phase::kWriting) {
        const ssize_t n = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
          c.deadline = TimePoint::min();  // gone at the sweep below
          continue;
        }
        if (n > 0) c.sent += static_cast<size_t>(n);
        if (c.sent == c.out.size()) {
          // Close only after the client has closed its side: closing with unread bytes in the
          // receive buffer would send a reset that can destroy the answer in flight.
          shutdown(c.fd, SHUT_WR);
          c.phase = Phase::kDraining;
        }
        continue;
      }
      const ssize_t n = recv(c.fd, buffer, sizeof buffer, 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {
        c.deadline = TimePoint::min();  // closed or failed
        continue;
      }
      if (c.phase == Phase::kDraining) continue;
      c.in.append(buffer, static_cast<size_t>(n));
      const size_t head_end = HeadEnd(c.in);
      if (head_end != std::string::npos && head_end <= limits_.max_request_bytes) {
        c.out = Answer(c.in.substr(0, head_end));
      } else if (c.in.size() > limits_.max_request_bytes) {
        c.out = HttpResponse(431, "Request Header Fields Too Large", "text/plain",
                             "request head larger than " + std::to_string(limits_.max_request_bytes) + " bytes\n", true);
      } else {
        continue;
      }
      c.in.clear();
      c.phase = Phase::kWriting;
    }

    const auto swept = clock_->Now();
    connections.erase(std::remove_if(connections.begin(), connections.end(),
                                     [swept](const Connection& c) {
                                       if (c.deadline > swept) return false;
                                       close(c.fd);
                                       return true;
                                     }),
                      connections.end());

    if (polled[1].revents != 0) {
      while (static_cast<int>(connections.size()) < limits_.max_connections) {
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
          connections.push_back(Connection{fd, clock_->Now() + deadline});
          continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) accept_again = clock_->Now() + std::chrono::milliseconds(100);
        break;
      }
    }
    SetOpenConnections(static_cast<int>(connections.size()));
  }
  for (const Connection& c : connections) close(c.fd);
}

}  // namespace tucker_seg::server
