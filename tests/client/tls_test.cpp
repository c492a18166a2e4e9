// The gRPC port over TLS: a certificate made for the test with openssl, a client that trusts it
// segments; a plaintext client gets UNAVAILABLE; bad PEM files stop the server at start. Mutual
// TLS (client certificates signed by a test CA) and bearer tokens: callers without them are
// refused, health stays open.
#include <gtest/gtest.h>

#include <filesystem>
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

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A CA, and a certificate it signed for `name` (a server's with its loopback SANs, or a client's).
struct TestPki {
  explicit TestPki(const std::filesystem::path& dir) : dir(dir) {
    Run("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=tucker-seg-test-ca -keyout " + Path("ca.key") + " -out " + Path("ca.pem"));
  }
  std::string Path(const std::string& name) const { return (dir / name).string(); }
  void Issue(const std::string& name, const std::string& extensions) {
    std::ofstream(Path(name + ".ext")) << extensions << "\n";
    Run("openssl req -newkey rsa:2048 -nodes -subj /CN=" + name + " -keyout " + Path(name + ".key") + " -out " + Path(name + ".csr"));
    Run("openssl x509 -req -in " + Path(name + ".csr") + " -CA " + Path("ca.pem") + " -CAkey " + Path("ca.key") +
        " -CAcreateserial -days 1 -extfile " + Path(name + ".ext") + " -out " + Path(name + ".pem"));
  }
  void Run(const std::string& command) {
    const auto made = tucker_seg::testing::RunCommand(command);
    ASSERT_EQ(made.exit_code, 0) << command << "\n" << made.output;
  }
  std::filesystem::path dir;
};

TEST(Tls, MutualTlsRefusesClientsWithoutACertificateFromTheCa) {
  TestPki pki(tucker_seg::testing::TempDir("mtls"));
  pki.Issue("server", "subjectAltName=DNS:localhost,IP:127.0.0.1");
  pki.Issue("client", "extendedKeyUsage=clientAuth");
  TestPki other(tucker_seg::testing::TempDir("mtls-other"));  // a CA the server does not trust
  other.Issue("client", "extendedKeyUsage=clientAuth");

  auto options = tucker_seg::testing::LoopbackServerOptions();
  options.tls_cert_file = pki.Path("server.pem");
  options.tls_key_file = pki.Path("server.key");
  options.tls_client_ca_file = pki.Path("ca.pem");
  auto server = server::SegmentationServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status().message();
  ASSERT_TRUE(server.value()->WaitUntilCalibrated().ok());

  const auto connect = [&](const std::string& cert, const std::string& key) {
    client::ConnectionOptions c;
    c.target = "localhost:" + std::to_string(server.value()->port());
    c.tls = true;
    c.tls_root_certificates = ReadText(pki.Path("ca.pem"));
    c.tls_certificate_chain = cert.empty() ? "" : ReadText(cert);
    c.tls_private_key = key.empty() ? "" : ReadText(key);
    c.max_attempts = 1;
    return client::SegmentationClient::Connect(c).value();
  };
  client::SegmentOptions quick;
  quick.timeout_seconds = 60;
  auto trusted = connect(pki.Path("client.pem"), pki.Path("client.key"))->Segment(SmallCt(), quick);
  ASSERT_TRUE(trusted.ok()) << trusted.status().message();
  EXPECT_EQ(trusted.value().labels.voxels.size(), 24u * 24 * 16);

  for (const auto& [cert, key] : {std::pair<std::string, std::string>{"", ""}, {other.Path("client.pem"), other.Path("client.key")}}) {
    auto refused = connect(cert, key)->Segment(SmallCt(), quick);
    ASSERT_FALSE(refused.ok()) << "client certificate '" << cert << "' was accepted";
    EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable) << refused.status().message();
  }
  options.tls_cert_file.clear();
  options.tls_key_file.clear();
  EXPECT_EQ(server::SegmentationServer::Start(options).status().code(), StatusCode::kInvalidArgument);  // mTLS without TLS
}

TEST(Tls, BearerTokensGuardEveryCallButHealth) {
  const auto dir = tucker_seg::testing::TempDir("tokens");
  const auto cert = (dir / "cert.pem").string(), key = (dir / "key.pem").string();
  const auto made = tucker_seg::testing::RunCommand("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                                                    "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " + key + " -out " + cert);
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const std::string token = "tucker-seg-test-token-0123456789";
  std::ofstream((dir / "tokens").string()) << "# one per line\n\nsomeone-elses-token-abcdefghij\n" << token << "\n";
  auto options = tucker_seg::testing::LoopbackServerOptions();
  options.auth_tokens_file = (dir / "tokens").string();
  // Tokens travel only over TLS: a plaintext port with tokens is refused at start.
  const auto plaintext = server::SegmentationServer::Start(options);
  EXPECT_EQ(plaintext.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(plaintext.status().message().find("auth_tokens needs tls_cert"), std::string::npos) << plaintext.status().message();
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  auto server = server::SegmentationServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status().message();
  ASSERT_TRUE(server.value()->WaitUntilCalibrated().ok());

  std::ifstream in(cert);
  std::stringstream pem;
  pem << in.rdbuf();
  const auto connect = [&](const std::string& bearer) {
    client::ConnectionOptions c;
    c.target = "localhost:" + std::to_string(server.value()->port());
    c.tls = true;
    c.tls_root_certificates = pem.str();
    c.bearer_token = bearer;
    c.max_attempts = 1;
    return client::SegmentationClient::Connect(c).value();
  };
  for (const std::string& wrong : {std::string(), std::string("tucker-seg-test-token-012345678X")}) {
    auto client = connect(wrong);
    auto refused = client->Segment(SmallCt(), {});
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), StatusCode::kUnauthenticated) << refused.status().message();
    EXPECT_NE(refused.status().message().find("authorization"), std::string::npos) << refused.status().message();
    EXPECT_EQ(client->ListModels().status().code(), StatusCode::kUnauthenticated);
    EXPECT_EQ(client->DescribeModel("tucker-abdomen-3mm").status().code(), StatusCode::kUnauthenticated);
    auto health = client->WaitUntilServing("", 30);  // probes carry no token
    ASSERT_TRUE(health.ok()) << health.status().message();
    EXPECT_TRUE(health.value());
  }
  auto allowed = connect(token);
  auto result = allowed->Segment(SmallCt(), {});
  ASSERT_TRUE(result.ok()) << result.status().message();
  EXPECT_TRUE(allowed->ListModels().ok());

  std::ofstream((dir / "short").string()) << "short\n";
  options.auth_tokens_file = (dir / "short").string();
  const auto weak = server::SegmentationServer::Start(options);
  EXPECT_EQ(weak.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(weak.status().message().find("shorter than 16"), std::string::npos) << weak.status().message();
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
