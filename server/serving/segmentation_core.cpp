#include "server/serving/segmentation_core.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <functional>
#include <random>
#include <set>

#include "model_store/format/composite.h"
#include "vocabulary/log.h"

namespace tucker_seg::server {
namespace {

// A number as a person writes it: 0.5, not 0.500000.
std::string ShortNumber(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", v);
  return buffer;
}

using SteadyClock = std::chrono::steady_clock;

double Since(SteadyClock::time_point t) { return std::chrono::duration<double>(SteadyClock::now() - t).count(); }

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

// The worker's side of one request; the requesting thread waits on it.
struct Job {
  absl::Mutex mutex;
  absl::CondVar changed;
  bool started ABSL_GUARDED_BY(mutex) = false;
  bool interleaved ABSL_GUARDED_BY(mutex) = false;  // run between the steps of another request
  Selection selection ABSL_GUARDED_BY(mutex);  // the worker's choice, set when it starts
  bool done ABSL_GUARDED_BY(mutex) = false;
  std::optional<Result<Prediction>> result ABSL_GUARDED_BY(mutex);
  double queue_wait_seconds ABSL_GUARDED_BY(mutex) = 0;
  double run_seconds ABSL_GUARDED_BY(mutex) = 0;          // its own, without work interleaved between its steps
  double interleaved_seconds ABSL_GUARDED_BY(mutex) = 0;  // other requests' work run between its steps
  int64_t tiles_done ABSL_GUARDED_BY(mutex) = 0;
  int64_t tiles_total ABSL_GUARDED_BY(mutex) = 0;
};

// What --roi-subset asks of one model: its outputs to look for, and the variant for the coarse pass.
struct RoiRequest {
  std::vector<int64_t> outputs;
  const VariantEntry* coarse = nullptr;
};

// Runs on a worker; stops early when the call is no longer wanted. Between its steps (slabs of
// preprocessing, tiles, exported slices), `between_steps` (when set) is told the estimated run
// time left and may run other requests first (their time goes to job->interleaved_seconds). The
// estimate left is the larger of `run_seconds`' share for the tiles not done and this run's own
// pace at labelling output slices: the per-request cost model counts tiles, but a large CT's
// preprocessing and export grow with its voxels, and its last slices are exported after its
// last tile. The prediction consumes the CT: its voxels are freed once preprocessing is done.
Result<Prediction> RunPrediction(const VariantEntry& variant, CtVolume&& ct, double step, ProgressSink& progress, Job* job,
                                 const std::optional<RoiRequest>& roi, double run_seconds,
                                 const std::function<double(double)>& between_steps) {
  TS_RETURN_IF_ERROR(progress.StillWanted());
  PredictionOptions options;
  std::optional<UNetPatchNetwork> coarse;
  if (roi) {
    coarse.emplace(*roi->coarse->executor);
    options.roi = RoiOptions{&*coarse, roi->outputs};
  }
  options.window.step = step;
  options.window.should_continue = [&progress] { return progress.StillWanted(); };
  if (between_steps) {
    options.between_steps = [job, run_seconds, run_start = SteadyClock::now(), &between_steps](double exported) {
      double left = run_seconds;
      {
        absl::MutexLock lock(&job->mutex);
        if (job->tiles_total > 0) left *= 1 - static_cast<double>(job->tiles_done) / static_cast<double>(job->tiles_total);
        // From half the slices on (earlier, a few slices' pace overstates a short run's rest).
        if (exported >= 0.5) left = std::max(left, (Since(run_start) - job->interleaved_seconds) * (1 - exported) / exported);
      }
      const double interleaved = between_steps(left);
      absl::MutexLock lock(&job->mutex);
      job->interleaved_seconds += interleaved;
    };
  }
  options.window.on_tiles = [job](int64_t done, int64_t total) {
    absl::MutexLock lock(&job->mutex);
    job->tiles_done = done;
    job->tiles_total = total;
    job->changed.SignalAll();
  };
  UNetPatchNetwork net(*variant.executor);
  return Predict(variant.info, net, std::move(ct), options);
}

// What a part needs on the worker: its model as placed on the device, the selection request, and
// the coarse pass of --roi-subset.
struct PartWork {
  const ModelEntry* model = nullptr;
  SelectionRequest wanted;
  std::optional<RoiRequest> roi;
  double step = 0.5;  // the sliding window's
};

// Queues the prediction on the device's workers, reports QUEUED (position, estimated wait, the
// variant it would get now) and RUNNING (the variant the worker chose, tiles done of total, each
// time the worker finishes some), and waits for the worker. The job never outlives this call: it
// returns once the worker is done, or with the job taken out of the queue unrun.
Result<std::shared_ptr<Job>> RunOnWorker(ServiceState& state, ServedDevice& device, ProgressSink& progress, PartWork part, CtVolume ct,
                                         WorkItem item, const Selection& provisional, double wait) {
  auto job = std::make_shared<Job>();
  const auto enqueued = SteadyClock::now();
  item.work = [job, enqueued, &progress, selector = state.selector, part = std::move(part), ct = std::move(ct),
               step = part.step](const Dispatch& dispatch) mutable {
    auto chosen = selector->Dispatch(*part.model, part.wanted, dispatch.view);
    if (chosen.ok()) dispatch.expect(chosen.value().run_seconds);
    {
      absl::MutexLock lock(&job->mutex);
      job->started = true;
      job->interleaved = dispatch.interleaved;
      if (chosen.ok()) job->selection = chosen.value();
      job->queue_wait_seconds = Since(enqueued);
      job->changed.SignalAll();
    }
    const auto run_start = SteadyClock::now();
    Result<Prediction> result = chosen.ok() ? RunPrediction(*chosen.value().variant, std::move(ct), step, progress, job.get(), part.roi,
                                                            chosen.value().run_seconds, dispatch.between_steps)
                                            : Result<Prediction>(chosen.status());
    absl::MutexLock lock(&job->mutex);
    job->run_seconds = Since(run_start) - job->interleaved_seconds;
    job->result = std::move(result);
    job->done = true;
    job->changed.SignalAll();
  };
  TS_ASSIGN_OR_RETURN(const Scheduler::Ticket ticket, device.scheduler->Submit(std::move(item)));
  const int queued = device.scheduler->queued();
  state.metrics->SetQueueDepth(device.profile.Label(), queued);
  progress.Queued(provisional.variant->name, wait, std::max(1, queued));
  // While queued, a caller that gives up takes its queue entry with it (checked every 50 ms: the
  // transport's cancellation is polled, not signalled).
  for (;;) {
    {
      absl::MutexLock lock(&job->mutex);
      if (job->started || job->done) break;
      job->changed.WaitWithTimeout(&job->mutex, absl::Milliseconds(50));
      if (job->started || job->done) break;
    }
    const Status wanted = progress.StillWanted();
    if (!wanted.ok() && device.scheduler->Cancel(ticket)) {
      state.metrics->SetQueueDepth(device.profile.Label(), device.scheduler->queued());
      return Annotate(wanted, "while queued");
    }
  }
  state.metrics->SetQueueDepth(device.profile.Label(), device.scheduler->queued());
  std::string variant;
  {
    absl::MutexLock lock(&job->mutex);
    if (job->selection.variant) variant = job->selection.variant->name;
  }
  progress.Running(variant, 0, 0);
  // Reports happen outside the lock: a slow client must not hold up the worker.
  int64_t reported = 0;
  for (;;) {
    int64_t done = 0, total = 0;
    {
      absl::MutexLock lock(&job->mutex);
      while (!job->done && job->tiles_done <= reported) job->changed.Wait(&job->mutex);
      if (job->tiles_done <= reported) break;  // done, and every tile count reported
      done = reported = job->tiles_done;
      total = job->tiles_total;
    }
    progress.Running(variant, done, total);
  }
  return job;
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
  std::string variant, reason, device, detail, weights_digest;
  std::optional<double> quality;
  int64_t tiles = 0;
  double queue_wait_seconds = 0;
  double worker_seconds = 0;
  bool interleaved = false;
};

// The coarse pass of --roi-subset: the variant with the fewest calibrated seconds per tile among
// the selectable ones (the original when none is).
const VariantEntry& FastestSelectable(const ModelEntry& m) {
  const VariantEntry* fastest = &m.variants[0];
  for (const auto& v : m.variants)
    if (v.selectable && (!fastest->selectable || v.seconds_per_tile < fastest->seconds_per_tile)) fastest = &v;
  return *fastest;
}

// The request's run time on the device of `catalog` with the fastest variant `spec` allows for each
// of its parts; nullopt when a part has none there.
std::optional<double> FastestRunSeconds(const ServiceState& state, const ModelCatalog& catalog, const std::vector<const ModelEntry*>& parts,
                                        const RequestSpec& spec, double step, const Geometry& geometry) {
  double total = 0;
  for (const ModelEntry* part : parts) {
    const auto on_device = catalog.Find(part->name);
    if (!on_device.ok()) return std::nullopt;
    SelectionRequest wanted;
    wanted.variant = spec.variant;
    wanted.min_quality = spec.min_quality;
    wanted.tiles = EstimateTiles(part->variants[0].info, geometry, step);
    const auto fastest = state.selector->FastestCandidate(*on_device.value(), wanted);
    if (!fastest.ok()) return std::nullopt;
    total += fastest.value().seconds;
  }
  return total;
}

// Places `model`'s part of the request on a device (its own calibration and load), queues it there
// and records the metrics; the variant is chosen when a worker takes it. The call's other parts
// are independent of this one.
Result<PartResult> RunPart(ServiceState& state, ProgressSink& progress, const std::vector<std::shared_ptr<const ModelCatalog>>& catalogs,
                           const ModelEntry& m, const RequestSpec& spec, Clock::TimePoint due,
                           const std::vector<int64_t>& roi_outputs, CtVolume ct) {
  SelectionRequest wanted;
  wanted.variant = spec.variant;
  wanted.min_quality = spec.min_quality;
  wanted.tiles = EstimateTiles(m.variants[0].info, ct.geometry, spec.step);
  if (spec.deadline) wanted.deadline_seconds = std::chrono::duration<double>(*spec.deadline - std::chrono::system_clock::now()).count();
  std::vector<DeviceCandidate> candidates;
  for (size_t d = 0; d < state.devices.size(); ++d) {
    TS_ASSIGN_OR_RETURN(const ModelEntry* on_device, catalogs[d]->Find(m.name));
    candidates.push_back(DeviceLoad(state, *state.devices[d], on_device));
  }
  TS_ASSIGN_OR_RETURN(const Placement placement,
                      state.selector->SelectDevice(candidates, wanted, EstimateWindowBytes(m.variants[0].info, ct.geometry)));
  ServedDevice& device = *state.devices[placement.device];
  const ModelEntry& placed_model = *candidates[placement.device].model;
  wanted.slowdown = std::max(1.0, candidates[placement.device].slowdown);

  WorkItem item;
  item.due = due;
  TS_ASSIGN_OR_RETURN(const VariantSelector::Fastest fastest, state.selector->FastestCandidate(placed_model, wanted));
  item.fastest_seconds = fastest.seconds;
  item.estimated_seconds = placement.selection.run_seconds;
  if (wanted.deadline_seconds) {
    const double wait = device.scheduler->FastestWaitSeconds(item.due);
    if (wait + item.fastest_seconds > *wanted.deadline_seconds) {
      return DeadlineExceeded("the request's deadline: " + std::to_string(*wanted.deadline_seconds) + " s left, and even " + fastest.variant->name +
                              " needs about " + std::to_string(item.fastest_seconds) + " s behind " + std::to_string(wait) +
                              " s of work queued ahead of it");
    }
  }

  PartWork work{&placed_model, wanted, std::nullopt, spec.step};
  if (!roi_outputs.empty()) work.roi = RoiRequest{roi_outputs, &FastestSelectable(placed_model)};
  const int64_t voxels = ct.geometry.NumVoxels();
  auto ran = RunOnWorker(state, device, progress, std::move(work), std::move(ct), std::move(item), placement.selection,
                         candidates[placement.device].queue_wait_seconds);
  if (!ran.ok()) return ran.status();
  const auto& job = ran.value();
  absl::MutexLock lock(&job->mutex);  // the worker is done; this only orders the reads
  PartResult part;
  part.queue_wait_seconds = job->queue_wait_seconds;
  part.worker_seconds = job->run_seconds + job->interleaved_seconds;
  part.tiles = wanted.tiles;
  part.device = device.profile.Label();
  if (!job->result->ok()) return job->result->status();
  const Selection selection = job->selection;
  part.variant = selection.variant->name;
  part.reason = selection.reason;
  part.detail = selection.detail;
  part.quality = selection.variant->quality;
  part.weights_digest = selection.variant->weights_digest;
  part.prediction = std::move(job->result->value());
  state.metrics->Selected(part.device, m.name, part.variant, part.reason);
  if (job->interleaved) state.metrics->Interleaved(part.device, m.name);
  part.interleaved = job->interleaved;
  state.selector->Observe(placed_model, *selection.variant, job->run_seconds, part.tiles);
  state.metrics->Served(part.device, m.name, part.variant, voxels, job->queue_wait_seconds, part.prediction.timings);
  return part;
}

}  // namespace

Result<Admission> Admit(ServiceState& state, const RequestSpec& spec, RequestRecord* record) {
  record->id = spec.request_id.empty() ? NewRequestId() : SanitisedRequestId(spec.request_id);
  if (!IsPlainName(spec.model) || !IsPlainName(spec.variant)) {
    return InvalidArgument("header.model and header.variant: at most " + std::to_string(kMaxNameLength) +
                           " characters of letters, digits and . _ - / :");
  }
  Admission a;
  a.catalogs_ = state.Catalogs();  // held for this request: the entries below stay alive
  a.composite_ = a.catalogs_[0]->FindComposite(spec.model);
  if (a.composite_) {
    for (const auto& name : a.composite_->part_models) {
      TS_ASSIGN_OR_RETURN(const ModelEntry* part, a.catalogs_[0]->Find(name));
      a.parts_.push_back(part);
    }
    record->model = a.composite_->spec.name;
  } else {
    TS_ASSIGN_OR_RETURN(const ModelEntry* model, a.catalogs_[0]->Find(spec.model));
    a.parts_.push_back(model);
    record->model = model->name;
  }
  TS_ASSIGN_OR_RETURN(a.volume_, wire::ParseVolumeHeader(spec.volume, {state.limits.max_voxels, state.limits.max_bytes}, "header.volume"));
  if (a.volume_.voxel_type == tuckerseg::v1::VOXEL_TYPE_UINT8) {
    return InvalidArgument("header.volume.voxel_type: a CT must be VOXEL_TYPE_INT16 or VOXEL_TYPE_FLOAT32");
  }
  for (const ModelEntry* m : a.parts_) {
    for (const auto& [name, why] : m->unavailable)
      if (name == spec.variant) return NotFound("header.variant '" + name + "' of model '" + m->name + "' is unavailable: " + why);
  }
  for (const ModelEntry* m : a.parts_)
    if (!spec.variant.empty() && spec.variant != "auto" && !m->Find(spec.variant)) {
      return NotFound("header.variant '" + spec.variant + "' of model '" + m->name + "' does not exist (have: " + m->VariantNames() +
                      ", auto)");
    }
  // The sliding window's step: the client's (TotalSegmentator uses 0.8), or the server's.
  if (spec.step != 0 && !(spec.step >= 0.1 && spec.step <= 1)) {
    return InvalidArgument("header.step must be 0 (the server's " + ShortNumber(state.window_step) + ") or in [0.1, 1], got " +
                           ShortNumber(spec.step));
  }
  const double step = spec.step != 0 ? spec.step : state.window_step;
  // --roi-subset: every name must be a class of the model; a composite's parts without any of
  // them are not run at all.
  constexpr size_t kMaxRoiNames = 256;
  if (spec.roi_subset.size() > kMaxRoiNames) return InvalidArgument("header.roi_subset: more than " + std::to_string(kMaxRoiNames) + " names");
  const std::set<std::string> roi(spec.roi_subset.begin(), spec.roi_subset.end());
  std::set<std::string> known;
  for (const ModelEntry* m : a.parts_) {
    a.roi_outputs_.push_back(OutputsNamed(m->variants[0].info, roi));
    for (const auto& [id, name] : m->variants[0].info.labels) known.insert(name);
  }
  for (const auto& name : roi)
    if (!known.count(name) || name == "background") {
      return InvalidArgument("header.roi_subset: '" + name.substr(0, 64) + "' is not a class of model '" + record->model + "'");
    }
  record->voxels = a.volume_.voxels;
  // Each model's network grid and tile count within the limits, then the request's memory
  // reserved from the server's budget until it ends.
  int64_t work_bytes = 0;
  for (const ModelEntry* m : a.parts_) {
    auto work = EstimateWork(m->variants[0].info, a.volume_.geometry, step, {state.limits.max_grid_voxels, state.limits.max_tiles});
    if (!work.ok()) return Annotate(work.status(), "header.volume");
    work_bytes = std::max(work_bytes, work.value().window_bytes + static_cast<int64_t>(sizeof(float)) * work.value().grid_voxels);
  }
  // The CT's floats, the labels (twice for a composite's merge) and the largest part's work.
  const int64_t voxels = a.volume_.voxels;
  TS_ASSIGN_OR_RETURN(a.memory_, state.memory_budget->Reserve(static_cast<int64_t>(sizeof(float)) * voxels +
                                                              (a.composite_ ? 2 : 1) * voxels + work_bytes));
  a.in_flight_ = std::make_unique<GaugeHold>(state.metrics->in_flight());
  a.reserved_bytes_ = std::make_unique<GaugeHold>(state.metrics->memory_reserved_bytes(), static_cast<double>(a.memory_.bytes()));
  a.spec_ = spec;
  a.spec_.step = step;
  // The budget, counted from now: the latency target or the client's deadline, whichever is sooner.
  SelectionRequest budgeted;
  if (spec.deadline) budgeted.deadline_seconds = std::chrono::duration<double>(*spec.deadline - std::chrono::system_clock::now()).count();
  record->budget_seconds = state.selector->BudgetSeconds(budgeted);
  if (record->budget_seconds) {
    // For the schedule the budget ends when the request's worker must be done: before sending
    // the labels back takes what it usually does.
    const double worker_budget = *record->budget_seconds - state.selector->OffWorkerSeconds();
    a.due_ = state.clock->Now() + std::chrono::duration_cast<Clock::TimePoint::duration>(std::chrono::duration<double>(worker_budget));
    // While its volume arrives, the requests dispatched on each device count it behind them, at
    // its fastest allowed variants there.
    for (size_t d = 0; d < state.devices.size(); ++d) {
      if (const std::optional<double> fastest = FastestRunSeconds(state, *a.catalogs_[d], a.parts_, spec, step, a.volume_.geometry)) {
        a.announced_.push_back(state.devices[d]->scheduler->Announce(a.due_, *fastest));
      }
    }
  }
  return a;
}

Result<SegmentOutcome> Run(ServiceState& state, Admission& admission, CtVolume ct, ProgressSink& progress, RequestRecord* record) {
  admission.announced_.clear();  // its volume has arrived: from here on it is queued work
  const auto& parts = admission.parts_;
  const auto& roi_outputs = admission.roi_outputs_;
  const CompositeEntry* composite = admission.composite_;
  const bool roi = !admission.spec_.roi_subset.empty();
  SegmentOutcome outcome;
  outcome.quality = 1.0;
  outcome.step = admission.spec_.step;
  std::string variants, reasons;
  size_t last_part = parts.size() - 1;
  while (roi && last_part > 0 && roi_outputs[last_part].empty()) --last_part;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (roi && roi_outputs[i].empty()) continue;  // none of the ROI classes comes from this part
    const bool last = i == last_part;
    TS_ASSIGN_OR_RETURN(PartResult part, RunPart(state, progress, admission.catalogs_, *parts[i], admission.spec_, admission.due_,
                                                 roi_outputs[i], last ? std::move(ct) : ct));
    const std::string prefix = composite ? composite->spec.parts[i] + ":" : "";
    const std::string separator = variants.empty() ? "" : ",";
    variants += separator + prefix + part.variant;
    outcome.model_version += separator + prefix + part.weights_digest;
    reasons += separator + prefix + part.reason;
    record->variant = variants;
    record->reason = reasons;
    outcome.detail += (outcome.detail.empty() ? "" : "; ") + prefix + part.detail;
    record->device = part.device;
    record->tiles += part.tiles;
    record->queue_wait_seconds += part.queue_wait_seconds;
    record->worker_seconds += part.worker_seconds;
    record->interleaved = record->interleaved || part.interleaved;
    outcome.quality = outcome.quality && part.quality ? std::optional<double>(std::min(*outcome.quality, *part.quality)) : std::nullopt;
    if (!composite) {
      outcome.prediction = std::move(part.prediction);
      break;
    }
    TS_RETURN_IF_ERROR(AddPartPrediction(composite->spec, i, part.prediction, &outcome.prediction));
  }
  return outcome;
}

