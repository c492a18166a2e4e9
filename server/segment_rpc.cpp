// Segment on the stream: header -> Admit -> voxels -> Run -> result header -> label chunks.
// Only stream I/O and status conversion here; what the request means is the serving core's
// (server/serving/segmentation_core.h).
#include <algorithm>
#include <chrono>

#include "server/grpc_status.h"
#include "server/segmentation_service.h"
#include "server/serving/segmentation_core.h"
#include "wire/volume_wire.h"

namespace tucker_seg::server {
namespace {

using Clock = std::chrono::steady_clock;
using Stream = grpc::ServerReaderWriter<tuckerseg::v1::SegmentResponse, tuckerseg::v1::SegmentRequest>;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Holds one of the server's stream slots for the lifetime of a Segment call.
class StreamSlot {
 public:
  StreamSlot(StreamCounter& open, int limit) : open_(open), acquired_(open.Enter(limit)) {}
  ~StreamSlot() { open_.Leave(); }
  bool acquired() const { return acquired_; }

 private:
  StreamCounter& open_;
  const bool acquired_;
};

// Why work for this call should stop: the client is gone or its deadline has passed.
Status CallStillWanted(grpc::ServerContext* context) {
  if (std::chrono::system_clock::now() >= context->deadline()) return DeadlineExceeded("the request's deadline passed");
  if (context->IsCancelled()) return Cancelled("the client cancelled the request");
  return Status::Ok();
}

// What one Progress message says besides its stage.
struct ProgressFacts {
  std::string variant;
  double estimated_wait_seconds = 0;
  int queue_position = 0;
  int64_t tiles_done = 0, tiles_total = 0;
};

void WriteProgress(Stream* stream, tuckerseg::v1::Progress::Stage stage, const ProgressFacts& facts = {}) {
  tuckerseg::v1::SegmentResponse r;
  auto* p = r.mutable_progress();
  p->set_stage(stage);
  p->set_variant(facts.variant);
  p->set_estimated_wait_seconds(facts.estimated_wait_seconds);
  p->set_queue_position(facts.queue_position);
  p->set_tiles_done(facts.tiles_done);
  p->set_tiles_total(facts.tiles_total);
  stream->Write(r);
}

// The serving core's progress reports as Progress messages on the stream.
class StreamProgress final : public ProgressSink {
 public:
  StreamProgress(grpc::ServerContext* context, Stream* stream) : context_(context), stream_(stream) {}
  Status StillWanted() override { return CallStillWanted(context_); }
  void Queued(const std::string& variant, double estimated_wait_seconds, int queue_position) override {
    WriteProgress(stream_, tuckerseg::v1::Progress::QUEUED, {variant, estimated_wait_seconds, queue_position});
  }
  void Running(const std::string& variant, int64_t tiles_done, int64_t tiles_total) override {
    WriteProgress(stream_, tuckerseg::v1::Progress::RUNNING, {variant, 0, 0, tiles_done, tiles_total});
  }

