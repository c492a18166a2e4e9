// The gRPC port over TLS: a certificate made for the test with openssl, a client that trusts it
// segments; a plaintext client gets UNAVAILABLE; bad PEM files stop the server at start.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "client/segmentation_client.h"
#include "server/server.h"
#include "support/loopback_server.h"
#include "support/run_command.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

CtVolume SmallCt() {
  CtVolume ct;
  ct.geometry.size = {24, 24, 16};
  ct.geometry.spacing = {3, 3, 3};
  ct.voxels.assign(24 * 24 * 16, 40.0f);
  return ct;
}

TEST(Tls, ClientThatTrustsTheCertificateSegments) {
  const auto dir = tucker_seg::testing::TempDir("tls");
  const auto cert = (dir / "cert.pem").string(), key = (dir / "key.pem").string();
  const auto made = tucker_seg::testing::RunCommand("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                                                    "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " + key + " -out " + cert);
  ASSERT_EQ(made.exit_code, 0) << made.output;

  auto options = tucker_seg::testing::LoopbackServerOptions();
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  auto server = server::SegmentationServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status().message();
  ASSERT_TRUE(server.value()->WaitUntilCalibrated().ok());

  std::ifstream in(cert);
  std::stringstream pem;
  pem << in.rdbuf();
  client::ConnectionOptions secure;
  secure.target = "localhost:" + std::to_string(server.value()->port());
  secure.tls = true;
  secure.tls_root_certificates = pem.str();
  auto result = client::SegmentationClient::Connect(secure).value()->Segment(SmallCt(), {});
  ASSERT_TRUE(result.ok()) << result.status().message();
  EXPECT_EQ(result.value().labels.voxels.size(), 24u * 24 * 16);

  client::ConnectionOptions plain;
  plain.target = "127.0.0.1:" + std::to_string(server.value()->port());
  plain.max_attempts = 1;
  client::SegmentOptions quick;
  quick.timeout_seconds = 20;
  auto refused = client::SegmentationClient::Connect(plain).value()->Segment(SmallCt(), quick);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable) << refused.status().message();
}

TEST(Tls, UnreadableCertificateStopsTheServerAtStart) {
  auto options = tucker_seg::testing::LoopbackServerOptions();
  options.tls_cert_file = "/nonexistent/cert.pem";
  options.tls_key_file = "/nonexistent/key.pem";
  auto server = server::SegmentationServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(server.status().message().find("tls_cert '/nonexistent/cert.pem'"), std::string::npos) << server.status().message();
  options.tls_key_file.clear();
  EXPECT_EQ(server::SegmentationServer::Start(options).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tucker_seg
