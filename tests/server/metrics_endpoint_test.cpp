// The HTTP endpoint beside gRPC: a client that trickles a request does not block other scrapes,
// /readyz follows readiness, /healthz answers, IPv6 listens, unknown paths are 404.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "server/metrics_endpoint.h"
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

TEST(MetricsEndpoint, TricklingClientsDoNotBlockScrapes) {
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", [] { return std::string("tuckerseg_up 1\n"); }, [] { return true; });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
  const int port = endpoint.value()->port();
  // Four connections that began a request and stalled (the old endpoint served one at a time).
  std::vector<int> stalled;
  for (int i = 0; i < 4; ++i) stalled.push_back(OpenConnection(port, "GET /metr"));
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
