// The server's Prometheus metrics (prometheus-cpp registry), served on their own port at /metrics.
// Names follow Prometheus conventions: base units, counters end in _total; the request, stage,
// selection, calibration and queue families carry the `device` label of the device where the
// work ran ("none" for requests refused before a device was chosen).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "model_store/inference/prediction_timings.h"
#include "server/serving/device_probe.h"
#include "server/serving/metrics_endpoint.h"
#include "vocabulary/status.h"

namespace tucker_seg::server {

class ServerMetrics {
 public:
  explicit ServerMetrics(const std::vector<DeviceProfile>& devices);
  ~ServerMetrics();

  // Starts the HTTP endpoint ("host:port"; port 0 picks a free one); `ready` answers /readyz.
  Status Serve(const std::string& listen, MetricsEndpoint::Ready ready);
  int port() const;

  void RequestFinished(const std::string& device, const std::string& model, const std::string& variant, const std::string& status,
                       double seconds);
  // A request that had a budget (latency target or deadline): whether it was answered within it.
  void Budgeted(const std::string& device, const std::string& model, const std::string& variant, bool within);
  void Served(const std::string& device, const std::string& model, const std::string& variant, int64_t voxels,
              double queue_wait_seconds, const PredictionTimings& timings);
  void Selected(const std::string& device, const std::string& model, const std::string& variant, const std::string& reason);
  // A request that ran between the steps of another one on the same worker (scheduler.h).
  void Interleaved(const std::string& device, const std::string& model) { interleaved_.Add({{"device", device}, {"model", model}}).Increment(); }
  void Calibrated(const std::string& device, const std::string& model, const std::string& variant, double seconds_per_tile,
                  bool selectable);
  void SetQueueDepth(const std::string& device, int depth) { queue_depth_.Add({{"device", device}}).Set(depth); }
  // Admitted requests (header valid, memory reserved) until their result is sent: what the
  // autoscaler reads. Streams refused or still sending a header are not in it.
  prometheus::Gauge& in_flight() { return in_flight_; }
  prometheus::Gauge& open_streams() { return open_streams_; }
  prometheus::Gauge& memory_reserved_bytes() { return memory_reserved_; }

 private:
  class GpuCollector;
  class ProcessCollector;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<GpuCollector> gpu_;
  std::shared_ptr<ProcessCollector> process_;
  std::unique_ptr<MetricsEndpoint> endpoint_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_seconds_;
  prometheus::Family<prometheus::Histogram>& queue_wait_seconds_;
  prometheus::Family<prometheus::Counter>& voxels_;
  prometheus::Family<prometheus::Histogram>& stage_seconds_;
  prometheus::Family<prometheus::Counter>& selections_;
  prometheus::Family<prometheus::Counter>& budgeted_;
  prometheus::Family<prometheus::Counter>& interleaved_;
  prometheus::Family<prometheus::Gauge>& variant_seconds_per_tile_;
  prometheus::Family<prometheus::Gauge>& variant_selectable_;
  prometheus::Family<prometheus::Gauge>& queue_depth_;
  prometheus::Gauge& in_flight_;
  prometheus::Gauge& open_streams_;
  prometheus::Gauge& memory_reserved_;
};

// Adds `amount` to a gauge for its own lifetime, whichever way the handler leaves.
class GaugeHold {
 public:
  explicit GaugeHold(prometheus::Gauge& gauge, double amount = 1) : gauge_(gauge), amount_(amount) { gauge_.Increment(amount_); }
  ~GaugeHold() { gauge_.Decrement(amount_); }
  GaugeHold(const GaugeHold&) = delete;
  GaugeHold& operator=(const GaugeHold&) = delete;

 private:
  prometheus::Gauge& gauge_;
  const double amount_;
};

}  // namespace tucker_seg::server
