// Segment: header -> validate (before any allocation) -> voxels -> select a variant -> queue ->
// predict on a worker -> result header -> label chunks. One log line per request, no patient data.
#include <algorithm>
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

Status ReceiveHeader(grpc::ServerContext* context, Stream* stream, tuckerseg::v1::SegmentHeader* header) {
  tuckerseg::v1::SegmentRequest first;
  if (!stream->Read(&first)) {
    TS_RETURN_IF_ERROR(CallStillWanted(context));
    return InvalidArgument("header: the stream ended before the header");
  }
  if (!first.has_header()) return InvalidArgument("header: the first message must be a header, not voxels");
  *header = std::move(*first.mutable_header());
  return Status::Ok();
}

Status ReceiveVoxels(grpc::ServerContext* context, Stream* stream, int64_t expected, std::string* bytes) {
  bytes->reserve(static_cast<size_t>(expected));  // expected passed ParseVolumeHeader's limits
  tuckerseg::v1::SegmentRequest message;
  while (stream->Read(&message)) {
    if (!message.has_voxels() || message.has_header()) return InvalidArgument("voxels: a second header arrived after the first");
    const auto& chunk = message.voxels();
    if (static_cast<int64_t>(bytes->size() + chunk.size()) > expected) {
      return InvalidArgument("voxels: more than the " + std::to_string(expected) + " bytes the header declares (size x voxel_type)");
    }
    bytes->append(chunk);
  }
  if (static_cast<int64_t>(bytes->size()) < expected) {
    TS_RETURN_IF_ERROR(CallStillWanted(context));
    return InvalidArgument("voxels: the stream ended after " + std::to_string(bytes->size()) + " of the " + std::to_string(expected) +
                           " bytes the header declares (size x voxel_type)");
  }
  return Status::Ok();
}

Status SendResult(Stream* stream, const tuckerseg::v1::ResultHeader& header, const LabelMap& labels, int64_t chunk_bytes) {
  tuckerseg::v1::SegmentResponse r;
  *r.mutable_header() = header;
  if (!stream->Write(r)) return Cancelled("the client went away before the result");
  const auto* data = reinterpret_cast<const char*>(labels.voxels.data());
  const auto total = static_cast<int64_t>(labels.voxels.size());
  for (int64_t offset = 0; offset < total; offset += chunk_bytes) {
    tuckerseg::v1::SegmentResponse chunk;
    chunk.set_labels(data + offset, static_cast<size_t>(std::min(chunk_bytes, total - offset)));
    if (!stream->Write(chunk)) return Cancelled("the client went away while labels were sent");
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
  TS_RETURN_IF_ERROR(device.scheduler->Submit(std::move(work), selection.run_seconds));
  const int queued = device.scheduler->queued();
  state.metrics->SetQueueDepth(device.profile.Label(), queued);
  ProgressFacts facts{variant.name, wait, std::max(1, queued)};
  WriteProgress(stream, tuckerseg::v1::Progress::QUEUED, facts);
  {
    absl::MutexLock lock(&job->mutex);
    while (!job->started && !job->done) job->changed.Wait(&job->mutex);
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
Status ServeSegment(ServiceState& state, grpc::ServerContext* context, Stream* stream, RequestRecord* record) {
  const auto start = Clock::now();
  tuckerseg::v1::SegmentHeader header;
  TS_RETURN_IF_ERROR(ReceiveHeader(context, stream, &header));
  record->id = header.request_id().empty() ? NewRequestId() : header.request_id().substr(0, 64);
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
  WriteProgress(stream, tuckerseg::v1::Progress::HEADER_ACCEPTED);

  std::string bytes;
  TS_RETURN_IF_ERROR(ReceiveVoxels(context, stream, volume.value().bytes, &bytes));
  const double receive_seconds = Since(start);
  auto ct = wire::DecodeCt(volume.value(), bytes);
  if (!ct.ok()) return ct.status();
  bytes = std::string();

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
  return SendResult(stream, result, combined.labels, state.limits.chunk_bytes);
}

}  // namespace

grpc::Status SegmentationService::Segment(grpc::ServerContext* context, Stream* stream) {
  const auto start = Clock::now();
  StreamSlot slot(state_.open_streams, state_.limits.max_streams);
  state_.metrics->in_flight().Increment();
  RequestRecord record;
  Status status;
  if (!slot.acquired()) {
    status = ResourceExhausted("max_streams: " + std::to_string(state_.limits.max_streams) + " Segment streams are open already; retry later");
  } else if (!state_.ready.load()) {
    status = Unavailable("the server is not serving (calibrating its variants, or shutting down); retry when health is SERVING");
  } else {
    status = ServeSegment(state_, context, stream, &record);
  }
  const double seconds = Since(start);
  const std::string code = StatusName(status.code());
  state_.metrics->RequestFinished(record.device, record.model, record.variant, code, seconds);
  state_.metrics->in_flight().Decrement();
  Log("request id=%s model=%s variant=%s device=%s reason=%s voxels=%lld tiles=%lld queue_wait=%.3fs total=%.3fs status=%s%s%s",
               record.id.empty() ? "-" : record.id.c_str(), record.model.c_str(), record.variant.c_str(), record.device.c_str(), record.reason.c_str(),
               static_cast<long long>(record.voxels), static_cast<long long>(record.tiles), record.queue_wait_seconds, seconds,
               code.c_str(), status.ok() ? "" : " message=", status.ok() ? "" : status.message().c_str());
  return ToGrpc(status);
}

}  // namespace tucker_seg::server
