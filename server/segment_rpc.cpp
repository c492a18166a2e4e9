// Segment: header -> validate (before any allocation) -> voxels -> select a variant -> queue ->
// predict on a worker -> result header -> label chunks. One log line per request, no patient data.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <set>

#include "absl/synchronization/mutex.h"
#include "model_store/format/composite.h"
#include "model_store/inference/predictor.h"
#include "server/grpc_status.h"
#include "server/log.h"
#include "server/segmentation_service.h"
#include "wire/volume_wire.h"

namespace tucker_seg::server {
namespace {

using Clock = std::chrono::steady_clock;
using Stream = grpc::ServerReaderWriter<tuckerseg::v1::SegmentResponse, tuckerseg::v1::SegmentRequest>;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// What the log line and the metrics report about one request.
struct RequestRecord {
  std::string id;
  std::string model = "-";
  std::string variant = "-";
  std::string reason = "-";
  std::string device = "none";  // where the work ran; "none" when refused before placement
  int64_t voxels = 0;
  int64_t tiles = 0;
  double queue_wait_seconds = 0;
};

// Holds one of the server's stream slots for the lifetime of a Segment call.
class StreamSlot {
 public:
  StreamSlot(std::atomic<int>& open, int limit) : open_(open), acquired_(open.fetch_add(1) < limit) {}
  ~StreamSlot() { open_.fetch_sub(1); }
  bool acquired() const { return acquired_; }

