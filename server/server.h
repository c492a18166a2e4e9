// tucker-seg-server as a library: load the model store, listen (gRPC + metrics), calibrate in
// the background (health NOT_SERVING until done), serve, drain on shutdown.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include <grpcpp/server.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "server/caller_auth.h"
#include "server/segmentation_service.h"

namespace tucker_seg::server {

struct ServerOptions {
  std::string model_store = "models";
  std::string listen = "0.0.0.0:50051";
  std::string metrics_listen = "0.0.0.0:9180";
  int workers = 1;                 // CPU requests running at once (each GPU runs one at a time)
  std::string devices = "auto";    // "auto" (every CUDA device, then the CPU) or a list: "cpu", "cuda:0", "cpu,cuda:0"
  std::string gpu_precision = "fp32";  // fp32, fp16 or bf16 for the networks on GPUs
  int threads = 0;                 // LibTorch intra-op threads; 0 = UsableCpus() (affinity, cgroup quota)
  int max_queue = 8;
  double latency_target_seconds = 0;  // 0: none (auto picks the most accurate variant)
  double drain_seconds = 30;  // on shutdown, how long open calls may take to finish
  // TLS for the gRPC port: PEM files of the server's certificate chain and private key (both or
  // neither; without them the port is plaintext, for use behind a mesh or on loopback).
  std::string tls_cert_file, tls_key_file;
  // mTLS: a PEM bundle of the CAs whose client certificates are accepted; every caller must then
  // present one (needs tls_cert_file).
  std::string tls_client_ca_file;
  std::string auth_tokens_file;  // bearer tokens (CallerAuth); empty: no token needed
  bool reflection = false;       // gRPC server reflection (grpcurl without .proto files)
  std::string log_format = "text";  // or "json" (log.h)
  int64_t memory_budget_bytes = 0;  // 0: DefaultMemoryBudget()
  double stream_idle_timeout_seconds = 60;  // a stream that moves no bytes for this long is cancelled; 0: never
  const Clock* stream_idle_clock = &Clock::Real();  // what that timeout is measured on (tests advance a ManualClock)
  double keepalive_seconds = 60;            // HTTP/2 pings on idle connections (dead peers are dropped)
  double max_connection_age_seconds = 3600; // then GOAWAY (clients reconnect, load rebalances); 0: never
  ServiceLimits limits;
  CalibrationOptions calibration;
};

class SegmentationServer {
 public:
  static Result<std::unique_ptr<SegmentationServer>> Start(const ServerOptions& options);
  ~SegmentationServer();

  int port() const { return port_; }
  int metrics_port() const { return metrics_->port(); }
  const ServiceState& state() const { return state_; }
  StreamWatchdog& watchdog() { return *watchdog_; }
  // Blocks until calibration has finished; its status (health turns SERVING only on success).
  Status WaitUntilCalibrated() ABSL_LOCKS_EXCLUDED(mutex_);
  // Health NOT_SERVING, refuse new calls, let queued and running requests finish, stop.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mutex_);
  // Reads the model store again, places and calibrates it on every device, then swaps every
  // device's catalog at once (SIGHUP). Calls under way keep the catalog they started with (new
  // variants appear, removed ones drain); if the store cannot be loaded, the old one keeps serving.
  Status Reload() ABSL_LOCKS_EXCLUDED(mutex_, reload_mutex_);
  // Reload() on a background thread (for the signal loop); one at a time, joined by Shutdown.
  void StartReload() ABSL_LOCKS_EXCLUDED(mutex_, reload_mutex_);

 private:
  SegmentationServer() = default;
  // Calibrates a copy of the catalog, publishes it, then turns health SERVING.
  void CalibrateAll(CalibrationOptions options) ABSL_LOCKS_EXCLUDED(mutex_);
  // Places `source`'s models on one device and times every variant there.
  Result<ModelCatalog> CalibrateOnDevice(ServedDevice& device, const ModelCatalog& source, CalibrationOptions options);
  // Logs what could not be loaded.
  static void LogUnavailable(const ModelCatalog& catalog);

  ServiceState state_;
  std::unique_ptr<VariantSelector> selector_;
  std::unique_ptr<Nvml> nvml_;
  torch::ScalarType gpu_dtype_ = torch::kFloat32;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<MemoryBudget> memory_budget_;
  std::unique_ptr<StreamWatchdog> watchdog_;
  CallerAuth auth_;
  std::unique_ptr<SegmentationService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  double drain_seconds_ = 30;
  std::thread calibration_;
  std::string model_store_;
  CalibrationOptions calibration_options_;
  absl::Mutex reload_mutex_ ABSL_ACQUIRED_AFTER(mutex_);  // one Reload at a time
  std::thread reload_thread_ ABSL_GUARDED_BY(mutex_);
  absl::Mutex mutex_;
  absl::CondVar calibrated_;
  bool calibration_done_ ABSL_GUARDED_BY(mutex_) = false;
  Status calibration_status_ ABSL_GUARDED_BY(mutex_);
  bool shut_down_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace tucker_seg::server