 private:
  grpc::ServerContext* context_;
  Stream* stream_;
};

// Why a read or write on the stream failed: the idle timeout, the client, or its deadline.
Status StreamFailure(grpc::ServerContext* context, const StreamWatchdog::Watch& watch, const StreamWatchdog& dog) {
  if (watch.timed_out()) {
    return Cancelled("stream_idle_timeout: the client moved no bytes for " + std::to_string(static_cast<int>(dog.idle_timeout_seconds())) + " s");
  }
  return CallStillWanted(context);
}

Status ReceiveHeader(grpc::ServerContext* context, Stream* stream, const StreamWatchdog& dog, StreamWatchdog::Watch& watch,
                     tuckerseg::v1::SegmentHeader* header) {
  tuckerseg::v1::SegmentRequest first;
  if (!stream->Read(&first)) {
    TS_RETURN_IF_ERROR(StreamFailure(context, watch, dog));
    return InvalidArgument("header: the stream ended before the header");
  }
  if (!first.has_header()) return InvalidArgument("header: the first message must be a header, not voxels");
  *header = std::move(*first.mutable_header());
  return Status::Ok();
}

RequestSpec SpecOf(tuckerseg::v1::SegmentHeader& header, const grpc::ServerContext& context) {
  RequestSpec spec;
  spec.request_id = header.request_id();
  spec.model = header.model();
  spec.variant = header.variant();
  spec.min_quality = header.min_quality();
  spec.roi_subset.assign(header.roi_subset().begin(), header.roi_subset().end());
  spec.step = header.step();
  spec.volume = std::move(*header.mutable_volume());
  if (context.deadline() != std::chrono::system_clock::time_point::max()) spec.deadline = context.deadline();
  return spec;
}

// Decodes the voxel chunks as they arrive (CtAssembler: no raw copy beside the floats).
Result<CtVolume> ReceiveCt(grpc::ServerContext* context, Stream* stream, const StreamWatchdog& dog, StreamWatchdog::Watch& watch,
                           const wire::VolumeHeader& volume) {
  wire::CtAssembler assembler(volume);
  tuckerseg::v1::SegmentRequest message;
  watch.WaitingOnClient();
  while (stream->Read(&message)) {
    watch.WaitingOnClient();  // restarts the idle clock: bytes arrived
    if (!message.has_voxels() || message.has_header()) return InvalidArgument("voxels: a second header arrived after the first");
    TS_RETURN_IF_ERROR(assembler.Append(message.voxels()));
  }
  watch.Working();
  if (assembler.received_bytes() < volume.bytes) TS_RETURN_IF_ERROR(StreamFailure(context, watch, dog));
  return assembler.Finish();
}

Status SendResult(Stream* stream, StreamWatchdog::Watch& watch, const tuckerseg::v1::ResultHeader& header, const LabelMap& labels,
                  int64_t chunk_bytes) {
  watch.WaitingOnClient();  // a client that stops reading stalls the writes below
  tuckerseg::v1::SegmentResponse r;
  *r.mutable_header() = header;
  if (!stream->Write(r)) return Cancelled("the client went away before the result");
  const auto* data = reinterpret_cast<const char*>(labels.voxels.data());
  const auto total = static_cast<int64_t>(labels.voxels.size());
  for (int64_t offset = 0; offset < total; offset += chunk_bytes) {
    tuckerseg::v1::SegmentResponse chunk;
    chunk.set_labels(data + offset, static_cast<size_t>(std::min(chunk_bytes, total - offset)));
    if (!stream->Write(chunk)) return Cancelled("the client went away while labels were sent");
    watch.WaitingOnClient();
  }
  return Status::Ok();
}

tuckerseg::v1::ResultHeader MakeResultHeader(const RequestRecord& record, const SegmentOutcome& outcome, double receive_seconds,
                                             double total_seconds) {
  const Prediction& p = outcome.prediction;
  tuckerseg::v1::ResultHeader result;
  result.set_request_id(record.id);
  result.set_model(record.model);
  result.set_variant(record.variant);
  result.set_selection_reason(record.reason);
  result.set_selection_detail(outcome.detail);
  result.set_device(record.device);
  result.set_variant_quality(outcome.quality.value_or(0));
  result.set_variant_quality_known(outcome.quality.has_value());
  result.set_step(outcome.step);
  result.set_model_version(outcome.model_version);
  AddLabels(p.label_table, result.mutable_labels());
  auto* t = result.mutable_timings();
  t->set_receive_seconds(receive_seconds);
  t->set_queue_wait_seconds(record.queue_wait_seconds);
  t->set_preprocess_seconds(p.timings.preprocess_seconds);
  t->set_network_seconds(p.timings.network_seconds);
  t->set_aggregation_seconds(p.timings.aggregation_seconds);
  t->set_export_seconds(p.timings.export_seconds);
  t->set_total_seconds(total_seconds);
  t->set_tiles(p.tiles);
  wire::ToWire(p.labels.geometry, tuckerseg::v1::VOXEL_TYPE_UINT8, result.mutable_volume());
  result.set_label_bytes(static_cast<int64_t>(p.labels.voxels.size()));
  return result;
}

// One Segment call from its first message to its last label chunk.
Status ServeSegment(ServiceState& state, grpc::ServerContext* context, Stream* stream, const StreamWatchdog& dog,
                    StreamWatchdog::Watch& watch, RequestRecord* record) {
  const auto start = Clock::now();
  tuckerseg::v1::SegmentHeader header;
  TS_RETURN_IF_ERROR(ReceiveHeader(context, stream, dog, watch, &header));
  watch.Working();
  TS_ASSIGN_OR_RETURN(Admission admission, Admit(state, SpecOf(header, *context), record));
  WriteProgress(stream, tuckerseg::v1::Progress::HEADER_ACCEPTED);
  TS_ASSIGN_OR_RETURN(CtVolume ct, ReceiveCt(context, stream, dog, watch, admission.volume()));
  const double receive_seconds = Since(start);
  StreamProgress progress(context, stream);
  TS_ASSIGN_OR_RETURN(const SegmentOutcome outcome, Run(state, admission, std::move(ct), progress, record));
  const auto result = MakeResultHeader(*record, outcome, receive_seconds, Since(start));
  return SendResult(stream, watch, result, outcome.prediction.labels, state.limits.chunk_bytes);
}

}  // namespace

grpc::Status SegmentationService::Segment(grpc::ServerContext* context, Stream* stream) {
  const auto start = Clock::now();
  StreamSlot slot(state_.open_streams, state_.limits.max_streams);
  const GaugeHold open(state_.metrics->open_streams());
  const auto watch = watchdog_.Register(context);
  RequestRecord record;
  Status status;
  if (!slot.acquired()) {
    status = ResourceExhausted("max_streams: " + std::to_string(state_.limits.max_streams) + " Segment streams are open already; retry later");
  } else if (!state_.ready.load()) {
    status = Unavailable("the server is not serving (calibrating its variants, or shutting down); retry when health is SERVING");
  } else {
    status = ServeSegment(state_, context, stream, watchdog_, *watch, &record);
  }
  if (status.code() == StatusCode::kResourceExhausted) {
    context->AddTrailingMetadata("grpc-retry-pushback-ms", std::to_string(PushbackMilliseconds(state_)));
  }
  // A failed call has no ResultHeader to carry its id: the trailers do, once the header was read,
  // so that a caller can quote the id the server's log line has.
  if (!status.ok() && !record.id.empty()) context->AddTrailingMetadata("tuckerseg-request-id", record.id);
  FinishRequest(state_, record, status, Since(start));
  return ToGrpc(status);
}

}  // namespace tucker_seg::server
