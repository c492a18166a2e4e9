#include "server/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/text_serializer.h>

namespace tucker_seg::server {
namespace {

const prometheus::Histogram::BucketBoundaries kLatencyBuckets{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300};

}  // namespace

// GPU utilisation and memory, sampled through NVML at scrape time (absent without NVML).
class ServerMetrics::GpuCollector : public prometheus::Collectable {
 public:
  GpuCollector() : nvml_(Nvml::Open()) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    if (!nvml_) return {};
    prometheus::MetricFamily util{"tuckerseg_gpu_utilization_ratio", "GPU busy fraction (NVML)", prometheus::MetricType::Gauge, {}};
    prometheus::MetricFamily used{"tuckerseg_gpu_memory_used_bytes", "GPU memory in use (NVML)", prometheus::MetricType::Gauge, {}};
    prometheus::MetricFamily total{"tuckerseg_gpu_memory_total_bytes", "GPU memory (NVML)", prometheus::MetricType::Gauge, {}};
    for (int i = 0; i < nvml_->device_count(); ++i) {
      const auto sample = nvml_->Sample(i);
      if (!sample) continue;
      const std::vector<prometheus::ClientMetric::Label> labels{{"device", "cuda:" + std::to_string(i) + ":" + nvml_->DeviceName(i)},
                                                                {"gpu", std::to_string(i)}};
      prometheus::ClientMetric m;
      m.label = labels;
      m.gauge.value = sample->utilization;
      util.metric.push_back(m);
      m.gauge.value = static_cast<double>(sample->memory_used_bytes);
      used.metric.push_back(m);
      m.gauge.value = static_cast<double>(sample->memory_total_bytes);
      total.metric.push_back(m);
    }
    return {util, used, total};
  }

 private:
  std::unique_ptr<Nvml> nvml_;
};

ServerMetrics::ServerMetrics(const std::vector<DeviceProfile>& devices)
    : registry_(std::make_shared<prometheus::Registry>()),
      gpu_(std::make_shared<GpuCollector>()),
      requests_(prometheus::BuildCounter().Name("tuckerseg_requests_total").Help("Segment requests by outcome (gRPC status code name)")
                    .Register(*registry_)),
      request_seconds_(prometheus::BuildHistogram().Name("tuckerseg_request_duration_seconds")
                           .Help("Segment requests, header received to last label chunk sent")
                           .Register(*registry_)),
      queue_wait_seconds_(prometheus::BuildHistogram().Name("tuckerseg_queue_wait_seconds").Help("Time admitted requests waited for a worker")
                              .Register(*registry_)),
      voxels_(prometheus::BuildCounter().Name("tuckerseg_voxels_processed_total").Help("Input voxels segmented successfully")
                  .Register(*registry_)),
      stage_seconds_(prometheus::BuildHistogram().Name("tuckerseg_inference_stage_seconds")
                         .Help("Seconds per inference stage (preprocess, network, aggregation, export)")
                         .Register(*registry_)),
      selections_(prometheus::BuildCounter().Name("tuckerseg_selections_total").Help("Variant choices by reason")
                      .Register(*registry_)),
      variant_seconds_per_tile_(prometheus::BuildGauge().Name("tuckerseg_variant_calibrated_seconds_per_tile")
                                    .Help("One sliding-window tile, measured at start on this device")
                                    .Register(*registry_)),
      variant_selectable_(prometheus::BuildGauge().Name("tuckerseg_variant_selectable")
                              .Help("1 when auto selection may pick the variant on this device")
                              .Register(*registry_)),
      queue_depth_(prometheus::BuildGauge().Name("tuckerseg_queue_depth").Help("Requests waiting for a worker of the device")
                       .Register(*registry_)),
      in_flight_(prometheus::BuildGauge().Name("tuckerseg_in_flight_requests").Help("Segment streams open now")
                     .Register(*registry_).Add({})) {
  auto& info = prometheus::BuildGauge().Name("tuckerseg_device_info").Help("The devices this server runs inference on (value 1)").Register(*registry_);
  for (const auto& device : devices) {
    info.Add({{"device", device.Label()}, {"kind", device.kind}, {"name", device.name}, {"cores", std::to_string(device.cores)}}).Set(1);
    queue_depth_.Add({{"device", device.Label()}}).Set(0);
  }
}

ServerMetrics::~ServerMetrics() = default;

Status ServerMetrics::Serve(const std::string& listen) {
  auto endpoint = MetricsEndpoint::Start(listen, [this] {
    auto families = registry_->Collect();
    for (auto& f : gpu_->Collect()) families.push_back(std::move(f));
    return prometheus::TextSerializer().Serialize(families);
  });
  if (!endpoint.ok()) return endpoint.status();
  endpoint_ = std::move(endpoint.value());
  return Status::Ok();
}

int ServerMetrics::port() const { return endpoint_ ? endpoint_->port() : 0; }

void ServerMetrics::RequestFinished(const std::string& device, const std::string& model, const std::string& variant,
                                    const std::string& status, double seconds) {
  requests_.Add({{"device", device}, {"model", model}, {"variant", variant}, {"status", status}}).Increment();
  request_seconds_.Add({{"device", device}, {"model", model}, {"variant", variant}}, kLatencyBuckets).Observe(seconds);
}

void ServerMetrics::Served(const std::string& device, const std::string& model, const std::string& variant, int64_t voxels,
                           double queue_wait_seconds, const PredictionTimings& t) {
  voxels_.Add({{"device", device}, {"model", model}, {"variant", variant}}).Increment(static_cast<double>(voxels));
  queue_wait_seconds_.Add({{"device", device}, {"model", model}, {"variant", variant}}, kLatencyBuckets).Observe(queue_wait_seconds);
  const std::pair<const char*, double> stages[] = {
      {"preprocess", t.preprocess_seconds}, {"network", t.network_seconds}, {"aggregation", t.aggregation_seconds}, {"export", t.export_seconds}};
  for (const auto& [stage, seconds] : stages)
    stage_seconds_.Add({{"device", device}, {"model", model}, {"variant", variant}, {"stage", stage}}, kLatencyBuckets).Observe(seconds);
}

void ServerMetrics::Selected(const std::string& device, const std::string& model, const std::string& variant, const std::string& reason) {
  selections_.Add({{"device", device}, {"model", model}, {"variant", variant}, {"reason", reason}}).Increment();
}

void ServerMetrics::Calibrated(const std::string& device, const std::string& model, const std::string& variant, double seconds_per_tile,
                               bool selectable) {
  variant_seconds_per_tile_.Add({{"device", device}, {"model", model}, {"variant", variant}}).Set(seconds_per_tile);
  variant_selectable_.Add({{"device", device}, {"model", model}, {"variant", variant}}).Set(selectable ? 1 : 0);
}

}  // namespace tucker_seg::server