void FinishRequest(ServiceState& state, const RequestRecord& record, const Status& status, double seconds) {
  const std::string code = StatusName(status.code());
  state.metrics->RequestFinished(record.device, record.model, record.variant, code, seconds);
  if (record.budget_seconds) state.metrics->Budgeted(record.device, record.model, record.variant, status.ok() && seconds <= *record.budget_seconds);
  if (status.ok() && record.worker_seconds > 0) state.selector->ObserveOffWorker(seconds - record.queue_wait_seconds - record.worker_seconds);
  const LogLevel level = status.ok() ? LogLevel::kInfo
                         : status.code() == StatusCode::kInternal || status.code() == StatusCode::kDataLoss ? LogLevel::kError
                                                                                                             : LogLevel::kWarning;
  Log(level, "request id=%s model=%s variant=%s device=%s reason=%s voxels=%lld tiles=%lld queue_wait=%.3fs%s total=%.3fs status=%s%s%s",
      record.id.empty() ? "-" : record.id.c_str(), record.model.c_str(), record.variant.c_str(), record.device.c_str(), record.reason.c_str(),
      static_cast<long long>(record.voxels), static_cast<long long>(record.tiles), record.queue_wait_seconds,
      record.interleaved ? " interleaved" : "", seconds, code.c_str(),
      status.ok() ? "" : " message=", status.ok() ? "" : status.message().c_str());
}

int64_t PushbackMilliseconds(const ServiceState& state) {
  double wait = 1;
  for (const auto& d : state.devices) wait = std::max(wait, d->scheduler->EstimatedWaitSeconds());
  return static_cast<int64_t>(std::min(wait, 60.0) * 1000);
}

std::vector<std::string> CommonVariants(const ModelCatalog& catalog, const CompositeEntry& composite) {
  std::vector<std::string> common;
  const auto first = catalog.Find(composite.part_models[0]);
  if (!first.ok()) return common;
  for (const auto& v : first.value()->variants) {
    bool everywhere = true;
    for (const auto& part : composite.part_models) {
      const auto m = catalog.Find(part);
      everywhere = everywhere && m.ok() && m.value()->Find(v.name);
    }
    if (everywhere) common.push_back(v.name);
  }
  return common;
}

}  // namespace tucker_seg::server
