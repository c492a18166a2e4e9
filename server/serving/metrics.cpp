#include "server/serving/metrics.h"

#include "command_line/command_line.h"

#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>

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

// The process's own CPU time and resident memory, read from /proc at scrape time (Prometheus's
// standard process_* names, which prometheus-cpp does not export itself).
class ServerMetrics::ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::ifstream stat("/proc/self/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto end_of_name = text.rfind(')');  // the command name may hold spaces
    if (end_of_name == std::string::npos) return {};
    std::istringstream fields(text.substr(end_of_name + 2));
    std::vector<std::string> f((std::istream_iterator<std::string>(fields)), std::istream_iterator<std::string>());
    if (f.size() < 22) return {};
    // Fields after the name, from state (field 3 of proc(5)): utime is 14, stime 15, starttime 22, rss 24.
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double cpu = (std::stod(f[11]) + std::stod(f[12])) / ticks;
    const double rss = std::stod(f[21]) * static_cast<double>(sysconf(_SC_PAGESIZE));
    prometheus::MetricFamily cpu_family{"process_cpu_seconds_total", "User and system CPU time of the server process",
                                        prometheus::MetricType::Counter, {}};
    prometheus::MetricFamily rss_family{"process_resident_memory_bytes", "Resident memory of the server process",
                                        prometheus::MetricType::Gauge, {}};
    prometheus::ClientMetric m;
    m.counter.value = cpu;
    cpu_family.metric.push_back(m);
    m = {};
    m.gauge.value = rss;
    rss_family.metric.push_back(m);
    return {cpu_family, rss_family};
  }
};

ServerMetrics::ServerMetrics(const std::vector<DeviceProfile>& devices)
    : registry_(std::make_shared<prometheus::Registry>()),
      gpu_(std::make_shared<GpuCollector>()),
      process_(std::make_shared<ProcessCollector>()),
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
      budgeted_(prometheus::BuildCounter().Name("tuckerseg_budgeted_requests_total")
                    .Help("Requests with a latency target or deadline, by outcome: within (answered OK in time) or over; "
                          "SLO attainment is within / (within + over)")
                    .Register(*registry_)),
      interleaved_(prometheus::BuildCounter().Name("tuckerseg_interleaved_requests_total")
                       .Help("Requests run between the steps (preprocessing slabs, tiles, exported slices) of a longer one on the same worker, "
                             "because waiting for it would have made them late")
                       .Register(*registry_)),
      variant_seconds_per_tile_(prometheus::BuildGauge().Name("tuckerseg_variant_calibrated_seconds_per_tile")
                                    .Help("One sliding-window tile, measured at start on this device")
                                    .Register(*registry_)),
      variant_selectable_(prometheus::BuildGauge().Name("tuckerseg_variant_selectable")
                              .Help("1 when auto selection may pick the variant on this device")
                              .Register(*registry_)),
      queue_depth_(prometheus::BuildGauge().Name("tuckerseg_queue_depth").Help("Requests waiting for a worker of the device")
                       .Register(*registry_)),
      in_flight_(prometheus::BuildGauge().Name("tuckerseg_in_flight_requests")
                     .Help("Segment requests admitted (header valid, memory reserved) and not yet answered")
                     .Register(*registry_).Add({})),
      open_streams_(prometheus::BuildGauge().Name("tuckerseg_open_streams").Help("Segment streams open now, admitted or not")
                        .Register(*registry_).Add({})),
      memory_reserved_(prometheus::BuildGauge().Name("tuckerseg_memory_reserved_bytes")
                           .Help("Bytes of the memory budget that admitted requests hold now")
                           .Register(*registry_).Add({})) {
  prometheus::BuildGauge().Name("tuckerseg_build_info").Help("The server's version and commit (value 1)").Register(*registry_)
      .Add({{"version", command_line::ProjectVersion()}, {"commit", command_line::GitCommit()}})
      .Set(1);
  auto& info = prometheus::BuildGauge().Name("tuckerseg_device_info").Help("The devices this server runs inference on (value 1)").Register(*registry_);
  for (const auto& device : devices) {
    info.Add({{"device", device.Label()}, {"kind", device.kind}, {"name", device.name}, {"cores", std::to_string(device.cores)}}).Set(1);
    queue_depth_.Add({{"device", device.Label()}}).Set(0);
  }
}

ServerMetrics::~ServerMetrics() = default;

Status ServerMetrics::Serve(const std::string& listen, MetricsEndpoint::Ready ready) {
  auto endpoint = MetricsEndpoint::Start(
      listen,
      [this] {
    auto families = registry_->Collect();
    for (auto& f : gpu_->Collect()) families.push_back(std::move(f));
    for (auto& f : process_->Collect()) families.push_back(std::move(f));
    return prometheus::TextSerializer().Serialize(families);
      },
      std::move(ready));
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

void ServerMetrics::Budgeted(const std::string& device, const std::string& model, const std::string& variant, bool within) {
  budgeted_.Add({{"device", device}, {"model", model}, {"variant", variant}, {"outcome", within ? "within" : "over"}}).Increment();
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
