// Work is sized and admitted from the header alone, and no stream holds the server's resources
// forever: a huge declared spacing is refused before anything is allocated, the memory budget
// answers RESOURCE_EXHAUSTED with a retry hint, an idle stream is cancelled and frees its slot,
// the autoscaling gauge counts admitted work only, and a client's request id cannot forge a
// log line.
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <sstream>
#include <thread>

#include "server/grpc_test_client.h"
#include "server/server.h"
#include "support/http_get.h"
#include "support/loopback_server.h"

namespace tucker_seg::server {
namespace {

using testing::Connect;
using testing::Segment;
using testing::SegmentCallOptions;

CtVolume SmallCt() {
  CtVolume ct;
  ct.geometry.size = {32, 32, 20};
  ct.geometry.spacing = {3, 3, 3};
  ct.voxels.assign(32 * 32 * 20, 40.0f);
  return ct;
}

// A gauge's value as /metrics shows it.
double Gauge(int metrics_port, const std::string& name) {
  const auto body = tucker_seg::testing::HttpGet(metrics_port, "/metrics");
  if (!body) return -1;
  std::smatch m;
  if (!std::regex_search(*body, m, std::regex("\n" + name + " ([-0-9.e+]+)"))) return -1;
  return std::stod(m[1]);
}

class Admission : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto options = testing::LoopbackServerOptions();
    options.stream_idle_timeout_seconds = 2;
    options.stream_idle_clock = &clock_;  // idle streams time out when the test advances it
    options.limits.max_streams = 2;
    auto s = SegmentationServer::Start(options);
    ASSERT_TRUE(s.ok()) << s.status().message();
    server_ = s.value().release();
    ASSERT_TRUE(server_->WaitUntilCalibrated().ok());
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static void ExpectServes() {
    auto stub = Connect(server_->port());
    const auto call = Segment(*stub, SmallCt());
    EXPECT_TRUE(call.status.ok()) << call.status.error_message();
  }
  static SegmentationServer* server_;
  static ManualClock clock_;
};
SegmentationServer* Admission::server_ = nullptr;
ManualClock Admission::clock_;

TEST_F(Admission, OneVoxelWithAHugeSpacingIsRefusedFromTheHeader) {
  auto stub = Connect(server_->port());
  CtVolume dot;
  dot.geometry.size = {1, 1, 1};
  dot.voxels = {0.0f};
  for (double spacing : {3000.0, 1e12, 1e300}) {
    dot.geometry.spacing = {spacing, spacing, spacing};
    const auto call = Segment(*stub, dot);
    EXPECT_EQ(call.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << spacing << ": " << call.status.error_message();
    EXPECT_NE(call.status.error_message().find("header.volume: size x spacing"), std::string::npos) << call.status.error_message();
    EXPECT_NE(call.status.error_message().find("max_grid_voxels"), std::string::npos) << call.status.error_message();
  }
  ExpectServes();
}

TEST_F(Admission, FullMemoryBudgetIsResourceExhaustedWithARetryHint) {
  MemoryBudget& budget = *server_->state().memory_budget;
  {
    // Someone else holds all but 1 MiB of the budget; SmallCt's request needs more than that.
    auto others = budget.Reserve(budget.total() - budget.reserved() - (1 << 20));
    ASSERT_TRUE(others.ok()) << others.status().message();
    auto stub = Connect(server_->port());
    grpc::ClientContext context;
    auto stream = stub->Segment(&context);
    ASSERT_TRUE(stream->Write(testing::HeaderRequest(SmallCt())));
    stream->WritesDone();
    tuckerseg::v1::SegmentResponse response;
    while (stream->Read(&response)) {
    }
    const auto status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
    EXPECT_NE(status.error_message().find("memory_budget"), std::string::npos) << status.error_message();
    const auto hint = context.GetServerTrailingMetadata().find("grpc-retry-pushback-ms");
    ASSERT_NE(hint, context.GetServerTrailingMetadata().end());
    EXPECT_GE(std::stoll(std::string(hint->second.data(), hint->second.size())), 1000);
  }
  EXPECT_EQ(budget.reserved(), 0);  // the refused request reserved nothing
  ExpectServes();                   // and the budget is free again
  EXPECT_EQ(budget.reserved(), 0);  // the served one gave its bytes back
}

TEST_F(Admission, RequestLargerThanTheWholeBudgetIsInvalid) {
  auto options = testing::LoopbackServerOptions();
  options.memory_budget_bytes = 1 << 20;
  auto small = SegmentationServer::Start(options);
  ASSERT_TRUE(small.ok()) << small.status().message();
  ASSERT_TRUE(small.value()->WaitUntilCalibrated().ok());
  auto stub = Connect(small.value()->port());
  const auto call = Segment(*stub, SmallCt());
  EXPECT_EQ(call.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << call.status.error_message();
  EXPECT_NE(call.status.error_message().find("whole memory_budget of 1 MiB"), std::string::npos) << call.status.error_message();
}

TEST_F(Admission, IdleStreamsAreCancelledAndFreeTheirSlots) {
  auto stub = Connect(server_->port());
  // Both slots taken: one stream sends nothing, the other only its header.
  grpc::ClientContext silent_context, header_context;
  auto silent = stub->Segment(&silent_context);
  auto header_only = stub->Segment(&header_context);
  ASSERT_TRUE(header_only->Write(testing::HeaderRequest(SmallCt())));
  tuckerseg::v1::SegmentResponse accepted;
  ASSERT_TRUE(header_only->Read(&accepted));
  EXPECT_EQ(accepted.progress().stage(), tuckerseg::v1::Progress::HEADER_ACCEPTED);
  const int metrics = server_->metrics_port();
  // Both handlers wait on their clients (the silent one's may start later than the call returns).
  ASSERT_TRUE(server_->watchdog().AwaitWaitingOnClients(2, absl::Seconds(30)));
  EXPECT_EQ(Gauge(metrics, "tuckerseg_open_streams"), 2);
  EXPECT_EQ(Gauge(metrics, "tuckerseg_in_flight_requests"), 1);  // only the admitted one counts
  // Past the 2 s idle timeout the watchdog cancels both; the client sees the streams end.
  clock_.Advance(std::chrono::milliseconds(2100));
  server_->watchdog().CancelIdleStreams();
  tuckerseg::v1::SegmentResponse response;
  while (header_only->Read(&response)) {
  }
  EXPECT_EQ(header_only->Finish().error_code(), grpc::StatusCode::CANCELLED);
  while (silent->Read(&response)) {
  }
  EXPECT_EQ(silent->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // Once their handlers have returned, both slots are free again.
  EXPECT_TRUE(server_->state().open_streams.AwaitOpen(0, absl::Seconds(30)));
  EXPECT_EQ(Gauge(metrics, "tuckerseg_in_flight_requests"), 0);
  EXPECT_EQ(Gauge(metrics, "tuckerseg_memory_reserved_bytes"), 0);
  ExpectServes();
}

TEST_F(Admission, RequestsWithADeadlineAreCountedWithinIt) {
  auto stub = Connect(server_->port());
  SegmentCallOptions o;
  o.edit_context = [](grpc::ClientContext* c) { c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120)); };
  const auto call = Segment(*stub, SmallCt(), o);
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();
  const auto body = tucker_seg::testing::HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_TRUE(body.has_value());
  std::smatch m;
  ASSERT_TRUE(std::regex_search(*body, m, std::regex("\ntuckerseg_budgeted_requests_total\\{[^}]*outcome=\"within\"[^}]*\\} ([0-9.e+]+)")))
      << *body;
  EXPECT_GE(std::stod(m[1]), 1);
}

TEST_F(Admission, RequestIdsCannotForgeLogLines) {
  ::testing::internal::CaptureStderr();
  auto stub = Connect(server_->port());
  SegmentCallOptions o;
  o.edit_header = [](tuckerseg::v1::SegmentHeader* h) {
    h->set_request_id("abc\nrequest id=forged status=OK" + std::string(200, 'x'));
    h->add_roi_subset("no\nsuch class");
  };
  const auto call = Segment(*stub, SmallCt(), o);
  EXPECT_EQ(call.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  SegmentCallOptions long_model;
  long_model.model = std::string(100000, 'm');
  const auto refused = Segment(*stub, SmallCt(), long_model);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(refused.status.error_message().size(), 300u);
  const std::string log = ::testing::internal::GetCapturedStderr();
  std::istringstream lines(log);
  int requests = 0;
  for (std::string line; std::getline(lines, line);) {
    EXPECT_TRUE(std::regex_search(line, std::regex("^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z "))) << line;
    EXPECT_EQ(line.find("request id=forged"), std::string::npos) << line;  // the newline became '_'
    EXPECT_LT(line.size(), 2100u);
    requests += line.find(" request id=") != std::string::npos;
  }
  EXPECT_EQ(requests, 2) << log;
}

// --max-connection-age: the server ends a connection past that age with GOAWAY (load
// rebalances over replicas, long-lived connections cannot pile up); the client reconnects.
TEST(ConnectionAge, ConnectionsPastTheirAgeAreClosedAndClientsReconnect) {
  auto options = testing::LoopbackServerOptions();
  options.max_connection_age_seconds = 1;
  auto s = SegmentationServer::Start(options);
  ASSERT_TRUE(s.ok()) << s.status().message();
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(s.value()->port()), grpc::InsecureChannelCredentials());
  auto stub = tuckerseg::v1::Segmentation::NewStub(channel);
  const auto list = [&stub] {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    tuckerseg::v1::ListModelsResponse response;
    return stub->ListModels(&context, tuckerseg::v1::ListModelsRequest(), &response);
  };
  ASSERT_TRUE(list().ok());
  ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  EXPECT_TRUE(channel->WaitForStateChange(GRPC_CHANNEL_READY, std::chrono::system_clock::now() + std::chrono::seconds(30)))
      << "the connection outlived --max-connection-age 1";
  EXPECT_TRUE(list().ok()) << "the client could not reconnect";
}

}  // namespace
}  // namespace tucker_seg::server
