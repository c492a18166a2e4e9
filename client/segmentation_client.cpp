#include "client/segmentation_client.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "tuckerseg/v1/segmentation.grpc.pb.h"
#include "wire/volume_wire.h"

namespace tucker_seg::client {
namespace {

Status FromGrpc(const grpc::Status& s, const std::string& target) {
  if (s.ok()) return Status::Ok();
  std::string message = s.error_message();
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) message = "server " + target + " is unavailable: " + message;
  return Status(static_cast<StatusCode>(s.error_code()), message);
}

void SetDeadline(grpc::ClientContext* context, double seconds) {
  if (seconds > 0) {
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6)));
  }
}

}  // namespace

struct SegmentationClient::Impl {
  ConnectionOptions options;
  std::unique_ptr<tuckerseg::v1::Segmentation::Stub> stub;
  std::unique_ptr<grpc::health::v1::Health::Stub> health;
};

SegmentationClient::SegmentationClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SegmentationClient::~SegmentationClient() = default;

Result<std::unique_ptr<SegmentationClient>> SegmentationClient::Connect(const ConnectionOptions& options) {
  if (options.target.empty()) return InvalidArgument("server: the target (host:port) is empty");
  if (options.max_attempts < 1 || options.max_attempts > 20) return InvalidArgument("max_attempts must be 1..20");
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_root_certificates;
    ssl.pem_cert_chain = options.tls_certificate_chain;
    ssl.pem_private_key = options.tls_private_key;
    credentials = grpc::SslCredentials(ssl);
  } else if (!options.tls_certificate_chain.empty()) {
    return InvalidArgument("tls_cert: a client certificate needs TLS (--tls or --tls-ca)");
  }
  if (options.tls_certificate_chain.empty() != options.tls_private_key.empty()) {
    return InvalidArgument("tls_cert and tls_key must be given together");
  }
  if (options.bearer_token.find_first_of("\r\n") != std::string::npos) return InvalidArgument("token: must be one line");
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  if (!options.load_balancing.empty()) args.SetLoadBalancingPolicyName(options.load_balancing);
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  auto channel = grpc::CreateCustomChannel(options.target, credentials, args);
  impl->stub = tuckerseg::v1::Segmentation::NewStub(channel);
  impl->health = grpc::health::v1::Health::NewStub(channel);
  return std::unique_ptr<SegmentationClient>(new SegmentationClient(std::move(impl)));
}

Result<SegmentResult> SegmentationClient::Segment(const CtVolume& ct, const SegmentOptions& options) const {
  if (ct.voxels.size() != static_cast<size_t>(ct.geometry.NumVoxels())) return InvalidArgument("ct: voxel count does not match its size");
  if (options.chunk_bytes < 1024 || options.chunk_bytes > (8 << 20)) return InvalidArgument("chunk_bytes must be 1 KiB..8 MiB");
  const std::string voxels = wire::EncodeCt(ct, options.voxel_type);
  double backoff = impl_->options.initial_backoff_seconds;
  for (int attempt = 1;; ++attempt) {
    int64_t pushback_ms = -1;
    auto result = SegmentOnce(ct, voxels, options, &pushback_ms);
    if (result.ok()) {
      result.value().attempts = attempt;
      return result;
    }
    const StatusCode code = result.status().code();
    const bool busy = code == StatusCode::kResourceExhausted && pushback_ms >= 0;
    if ((code != StatusCode::kUnavailable && !busy) || attempt >= impl_->options.max_attempts) return result.status();
    // Before the retry: the server's own hint when it is busy, otherwise exponential backoff.
    std::this_thread::sleep_for(busy ? std::chrono::duration<double>(std::min<int64_t>(pushback_ms, 60000) / 1000.0)
                                     : std::chrono::duration<double>(backoff));
    if (!busy) backoff *= 2;
  }
}

void SegmentationClient::Prepare(grpc::ClientContext* context, double timeout_seconds) const {
  SetDeadline(context, timeout_seconds);
  if (!impl_->options.bearer_token.empty()) context->AddMetadata("authorization", "Bearer " + impl_->options.bearer_token);
}

