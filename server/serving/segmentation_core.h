// One Segment request without the transport: Admit checks everything the header allows and
// reserves the request's memory; Run selects a variant and a device for each model, queues the
// prediction on that device's workers, reports progress and merges a composite's parts;
// FinishRequest writes the log line and the request metrics. The gRPC handler (segment_rpc.cpp)
// only moves bytes between the stream and these three.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model_store/inference/predictor.h"
#include "server/serving/service_state.h"
#include "tuckerseg/v1/segmentation.pb.h"
#include "vocabulary/status.h"
#include "wire/volume_wire.h"

namespace tucker_seg::server {

// What a client asks for, as its header says it.
struct RequestSpec {
  std::string request_id;  // empty: the server makes one
  std::string model;
  std::string variant;     // empty or "auto": the selector picks
  double min_quality = 0;
  std::vector<std::string> roi_subset;
  double step = 0;  // the sliding window's step as a fraction of the patch; 0: the server's (Admit sets the one used)
  tuckerseg::v1::VolumeGeometry volume;
  std::optional<std::chrono::system_clock::time_point> deadline;
};

// What the log line and the metrics report about one request; filled in as it goes.
struct RequestRecord {
  std::string id;
  std::string model = "-";
  std::string variant = "-";
  std::string reason = "-";
  std::string device = "none";  // where the work ran; "none" when refused before placement
  int64_t voxels = 0;
  int64_t tiles = 0;
  double queue_wait_seconds = 0;
  double worker_seconds = 0;  // on its workers, from start to end (other requests interleaved included)
  bool interleaved = false;  // ran (a part) between the steps of a longer request
  std::optional<double> budget_seconds;  // the latency target or the deadline, whichever is sooner
};

// The transport's side of a running request: whether its caller still wants it, and where
// progress goes. StillWanted is also called from the worker between tiles.
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  // OK while the caller waits for the result; CANCELLED or DEADLINE_EXCEEDED once it does not.
  virtual Status StillWanted() = 0;
  virtual void Queued(const std::string& variant, double estimated_wait_seconds, int queue_position) = 0;
  virtual void Running(const std::string& variant, int64_t tiles_done, int64_t tiles_total) = 0;
};

// What Run produces: the (merged) prediction and how it was chosen.
struct SegmentOutcome {
  Prediction prediction;
  double step = 0;                // the sliding window's step used
  std::string detail;             // the selector's reasoning, per part
  std::optional<double> quality;  // the lowest quality of the variants used, when every one is known
  // The weights that served: the variant's WeightsDigest; a composite's "<part>:<digest>" joined by ",".
  std::string model_version;
};

// A request that passed admission: its models, the catalogs it was checked against (held until
// it ends, so that a reload cannot take them away) and its memory reservation.
class Admission {
 public:
  Admission(Admission&&) = default;
  Admission& operator=(Admission&&) = default;
  // The volume the client must now send.
  const wire::VolumeHeader& volume() const { return volume_; }

 private:
  friend Result<Admission> Admit(ServiceState& state, const RequestSpec& spec, RequestRecord* record);
  friend Result<SegmentOutcome> Run(ServiceState& state, Admission& admission, CtVolume ct, ProgressSink& progress, RequestRecord* record);
  Admission() = default;

  RequestSpec spec_;
  wire::VolumeHeader volume_;
  std::vector<std::shared_ptr<const ModelCatalog>> catalogs_;
  const CompositeEntry* composite_ = nullptr;
  std::vector<const ModelEntry*> parts_;
  std::vector<std::vector<int64_t>> roi_outputs_;  // per part: the outputs --roi-subset asks of it
  Clock::TimePoint due_ = Clock::TimePoint::max();  // when its budget ends; max(): no budget
  MemoryBudget::Reservation memory_;
  std::unique_ptr<GaugeHold> in_flight_, reserved_bytes_;
  std::vector<Scheduler::Announcement> announced_;  // one per device, until Run
};

// Every check of `spec` (names, model, variant, ROI classes, volume geometry, grid and tile
// limits) before any allocation, then the request's memory reserved from the budget. Statuses
// name the header field and the limit. Sets record->id, model, voxels and budget_seconds.
Result<Admission> Admit(ServiceState& state, const RequestSpec& spec, RequestRecord* record);

// Selection, queueing, prediction and composite merging for an admitted request and its CT. The
// device is chosen when the request is queued; the variant when a worker takes it (late binding:
// the most accurate one that keeps this request and those queued behind it within their budgets,
// dispatch_policy.h); a request that would miss its budget behind a long one runs between that
// one's steps (scheduler.h). DEADLINE_EXCEEDED at once when even the fastest variant cannot meet the
// client's deadline behind the queue. Sets record->variant, reason, device, tiles and
// queue_wait_seconds.
Result<SegmentOutcome> Run(ServiceState& state, Admission& admission, CtVolume ct, ProgressSink& progress, RequestRecord* record);

// The request's log line (no patient data) and its request metrics.
void FinishRequest(ServiceState& state, const RequestRecord& record, const Status& status, double seconds);

// How long a refused caller should wait before retrying (gRPC's retry pushback): the longest
// queue's estimated wait, 1 to 60 s.
int64_t PushbackMilliseconds(const ServiceState& state);

// The variant names every part of a composite has, in the first part's order.
std::vector<std::string> CommonVariants(const ModelCatalog& catalog, const CompositeEntry& composite);

}  // namespace tucker_seg::server
