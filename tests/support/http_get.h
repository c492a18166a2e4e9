// Plain HTTP/1.1 over a loopback socket, for tests that read /metrics, Prometheus's or Orthanc's API.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>

namespace tucker_seg::testing {

// The response body of <method> http://127.0.0.1:<port><path> when the status is 200.
// `extra_headers`: whole header lines, each ending in \r\n (e.g. an Authorization header).
inline std::optional<std::string> HttpRequest(int port, const std::string& method, const std::string& path, const std::string& body = "",
                                              const std::string& content_type = "application/octet-stream",
                                              const std::string& extra_headers = "") {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return std::nullopt;
  const timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra_headers;
    if (method == "POST") request += "Content-Type: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    request += "\r\n" + body;
    size_t sent = 0;
    for (ssize_t n; sent < request.size() && (n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL)) > 0;)
      sent += static_cast<size_t>(n);
    if (sent == request.size()) {
      char buffer[4096];
      for (ssize_t n; (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) response.append(buffer, static_cast<size_t>(n));
    }
  }
  close(fd);
  const auto end_of_headers = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.1 200", 0) != 0 || end_of_headers == std::string::npos) return std::nullopt;
  std::string text = response.substr(end_of_headers + 4);
  if (response.substr(0, end_of_headers).find("Transfer-Encoding: chunked") != std::string::npos) {
    std::string plain;  // de-chunk
    for (size_t pos = 0;;) {
      const size_t eol = text.find("\r\n", pos);
      if (eol == std::string::npos) break;
      const size_t n = std::stoul(text.substr(pos, eol - pos), nullptr, 16);
      if (n == 0) break;
      plain += text.substr(eol + 2, n);
      pos = eol + 2 + n + 2;
    }
    text = plain;
  }
  return text;
}

inline std::optional<std::string> HttpGet(int port, const std::string& path) { return HttpRequest(port, "GET", path); }

// A TCP port on loopback that was free a moment ago (for programs that cannot bind port 0).
inline int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

}  // namespace tucker_seg::testing
