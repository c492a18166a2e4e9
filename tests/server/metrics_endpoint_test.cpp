// The HTTP endpoint beside gRPC: stalled clients do not block other scrapes, a client that
// trickles bytes is cut off at the connection deadline, a full endpoint queues new connections,
// /readyz follows readiness, /healthz answers, IPv6 listens, bad requests get 4xx.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>

#include "server/serving/metrics_endpoint.h"
#include "support/http_get.h"

namespace tucker_seg::server {
namespace {

// An open connection to 127.0.0.1:port (or [::1]:port) that has sent `bytes` and nothing more.
int OpenConnection(int port, const std::string& bytes, bool ipv6 = false) {
  const int fd = socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  int connected = -1;
  if (ipv6) {
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_port = htons(static_cast<uint16_t>(port));
    addr.sin6_addr = in6addr_loopback;
    connected = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } else {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  if (connected != 0) {
    close(fd);
    return -1;
  }
  if (!bytes.empty()) (void)!send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  return fd;
}

std::string ReadAll(int fd) {
  const timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) response.append(buffer, static_cast<size_t>(n));
  close(fd);
  return response;
}

TEST(MetricsEndpoint, StalledClientsDoNotBlockScrapes) {
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", [] { return std::string("tuckerseg_up 1\n"); }, [] { return true; });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
  const int port = endpoint.value()->port();
  // 100 connections that began a request and stalled: more than any thread pool we would size
  // (the first endpoint served one connection at a time, the second 16).
  std::vector<int> stalled;
  for (int i = 0; i < 100; ++i) stalled.push_back(OpenConnection(port, "GET /metr"));
  for (int i = 0; i < 3; ++i) {
    const auto body = tucker_seg::testing::HttpGet(port, "/metrics");
    ASSERT_TRUE(body.has_value());
    EXPECT_EQ(*body, "tuckerseg_up 1\n");
  }
  for (int fd : stalled) {
    ASSERT_GE(fd, 0);
    close(fd);
  }
}

// True when the peer closed the connection (recv gives 0 or a reset) before `timeout`.
bool ClosedByPeer(int fd, int timeout_seconds) {
  const timeval timeout{timeout_seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  char byte;
  for (;;) {
    const ssize_t n = recv(fd, &byte, 1, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    if (n < 0) return false;  // timed out
  }
}

TEST(MetricsEndpoint, TricklingClientIsCutOffAtTheDeadline) {
  ManualClock clock;
  HttpLimits limits;
  limits.connection_deadline_seconds = 1;
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", [] { return std::string("x 1\n"); }, [] { return true; }, limits, clock);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
  const int fd = OpenConnection(endpoint.value()->port(), "GET /metrics HTTP/1.1\r\nX-Slow: ");
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(endpoint.value()->AwaitOpenConnections(1, absl::Seconds(30)));
  // One header byte every 100 ms (of the endpoint's clock): each read comes long before any
  // per-read timeout, and the head stays far below its size limit; only a deadline on the whole
  // connection ends it, once 1 s has passed.
  for (int i = 0; i < 9; ++i) {
    ASSERT_EQ(send(fd, "a", 1, MSG_NOSIGNAL), 1) << "closed after " << i << " bytes";
    clock.Advance(std::chrono::milliseconds(100));
    endpoint.value()->CheckDeadlines();
  }
  ASSERT_EQ(send(fd, "a", 1, MSG_NOSIGNAL), 1);
  clock.Advance(std::chrono::milliseconds(200));
  endpoint.value()->CheckDeadlines();
  EXPECT_TRUE(ClosedByPeer(fd, 25));
  EXPECT_TRUE(endpoint.value()->AwaitOpenConnections(0, absl::Seconds(30)));
  close(fd);
}

TEST(MetricsEndpoint, AFullEndpointQueuesNewConnectionsUntilOneEnds) {
  ManualClock clock;
  HttpLimits limits;
  limits.connection_deadline_seconds = 1;
  limits.max_connections = 2;
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", [] { return std::string("queued 1\n"); }, [] { return true; }, limits, clock);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
  const int port = endpoint.value()->port();
  const int a = OpenConnection(port, "GET /metr"), b = OpenConnection(port, "GET /metr");
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_TRUE(endpoint.value()->AwaitOpenConnections(2, absl::Seconds(30)));
  // Both slots are held; this scrape waits in the backlog until their deadline frees them.
  const int scrape = OpenConnection(port, "GET /metrics HTTP/1.1\r\n\r\n");
  ASSERT_GE(scrape, 0);
  clock.Advance(std::chrono::milliseconds(1100));
  endpoint.value()->CheckDeadlines();
  EXPECT_TRUE(ClosedByPeer(a, 10));
  EXPECT_TRUE(ClosedByPeer(b, 10));
  const std::string answer = ReadAll(scrape);
  EXPECT_NE(answer.find("200 OK"), std::string::npos) << answer;
  EXPECT_NE(answer.find("queued 1"), std::string::npos) << answer;
  close(a);
  close(b);
}

TEST(MetricsEndpoint, BadRequestsGetClientErrors) {
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", [] { return std::string("x 1\n"); }, [] { return true; });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
  const int port = endpoint.value()->port();
  const std::string post = ReadAll(OpenConnection(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_EQ(post.rfind("HTTP/1.1 405", 0), 0u) << post;
  const std::string huge = ReadAll(OpenConnection(port, "GET /metrics HTTP/1.1\r\nX: " + std::string(9000, 'a')));
  EXPECT_EQ(huge.rfind("HTTP/1.1 431", 0), 0u) << huge.substr(0, 200);
  const std::string garbage = ReadAll(OpenConnection(port, "\x16\x03\x01 hello\r\n\r\n"));
  EXPECT_EQ(garbage.rfind("HTTP/1.1 400", 0), 0u) << garbage;
  const std::string head = ReadAll(OpenConnection(port, "HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"));
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  EXPECT_EQ(head.find("x 1"), std::string::npos) << "HEAD has no body";
}

TEST(MetricsEndpoint, ReadyzFollowsReadinessAndHealthzAnswers) {
  std::atomic<bool> ready{false};
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", [] { return std::string(); }, [&ready] { return ready.load(); });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
  const int port = endpoint.value()->port();
  EXPECT_EQ(tucker_seg::testing::HttpGet(port, "/healthz"), "ok\n");
  EXPECT_NE(ReadAll(OpenConnection(port, "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).rfind("HTTP/1.1 503", 0), std::string::npos);
  ready = true;
  EXPECT_EQ(tucker_seg::testing::HttpGet(port, "/readyz"), "ready\n");
  const std::string missing = ReadAll(OpenConnection(port, "GET /secrets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  EXPECT_EQ(missing.rfind("HTTP/1.1 404", 0), 0u) << missing;
}

TEST(MetricsEndpoint, ListensOnIpv6) {
  auto endpoint = MetricsEndpoint::Start("[::1]:0", [] { return std::string("v6 1\n"); }, [] { return true; });
  if (!endpoint.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << endpoint.status().message();
  const std::string response = ReadAll(OpenConnection(endpoint.value()->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true));
  EXPECT_EQ(response.rfind("HTTP/1.1 200", 0), 0u) << response;
  EXPECT_NE(response.find("v6 1"), std::string::npos);
}

TEST(MetricsEndpoint, BadListenAddressesAreRefused) {
  for (const char* bad : {"9180", "host:port", "127.0.0.1:70000"}) {
    EXPECT_EQ(MetricsEndpoint::Start(bad, [] { return std::string(); }, [] { return true; }).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace tucker_seg::server