Result<SegmentResult> SegmentationClient::SegmentOnce(const CtVolume& ct, const std::string& voxels, const SegmentOptions& o,
                                                      int64_t* pushback_ms) const {
  grpc::ClientContext context;
  Prepare(&context, o.timeout_seconds);
  auto stream = impl_->stub->Segment(&context);
  SegmentProgress progress;
  progress.bytes_to_send = static_cast<int64_t>(voxels.size());
  const auto report = [&](SegmentProgress::Stage stage) {
    progress.stage = stage;
    if (o.on_progress) o.on_progress(progress);
  };

  tuckerseg::v1::SegmentRequest request;
  auto* header = request.mutable_header();
  header->set_request_id(o.request_id);
  header->set_model(o.model);
  header->set_variant(o.variant);
  header->set_min_quality(o.min_quality);
  for (const auto& name : o.roi_subset) header->add_roi_subset(name);
  header->set_step(o.step);
  wire::ToWire(ct.geometry, o.voxel_type, header->mutable_volume());
  bool open = stream->Write(request);
  report(SegmentProgress::Stage::kSending);
  for (size_t offset = 0; open && offset < voxels.size(); offset += static_cast<size_t>(o.chunk_bytes)) {
    tuckerseg::v1::SegmentRequest chunk;
    chunk.set_voxels(voxels.data() + offset, std::min(voxels.size() - offset, static_cast<size_t>(o.chunk_bytes)));
    open = stream->Write(chunk);
    progress.bytes_sent += static_cast<int64_t>(chunk.voxels().size());
    report(SegmentProgress::Stage::kSending);
  }
  stream->WritesDone();

  SegmentResult result;
  std::string labels;
  bool have_header = false;
  tuckerseg::v1::SegmentResponse response;
  while (stream->Read(&response)) {
    if (response.has_progress()) {
      const auto& p = response.progress();
      progress.variant = p.variant();
      progress.queue_position = p.queue_position();
      progress.estimated_wait_seconds = p.estimated_wait_seconds();
      progress.tiles_done = p.tiles_done();
      progress.tiles_total = p.tiles_total();
      switch (response.progress().stage()) {
        case tuckerseg::v1::Progress::HEADER_ACCEPTED: report(SegmentProgress::Stage::kHeaderAccepted); break;
        case tuckerseg::v1::Progress::QUEUED: report(SegmentProgress::Stage::kQueued); break;
        case tuckerseg::v1::Progress::RUNNING: report(SegmentProgress::Stage::kRunning); break;
        default: break;
      }
    } else if (response.has_header()) {
      const auto& h = response.header();
      // The server must answer on the input's grid; anything else is refused, not resized.
      if (h.label_bytes() != ct.geometry.NumVoxels()) {
        context.TryCancel();
        stream->Finish();
        return DataLoss("server answered " + std::to_string(h.label_bytes()) + " label bytes for " +
                        std::to_string(ct.geometry.NumVoxels()) + " voxels");
      }
      have_header = true;
      labels.reserve(static_cast<size_t>(h.label_bytes()));
      result.model = h.model();
      result.variant = h.variant();
      result.selection_reason = h.selection_reason();
      result.selection_detail = h.selection_detail();
      result.device = h.device();
      if (h.variant_quality_known()) result.variant_quality = h.variant_quality();
      result.step = h.step();
      result.request_id = h.request_id();
      result.timings = h.timings();
      for (const auto& l : h.labels()) result.label_table.emplace_back(l.id(), l.name());
      progress.variant = h.variant();
      progress.bytes_to_receive = h.label_bytes();
      report(SegmentProgress::Stage::kReceiving);
    } else if (response.has_labels()) {
      if (!have_header || labels.size() + response.labels().size() > static_cast<size_t>(progress.bytes_to_receive)) {
        context.TryCancel();
        stream->Finish();
        return DataLoss("server sent more label bytes than its header announced");
      }
      labels += response.labels();
      progress.bytes_received = static_cast<int64_t>(labels.size());
      report(SegmentProgress::Stage::kReceiving);
    }
  }
  const grpc::Status finished = stream->Finish();
  const auto& trailers = context.GetServerTrailingMetadata();
  if (const auto hint = trailers.find("grpc-retry-pushback-ms"); hint != trailers.end()) {
    const std::string text(hint->second.data(), std::min<size_t>(hint->second.size(), 12));
    char* end = nullptr;
    const long long ms = std::strtoll(text.c_str(), &end, 10);
    if (end != text.c_str() && ms >= 0) *pushback_ms = ms;
  }
  if (!finished.ok()) {
    Status failed = FromGrpc(finished, impl_->options.target);
    if (const auto id = trailers.find("tuckerseg-request-id"); id != trailers.end()) {  // the server's log line has it
      failed = Status(failed.code(), failed.message() + " (request id " + std::string(id->second.data(), std::min<size_t>(id->second.size(), 64)) + ")");
    }
    return failed;
  }
  if (!have_header || static_cast<int64_t>(labels.size()) != ct.geometry.NumVoxels()) {
    return DataLoss("server ended the stream after " + std::to_string(labels.size()) + " of " +
                    std::to_string(ct.geometry.NumVoxels()) + " label bytes");
  }
  result.labels.geometry = ct.geometry;
  result.labels.voxels.assign(labels.begin(), labels.end());
  report(SegmentProgress::Stage::kDone);
  return result;
}

Result<tuckerseg::v1::ListModelsResponse> SegmentationClient::ListModels(double timeout_seconds) const {
  grpc::ClientContext context;
  Prepare(&context, timeout_seconds);
  tuckerseg::v1::ListModelsResponse response;
  TS_RETURN_IF_ERROR(FromGrpc(impl_->stub->ListModels(&context, {}, &response), impl_->options.target));
  return response;
}

Result<tuckerseg::v1::DescribeModelResponse> SegmentationClient::DescribeModel(const std::string& model, double timeout_seconds) const {
  grpc::ClientContext context;
  Prepare(&context, timeout_seconds);
  tuckerseg::v1::DescribeModelRequest request;
  request.set_model(model);
  tuckerseg::v1::DescribeModelResponse response;
  TS_RETURN_IF_ERROR(FromGrpc(impl_->stub->DescribeModel(&context, request, &response), impl_->options.target));
  return response;
}

Result<bool> SegmentationClient::WaitUntilServing(const std::string& service, double wait_seconds) const {
  grpc::ClientContext context;
  Prepare(&context, std::max(wait_seconds, 0.001));
  context.set_wait_for_ready(true);  // a server that is still starting is waited for, not failed
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  auto stream = impl_->health->Watch(&context, request);
  grpc::health::v1::HealthCheckResponse update;
  while (stream->Read(&update)) {
    if (update.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      context.TryCancel();
      stream->Finish();
      return true;
    }
  }
  const grpc::Status s = stream->Finish();
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) return false;
  return FromGrpc(s, impl_->options.target);
}

}  // namespace tucker_seg::client
