// A real Prometheus (Debian's `prometheus`) scrapes the server's /metrics; the test reads the
// request count and voxel throughput it generated back through Prometheus's HTTP API.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "server/grpc_test_client.h"
#include "server/server.h"
#include "support/http_get.h"
#include "support/loopback_server.h"
#include "support/subprocess.h"
#include "test_paths.h"

namespace tucker_seg::server {
namespace {

constexpr char kPrometheus[] = "/usr/bin/prometheus";

// The value of an instant query's single sample, when Prometheus has one.
std::optional<double> QueryValue(int port, const std::string& promql) {
  std::string encoded;
  for (unsigned char c : promql) {
    if (std::isalnum(c) || c == '_' || c == '.' || c == '-') encoded += static_cast<char>(c);
    else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      encoded += hex;
    }
  }
  const auto body = tucker_seg::testing::HttpGet(port, "/api/v1/query?query=" + encoded);
  if (!body) return std::nullopt;
  const auto j = nlohmann::json::parse(*body, nullptr, false);
  if (j.is_discarded() || j.value("status", "") != "success" || j["data"]["result"].empty()) return std::nullopt;
  return std::stod(j["data"]["result"][0]["value"][1].get<std::string>());
}

TEST(Prometheus, ScrapesRequestCountAndVoxelThroughput) {
  ASSERT_TRUE(std::filesystem::exists(kPrometheus)) << "install Debian's prometheus (scripts/install-deps.sh)";
  auto server = SegmentationServer::Start(tucker_seg::testing::LoopbackServerOptions());
  ASSERT_TRUE(server.ok()) << server.status().message();
  ASSERT_TRUE(server.value()->WaitUntilCalibrated().ok());

  // Two requests of a known size.
  CtVolume ct;
  ct.geometry.size = {30, 28, 20};
  ct.geometry.spacing = {3, 3, 3};
  ct.voxels.assign(30 * 28 * 20, 40.0f);
  auto stub = tucker_seg::testing::Connect(server.value()->port());
  tucker_seg::testing::SegmentCallOptions o;
  o.variant = "original";
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(tucker_seg::testing::Segment(*stub, ct, o).status.ok());

  // The server's own endpoint first (plain HTTP, what Prometheus will read).
  const auto direct = tucker_seg::testing::HttpGet(server.value()->metrics_port(), "/metrics");
  ASSERT_TRUE(direct.has_value());
  EXPECT_NE(direct->find("tuckerseg_requests_total{"), std::string::npos);

  const auto dir = tucker_seg::testing::TempDir("prometheus");
  const int prometheus_port = tucker_seg::testing::FreeLoopbackPort();
  std::ofstream(dir / "prometheus.yml") << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                                        << "scrape_configs:\n  - job_name: tucker-seg\n    static_configs:\n"
                                        << "      - targets: ['127.0.0.1:" << server.value()->metrics_port() << "']\n";
  tucker_seg::testing::Subprocess prometheus(
      {kPrometheus, "--config.file=" + (dir / "prometheus.yml").string(), "--storage.tsdb.path=" + (dir / "data").string(),
       "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port)},
      (dir / "prometheus.log").string());
  ASSERT_TRUE(prometheus.started());

  // Wait (bounded) until Prometheus has scraped the counters, then compare them.
  const std::string requests = "sum(tuckerseg_requests_total{job=\"tucker-seg\",status=\"OK\",variant=\"original\"})";
  const std::string voxels = "sum(tuckerseg_voxels_processed_total{job=\"tucker-seg\"})";
  std::optional<double> request_count, voxel_count;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < give_up && prometheus.running()) {
    request_count = QueryValue(prometheus_port, requests);
    voxel_count = QueryValue(prometheus_port, voxels);
    if (request_count && voxel_count) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // poll interval, not synchronisation
  }
  ASSERT_TRUE(request_count.has_value()) << "Prometheus never reported " << requests << "; see " << (dir / "prometheus.log");
  EXPECT_EQ(*request_count, 2);
  ASSERT_TRUE(voxel_count.has_value());
  EXPECT_EQ(*voxel_count, 2 * 30 * 28 * 20);
  // The scrape target is healthy as Prometheus sees it.
  EXPECT_EQ(QueryValue(prometheus_port, "up{job=\"tucker-seg\"}").value_or(0), 1);
  // Build and process facts, as Prometheus read them.
  EXPECT_EQ(QueryValue(prometheus_port, "tuckerseg_build_info{job=\"tucker-seg\",version=\"" TUCKER_SEG_VERSION "\"}").value_or(0), 1);
  EXPECT_GT(QueryValue(prometheus_port, "process_resident_memory_bytes{job=\"tucker-seg\"}").value_or(0), 10e6);  // LibTorch alone is more
  EXPECT_GT(QueryValue(prometheus_port, "process_cpu_seconds_total{job=\"tucker-seg\"}").value_or(0), 0);
}

}  // namespace
}  // namespace tucker_seg::server
