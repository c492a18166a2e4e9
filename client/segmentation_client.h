// The client library a PACS integration links: segment a CT over tuckerseg.v1's streaming RPC
// and get the label map back on the CT's own grid. No LibTorch.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tuckerseg/v1/segmentation.pb.h"
#include "vocabulary/status.h"
#include "vocabulary/volume.h"

namespace grpc {
class ClientContext;
}

namespace tucker_seg::client {

struct ConnectionOptions {
  std::string target = "localhost:50051";  // host:port, or any gRPC target ("dns:///svc:50051")
  bool tls = false;
  std::string tls_root_certificates;        // PEM text; empty = the system's roots
  // mTLS: this client's certificate chain and private key (PEM text), for a server that
  // requires client certificates.
  std::string tls_certificate_chain, tls_private_key;
  std::string bearer_token;                 // sent as "authorization: Bearer <token>" on every call
  std::string load_balancing;               // e.g. "round_robin" over every address of a headless service
  // Per call. Retried on UNAVAILABLE (after the backoff) and on RESOURCE_EXHAUSTED when the
  // server says when to retry (grpc-retry-pushback-ms, honoured up to 60 s).
  int max_attempts = 3;
  double initial_backoff_seconds = 0.5;     // doubles per retry
};

struct SegmentProgress {
  enum class Stage { kSending, kHeaderAccepted, kQueued, kRunning, kReceiving, kDone };
  Stage stage = Stage::kSending;
  int64_t bytes_sent = 0, bytes_to_send = 0;
  int64_t bytes_received = 0, bytes_to_receive = 0;
  std::string variant;  // once the server has chosen
  int queue_position = 0;             // kQueued: 1 = next on its device
  double estimated_wait_seconds = 0;  // kQueued
  int64_t tiles_done = 0, tiles_total = 0;  // kRunning, once the network runs (tiles_total 0 before)
};

struct SegmentOptions {
  std::string model;            // empty: the server's only model
  std::string variant = "auto";
  double min_quality = 0;
  double timeout_seconds = 0;   // per attempt; 0 = no deadline
  std::string request_id;
  // Class names: the server computes only the tiles these need (a coarse pass finds them); other
  // classes in the result may be partial, so callers keep only these (the CLI does).
  std::vector<std::string> roi_subset;
  // The sliding window's step as a fraction of the patch (TotalSegmentator: 0.8); 0: the server's.
  double step = 0;
  int64_t chunk_bytes = 2 << 20;
  // INT16 halves the bytes for integer-valued CTs (the usual case); FLOAT32 keeps any value.
  tuckerseg::v1::VoxelType voxel_type = tuckerseg::v1::VOXEL_TYPE_INT16;
  std::function<void(const SegmentProgress&)> on_progress;
};

struct SegmentResult {
  LabelMap labels;  // the input's geometry
  std::vector<std::pair<int64_t, std::string>> label_table;
  std::string model, variant, selection_reason, selection_detail, device, request_id;
  std::optional<double> variant_quality;  // the variant's mean agreement Dice with the original, when known
  double step = 0;                        // the sliding window's step the server used (0: a server that does not say)
  tuckerseg::v1::Timings timings;
  int attempts = 0;
};

class SegmentationClient {
 public:
  static Result<std::unique_ptr<SegmentationClient>> Connect(const ConnectionOptions& options);
  ~SegmentationClient();

  Result<SegmentResult> Segment(const CtVolume& ct, const SegmentOptions& options) const;
  Result<tuckerseg::v1::ListModelsResponse> ListModels(double timeout_seconds = 30) const;
  Result<tuckerseg::v1::DescribeModelResponse> DescribeModel(const std::string& model, double timeout_seconds = 30) const;
  // grpc.health.v1: true once `service` ("" = the whole server) is SERVING. Waits up to
  // `wait_seconds` for that (a Watch stream, so no polling); false when it is not by then.
  Result<bool> WaitUntilServing(const std::string& service, double wait_seconds) const;

 private:
  struct Impl;
  explicit SegmentationClient(std::unique_ptr<Impl> impl);
  // `pushback_ms`: the server's retry hint on RESOURCE_EXHAUSTED, -1 when it gave none.
  Result<SegmentResult> SegmentOnce(const CtVolume& ct, const std::string& voxels, const SegmentOptions& options, int64_t* pushback_ms) const;
  void Prepare(grpc::ClientContext* context, double timeout_seconds) const;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tucker_seg::client