 private:
  std::atomic<int>& open_;
  const bool acquired_;
};

// Names and ids from the client reach log lines and messages: printable, bounded.
bool IsIdCharacter(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' || c == '-'; }

constexpr size_t kMaxNameLength = 128;
bool IsPlainName(const std::string& text) {  // model and variant names; composite parts add '/'
  return text.size() <= kMaxNameLength && std::all_of(text.begin(), text.end(), [](char c) { return IsIdCharacter(c) || c == '/'; });
}

// A client's request id as the log shows it: at most 64 characters, anything but letters,
// digits and ._:- replaced by '_' (a newline cannot forge a log line).
std::string SanitisedRequestId(const std::string& id) {
  std::string out = id.substr(0, 64);
  for (char& c : out)
    if (!IsIdCharacter(c)) c = '_';
  return out;
}

std::string NewRequestId() {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t prefix = std::random_device{}();
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%08llx-%llu", static_cast<unsigned long long>(prefix & 0xffffffffu),
                static_cast<unsigned long long>(++counter));
  return buffer;
}

// Why work for this call should stop: the client is gone or its deadline has passed.
Status CallStillWanted(grpc::ServerContext* context) {
  if (std::chrono::system_clock::now() >= context->deadline()) return DeadlineExceeded("the request's deadline passed");
  if (context->IsCancelled()) return Cancelled("the client cancelled the request");
  return Status::Ok();
}

// The worker's side of one request; the handler thread waits on it.
struct Job {
  absl::Mutex mutex;
  absl::CondVar changed;
  bool started ABSL_GUARDED_BY(mutex) = false;
  bool done ABSL_GUARDED_BY(mutex) = false;
  std::optional<Result<Prediction>> result ABSL_GUARDED_BY(mutex);
  double queue_wait_seconds ABSL_GUARDED_BY(mutex) = 0;
  double run_seconds ABSL_GUARDED_BY(mutex) = 0;
  int64_t tiles_done ABSL_GUARDED_BY(mutex) = 0;
  int64_t tiles_total ABSL_GUARDED_BY(mutex) = 0;
};

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

// Runs on a worker; stops early when the call is no longer wanted.
// What --roi-subset asks of one model: its outputs to look for, and the variant for the coarse pass.
struct RoiRequest {
  std::vector<int64_t> outputs;
  const VariantEntry* coarse = nullptr;
};

Result<Prediction> RunPrediction(const VariantEntry& variant, const CtVolume& ct, double step, grpc::ServerContext* context,
                                 Job* job, const std::optional<RoiRequest>& roi) {
  TS_RETURN_IF_ERROR(CallStillWanted(context));
  PredictionOptions options;
  std::optional<UNetPatchNetwork> coarse;
  if (roi) {
    coarse.emplace(*roi->coarse->network);
    options.roi = RoiOptions{&*coarse, roi->outputs};
  }
  options.window.step = step;
  options.window.should_continue = [context] { return CallStillWanted(context); };
  options.window.on_tiles = [job](int64_t done, int64_t total) {
    absl::MutexLock lock(&job->mutex);
    job->tiles_done = done;
    job->tiles_total = total;
    job->changed.SignalAll();
  };
  UNetPatchNetwork net(*variant.network);
  return Predict(variant.info, net, ct, options);
}

// Queues the prediction on the device's workers, reports QUEUED (position, estimated wait) and
// RUNNING (tiles done of total, each time the worker finishes some) to the client, and waits for
// the worker.
Result<std::shared_ptr<Job>> RunOnWorker(ServiceState& state, ServedDevice& device, grpc::ServerContext* context, Stream* stream,
                                         const VariantEntry& variant, CtVolume ct, const Selection& selection, double wait,
                                         std::optional<RoiRequest> roi) {
  auto job = std::make_shared<Job>();
  const auto enqueued = Clock::now();
  auto work = [job, enqueued, context, &variant, ct = std::move(ct), step = state.window_step, roi = std::move(roi)]() {
    {
      absl::MutexLock lock(&job->mutex);
      job->started = true;
      job->queue_wait_seconds = Since(enqueued);
      job->changed.SignalAll();
    }
    const auto run_start = Clock::now();
    Result<Prediction> result = RunPrediction(variant, ct, step, context, job.get(), roi);
    absl::MutexLock lock(&job->mutex);
    job->run_seconds = Since(run_start);
    job->result = std::move(result);
    job->done = true;
    job->changed.SignalAll();
  };
  TS_ASSIGN_OR_RETURN(const Scheduler::Ticket ticket, device.scheduler->Submit(std::move(work), selection.run_seconds));
  const int queued = device.scheduler->queued();
  state.metrics->SetQueueDepth(device.profile.Label(), queued);
  ProgressFacts facts{variant.name, wait, std::max(1, queued)};
  WriteProgress(stream, tuckerseg::v1::Progress::QUEUED, facts);
  // While queued, a client that gives up takes its queue entry with it (the sync API has no
  // cancellation callback: checked every 50 ms).
  for (;;) {
    {
      absl::MutexLock lock(&job->mutex);
      if (job->started || job->done) break;
      job->changed.WaitWithTimeout(&job->mutex, absl::Milliseconds(50));
      if (job->started || job->done) break;
    }
    const Status wanted = CallStillWanted(context);
    if (!wanted.ok() && device.scheduler->Cancel(ticket)) {
      state.metrics->SetQueueDepth(device.profile.Label(), device.scheduler->queued());
      return Annotate(wanted, "while queued");
    }
  }
  state.metrics->SetQueueDepth(device.profile.Label(), device.scheduler->queued());
  facts = ProgressFacts{variant.name};
  WriteProgress(stream, tuckerseg::v1::Progress::RUNNING, facts);
  // Writes happen outside the lock: a slow client must not hold up the worker.
  for (;;) {
    {
      absl::MutexLock lock(&job->mutex);
      while (!job->done && job->tiles_done <= facts.tiles_done) job->changed.Wait(&job->mutex);
      if (job->tiles_done <= facts.tiles_done) break;  // done, and every tile count reported
      facts.tiles_done = job->tiles_done;
      facts.tiles_total = job->tiles_total;
    }
    WriteProgress(stream, tuckerseg::v1::Progress::RUNNING, facts);
  }
  return job;
}

tuckerseg::v1::ResultHeader MakeResultHeader(const RequestRecord& record, const std::string& detail, std::optional<double> quality,
                                             const Prediction& p, double receive_seconds, double queue_wait_seconds, double total_seconds) {
  tuckerseg::v1::ResultHeader result;
  result.set_request_id(record.id);
  result.set_model(record.model);
  result.set_variant(record.variant);
  result.set_selection_reason(record.reason);
  result.set_selection_detail(detail);
  result.set_device(record.device);
  result.set_variant_quality(quality.value_or(0));
  result.set_variant_quality_known(quality.has_value());
  AddLabels(p.label_table, result.mutable_labels());
  auto* t = result.mutable_timings();
  t->set_receive_seconds(receive_seconds);
  t->set_queue_wait_seconds(queue_wait_seconds);
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

// A device's load for the selector: its queue, and on a GPU, NVML's utilisation (counted as a
// slowdown only while our own workers there are idle, i.e. someone else's work) and free memory.
DeviceCandidate DeviceLoad(const ServiceState& state, const ServedDevice& device, const ModelEntry* model) {
  DeviceCandidate c;
  c.model = model;
  c.queue_wait_seconds = device.scheduler->EstimatedWaitSeconds();
  if (device.device.is_cuda() && state.nvml) {
    if (const auto sample = state.nvml->Sample(device.profile.index)) {
      if (device.scheduler->running() == 0) c.slowdown = 1 / (1 - std::min(sample->utilization, 0.9));
      c.free_bytes = sample->memory_total_bytes - sample->memory_used_bytes;
    }
  }
  return c;
}

// One model's share of a request: the chosen variant on the chosen device, and its prediction.
struct PartResult {
  Prediction prediction;
  std::string variant, reason, device, detail;
  std::optional<double> quality;
  int64_t tiles = 0;
  double queue_wait_seconds = 0;
};

// The coarse pass of --roi-subset: the variant with the fewest calibrated seconds per tile among
// the selectable ones (the original when none is).
const VariantEntry& FastestSelectable(const ModelEntry& m) {
  const VariantEntry* fastest = &m.variants[0];
  for (const auto& v : m.variants)
    if (v.selectable && (!fastest->selectable || v.seconds_per_tile < fastest->seconds_per_tile)) fastest = &v;
  return *fastest;
}

// Selects a variant and a device for `model` (its own calibration and load), runs it on a worker
// and records the metrics; the call's other parts are independent of this one.
Result<PartResult> RunPart(ServiceState& state, grpc::ServerContext* context, Stream* stream,
                           const std::vector<std::shared_ptr<const ModelCatalog>>& catalogs, const ModelEntry& m,
                           const tuckerseg::v1::SegmentHeader& header, const std::vector<int64_t>& roi_outputs, CtVolume ct) {
  SelectionRequest wanted;
  wanted.variant = header.variant();
  wanted.min_quality = header.min_quality();
  wanted.tiles = EstimateTiles(m.variants[0].info, ct.geometry, state.window_step);
  if (context->deadline() != std::chrono::system_clock::time_point::max()) {
    wanted.deadline_seconds = std::chrono::duration<double>(context->deadline() - std::chrono::system_clock::now()).count();
  }
  std::vector<DeviceCandidate> candidates;
  for (size_t d = 0; d < state.devices.size(); ++d) {
    TS_ASSIGN_OR_RETURN(const ModelEntry* on_device, catalogs[d]->Find(m.name));
    candidates.push_back(DeviceLoad(state, *state.devices[d], on_device));
  }
  TS_ASSIGN_OR_RETURN(const Placement placement,
                      state.selector->SelectDevice(candidates, wanted, EstimateWindowBytes(m.variants[0].info, ct.geometry)));
  ServedDevice& device = *state.devices[placement.device];
  const ModelEntry& placed_model = *candidates[placement.device].model;
  const Selection& selection = placement.selection;
  const VariantEntry& variant = *selection.variant;
  PartResult part;
  part.variant = variant.name;
  part.reason = selection.reason;
  part.detail = selection.detail;
  part.quality = variant.quality;
  part.device = device.profile.Label();
  part.tiles = wanted.tiles;
  state.metrics->Selected(part.device, m.name, variant.name, part.reason);
  const int64_t voxels = ct.geometry.NumVoxels();
  std::optional<RoiRequest> roi;
  if (!roi_outputs.empty()) roi = RoiRequest{roi_outputs, &FastestSelectable(placed_model)};
  auto ran = RunOnWorker(state, device, context, stream, variant, std::move(ct), selection, candidates[placement.device].queue_wait_seconds,
                         std::move(roi));
  if (!ran.ok()) return ran.status();
  const auto& job = ran.value();
  absl::MutexLock lock(&job->mutex);  // the worker is done; this only orders the reads
  part.queue_wait_seconds = job->queue_wait_seconds;
  if (!job->result->ok()) return job->result->status();
  part.prediction = std::move(job->result->value());
  // Per estimated tile, the unit the selector predicts in.
  state.selector->Observe(placed_model, variant, job->run_seconds, part.tiles);
  state.metrics->Served(part.device, m.name, variant.name, voxels, job->queue_wait_seconds, part.prediction.timings);
  return part;
}

// One Segment call from its first message to its last label chunk. A composite model runs its
// parts one after the other, each choosing its own variant, and merges their labels.
Status ServeSegment(ServiceState& state, grpc::ServerContext* context, Stream* stream, StreamWatchdog::Watch& watch, RequestRecord* record) {
  const auto start = Clock::now();
  tuckerseg::v1::SegmentHeader header;
  TS_RETURN_IF_ERROR(ReceiveHeader(context, stream, *state.watchdog, watch, &header));
  watch.Working();
  record->id = header.request_id().empty() ? NewRequestId() : SanitisedRequestId(header.request_id());
  if (!IsPlainName(header.model()) || !IsPlainName(header.variant())) {
    return InvalidArgument("header.model and header.variant: at most " + std::to_string(kMaxNameLength) +
                           " characters of letters, digits and . _ - / :");
  }
  const auto catalogs = state.Catalogs();  // held for this call: the entries below stay alive
  const CompositeEntry* composite = catalogs[0]->FindComposite(header.model());
  std::vector<const ModelEntry*> parts;
  if (composite) {
    for (const auto& name : composite->part_models) {
      TS_ASSIGN_OR_RETURN(const ModelEntry* part, catalogs[0]->Find(name));
      parts.push_back(part);
    }
    record->model = composite->spec.name;
  } else {
    TS_ASSIGN_OR_RETURN(const ModelEntry* model, catalogs[0]->Find(header.model()));
    parts.push_back(model);
    record->model = model->name;
  }
  auto volume = wire::ParseVolumeHeader(header.volume(), {state.limits.max_voxels, state.limits.max_bytes}, "header.volume");
  if (!volume.ok()) return volume.status();
  if (volume.value().voxel_type == tuckerseg::v1::VOXEL_TYPE_UINT8) {
    return InvalidArgument("header.volume.voxel_type: a CT must be VOXEL_TYPE_INT16 or VOXEL_TYPE_FLOAT32");
  }
  for (const ModelEntry* m : parts) {
    for (const auto& [name, why] : m->unavailable)
      if (name == header.variant()) return NotFound("header.variant '" + name + "' of model '" + m->name + "' is unavailable: " + why);
  }
  for (const ModelEntry* m : parts)
    if (!header.variant().empty() && header.variant() != "auto" && !m->Find(header.variant())) {
      return NotFound("header.variant '" + header.variant() + "' of model '" + m->name + "' does not exist (have: " + m->VariantNames() +
                      ", auto)");
    }
  // --roi-subset: every name must be a class of the model; a composite's parts without any of
  // them are not run at all.
  constexpr int kMaxRoiNames = 256;
  if (header.roi_subset_size() > kMaxRoiNames) return InvalidArgument("header.roi_subset: more than " + std::to_string(kMaxRoiNames) + " names");
  const std::set<std::string> roi(header.roi_subset().begin(), header.roi_subset().end());
  std::vector<std::vector<int64_t>> roi_outputs;
  std::set<std::string> known;
  for (const ModelEntry* m : parts) {
    roi_outputs.push_back(OutputsNamed(m->variants[0].info, roi));
    for (const auto& [id, name] : m->variants[0].info.labels) known.insert(name);
  }
  for (const auto& name : roi)
    if (!known.count(name) || name == "background") {
      return InvalidArgument("header.roi_subset: '" + name.substr(0, 64) + "' is not a class of model '" + record->model + "'");
    }
  record->voxels = volume.value().voxels;
  // Admission, from the header alone: each model's network grid and tile count within the
  // limits, then the request's memory reserved from the server's budget until it ends.
  int64_t work_bytes = 0;
  for (const ModelEntry* m : parts) {
    auto work = EstimateWork(m->variants[0].info, volume.value().geometry, state.window_step,
                             {state.limits.max_grid_voxels, state.limits.max_tiles});
    if (!work.ok()) return Annotate(work.status(), "header.volume");
    work_bytes = std::max(work_bytes, work.value().window_bytes + static_cast<int64_t>(sizeof(float)) * work.value().grid_voxels);
  }
  // The CT's floats, the labels (twice for a composite's merge) and the largest part's work.
  const int64_t voxels = volume.value().voxels;
  TS_ASSIGN_OR_RETURN(const MemoryBudget::Reservation memory,
                      state.memory_budget->Reserve(static_cast<int64_t>(sizeof(float)) * voxels + (composite ? 2 : 1) * voxels + work_bytes));
  const GaugeHold admitted(state.metrics->in_flight());
  const GaugeHold reserved(state.metrics->memory_reserved_bytes(), static_cast<double>(memory.bytes()));
  WriteProgress(stream, tuckerseg::v1::Progress::HEADER_ACCEPTED);

  auto ct = ReceiveCt(context, stream, *state.watchdog, watch, volume.value());
  if (!ct.ok()) return ct.status();
  const double receive_seconds = Since(start);

  Prediction combined;
  std::string detail;
  std::optional<double> quality = 1.0;
  std::string variants, reasons;
  size_t last_part = parts.size() - 1;
  while (!roi.empty() && last_part > 0 && roi_outputs[last_part].empty()) --last_part;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!roi.empty() && roi_outputs[i].empty()) continue;  // none of the ROI classes comes from this part
    const bool last = i == last_part;
    TS_ASSIGN_OR_RETURN(PartResult part, RunPart(state, context, stream, catalogs, *parts[i], header, roi_outputs[i],
                                                 last ? std::move(ct.value()) : ct.value()));
    const std::string prefix = composite ? composite->spec.parts[i] + ":" : "";
    const std::string separator = variants.empty() ? "" : ",";
    variants += separator + prefix + part.variant;
    reasons += separator + prefix + part.reason;
    record->variant = variants;
    record->reason = reasons;
    detail += (detail.empty() ? "" : "; ") + prefix + part.detail;
    record->device = part.device;
    record->tiles += part.tiles;
    record->queue_wait_seconds += part.queue_wait_seconds;
    quality = quality && part.quality ? std::optional<double>(std::min(*quality, *part.quality)) : std::nullopt;
    if (!composite) {
      combined = std::move(part.prediction);
      break;
    }
    TS_RETURN_IF_ERROR(AddPartPrediction(composite->spec, i, part.prediction, &combined));
  }
  const auto result = MakeResultHeader(*record, detail, quality, combined, receive_seconds, record->queue_wait_seconds, Since(start));
  return SendResult(stream, watch, result, combined.labels, state.limits.chunk_bytes);
}

// How long a refused caller should wait before retrying (gRPC's retry pushback): the CPU queue's
// estimated wait, 1 to 60 s.
int64_t PushbackMilliseconds(const ServiceState& state) {
  double wait = 1;
  for (const auto& d : state.devices) wait = std::max(wait, d->scheduler->EstimatedWaitSeconds());
  return static_cast<int64_t>(std::min(wait, 60.0) * 1000);
}

}  // namespace

grpc::Status SegmentationService::Segment(grpc::ServerContext* context, Stream* stream) {
  const auto start = Clock::now();
  StreamSlot slot(state_.open_streams, state_.limits.max_streams);
  const GaugeHold open(state_.metrics->open_streams());
  const auto watch = state_.watchdog->Register(context);
  RequestRecord record;
  Status status = state_.auth->Check(*context);
  if (!status.ok()) {
    // refused before anything else: no slot, no model lookup
  } else if (!slot.acquired()) {
    status = ResourceExhausted("max_streams: " + std::to_string(state_.limits.max_streams) + " Segment streams are open already; retry later");
  } else if (!state_.ready.load()) {
    status = Unavailable("the server is not serving (calibrating its variants, or shutting down); retry when health is SERVING");
  } else {
    status = ServeSegment(state_, context, stream, *watch, &record);
  }
  if (status.code() == StatusCode::kResourceExhausted) {
    context->AddTrailingMetadata("grpc-retry-pushback-ms", std::to_string(PushbackMilliseconds(state_)));
  }
  const double seconds = Since(start);
  const std::string code = StatusName(status.code());
  state_.metrics->RequestFinished(record.device, record.model, record.variant, code, seconds);
  const LogLevel level = status.ok() ? LogLevel::kInfo
                         : status.code() == StatusCode::kInternal || status.code() == StatusCode::kDataLoss ? LogLevel::kError
                                                                                                             : LogLevel::kWarning;
  Log(level, "request id=%s model=%s variant=%s device=%s reason=%s voxels=%lld tiles=%lld queue_wait=%.3fs total=%.3fs status=%s%s%s",
               record.id.empty() ? "-" : record.id.c_str(), record.model.c_str(), record.variant.c_str(), record.device.c_str(), record.reason.c_str(),
               static_cast<long long>(record.voxels), static_cast<long long>(record.tiles), record.queue_wait_seconds, seconds,
               code.c_str(), status.ok() ? "" : " message=", status.ok() ? "" : status.message().c_str());
  return ToGrpc(status);
}

}  // namespace tucker_seg::server
