#include "server/server.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <thread>

#include <ATen/Parallel.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/server_builder.h>

#include "model_store/network/device.h"
#include "model_store/network/runtime.h"
#include "vocabulary/log.h"
#include "vocabulary/pem_file.h"

namespace tucker_seg::server {

constexpr char kServiceName[] = "tuckerseg.v1.Segmentation";

namespace {

// Linking libgrpc++_reflection registers its plugin with every ServerBuilder from a static
// initialiser, whether or not InitProtoReflectionServerBuilderPlugin is ever called: without
// --reflection this option takes it out again.
class WithoutReflection : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->erase(std::remove_if(plugins->begin(), plugins->end(),
                                  [](const auto& p) { return dynamic_cast<grpc::reflection::ProtoServerReflectionPlugin*>(p.get()) != nullptr; }),
                   plugins->end());
  }
};

// The port's credentials; with bearer tokens, their check runs at the transport for every call.
Result<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const ServerOptions& o, const CallerAuth& auth) {
  if (o.tls_cert_file.empty() && !o.tls_client_ca_file.empty()) return InvalidArgument("tls_client_ca needs tls_cert and tls_key (mTLS is TLS)");
  if (o.tls_cert_file.empty() && auth.enabled()) {
    return InvalidArgument("auth_tokens needs tls_cert and tls_key: a bearer token sent in plaintext is readable on the way, "
                           "and gRPC checks tokens at the transport on TLS ports only");
  }
  if (o.tls_cert_file.empty() && o.tls_key_file.empty()) return grpc::InsecureServerCredentials();
  if (o.tls_cert_file.empty() || o.tls_key_file.empty()) return InvalidArgument("tls_cert and tls_key must be given together");
  auto cert = ReadPemFile(o.tls_cert_file, "tls_cert");
  if (!cert.ok()) return cert.status();
  auto key = ReadPemFile(o.tls_key_file, "tls_key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({key.value(), cert.value()});
  if (!o.tls_client_ca_file.empty()) {
    auto ca = ReadPemFile(o.tls_client_ca_file, "tls_client_ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = ca.value();
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  auto credentials = grpc::SslServerCredentials(ssl);
  if (auth.enabled()) credentials->SetAuthMetadataProcessor(auth.Processor());
  return credentials;
}

}  // namespace

Result<std::unique_ptr<SegmentationServer>> SegmentationServer::Start(const ServerOptions& options) {
  if (options.workers < 1 || options.workers > 64) return InvalidArgument("workers must be 1..64, got " + std::to_string(options.workers));
  if (options.threads < 0) return InvalidArgument("threads must be >= 0, got " + std::to_string(options.threads));
  if (options.max_queue < 0) return InvalidArgument("max_queue must be >= 0");
  if (options.limits.max_streams < 1) return InvalidArgument("max_streams must be >= 1");
  if (!(options.latency_target_seconds >= 0)) return InvalidArgument("latency_target must be >= 0 seconds");
  // Debian's LibTorch starts with one intra-op thread; 0 means every core.
  at::set_num_threads(options.threads > 0 ? options.threads : UsableCpus());

  if (!(options.stream_idle_timeout_seconds >= 0)) return InvalidArgument("stream_idle_timeout must be >= 0 seconds");
  if (!(options.keepalive_seconds >= 1)) return InvalidArgument("keepalive must be >= 1 second");
  if (!(options.max_connection_age_seconds >= 0)) return InvalidArgument("max_connection_age must be >= 0 seconds");
  if (options.memory_budget_bytes < 0) return InvalidArgument("memory_budget must be >= 0 bytes");
  if (options.limits.max_grid_voxels < 1 || options.limits.max_tiles < 1) return InvalidArgument("max_grid_voxels and max_tiles must be >= 1");
  TS_ASSIGN_OR_RETURN(const LogFormat log_format, ParseLogFormat(options.log_format));
  SetLogFormat(log_format);
  std::unique_ptr<SegmentationServer> s(new SegmentationServer());
  TS_ASSIGN_OR_RETURN(s->auth_, CallerAuth::Load(options.auth_tokens_file));
  auto credentials = ServerCredentials(options, s->auth_);
  if (!credentials.ok()) return credentials.status();
  TS_ASSIGN_OR_RETURN(const std::vector<DeviceProfile> profiles, ProbeDevices(options.devices, at::get_num_threads()));
  TS_ASSIGN_OR_RETURN(const Precision gpu_precision, ParsePrecision(options.gpu_precision));
  TS_ASSIGN_OR_RETURN(ModelCatalog loaded, LoadModelPool(options.model_store));
  Log("model store %s loaded; %s, %s, reflection %s", options.model_store.c_str(),
      options.tls_cert_file.empty() ? "plaintext gRPC" : options.tls_client_ca_file.empty() ? "TLS" : "mutual TLS",
      s->auth_.enabled() ? "bearer tokens required" : "no caller authentication", options.reflection ? "on" : "off");
  LogUnavailable(loaded);
  s->model_store_ = options.model_store;
  s->calibration_options_ = options.calibration;
  const auto catalog = std::make_shared<const ModelCatalog>(std::move(loaded));
  for (const auto& profile : profiles) {
    auto device = std::make_unique<ServedDevice>();
    device->profile = profile;
    device->device = ParseDevice(profile.spec).value();  // ProbeDevices checked it
    device->catalog.Publish(catalog);  // on the CPU and uncalibrated until CalibrateAll places it
    const int workers = device->device.is_cuda() ? 1 : options.workers;
    device->scheduler = std::make_unique<Scheduler>(SchedulerOptions{workers, options.max_queue});
    s->state_.devices.push_back(std::move(device));
  }
  s->gpu_dtype_ = ScalarTypeOf(gpu_precision);
  s->nvml_ = Nvml::Open();
  s->state_.nvml = s->nvml_.get();
  s->state_.limits = options.limits;
  s->drain_seconds_ = options.drain_seconds;
  s->selector_ = std::make_unique<VariantSelector>(SelectorOptions{options.latency_target_seconds});
  s->metrics_ = std::make_unique<ServerMetrics>(profiles);
  TS_RETURN_IF_ERROR(s->metrics_->Serve(options.metrics_listen, [state = &s->state_] { return state->ready.load(); }));
  s->memory_budget_ = std::make_unique<MemoryBudget>(options.memory_budget_bytes > 0 ? options.memory_budget_bytes : DefaultMemoryBudget());
  s->watchdog_ = std::make_unique<StreamWatchdog>(options.stream_idle_timeout_seconds, *options.stream_idle_clock);
  s->state_.selector = s->selector_.get();
  s->state_.metrics = s->metrics_.get();
  s->state_.memory_budget = s->memory_budget_.get();
  s->service_ = std::make_unique<SegmentationService>(&s->state_, s->watchdog_.get());

  grpc::EnableDefaultHealthCheckService(true);
  if (options.reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (!options.reflection) builder.SetOption(std::make_unique<WithoutReflection>());
  const auto ms = [](double seconds) { return static_cast<int>(std::min(seconds * 1000, 2e9)); };
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ms(options.keepalive_seconds));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ms(std::min(20.0, options.keepalive_seconds)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Clients may ping as often as every 10 s without being told off (GOAWAY too_many_pings).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  if (options.max_connection_age_seconds > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, ms(options.max_connection_age_seconds));
    // A Segment call already under way gets the drain time to finish on the old connection.
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, ms(std::max(options.drain_seconds, 60.0)));
  }
  builder.AddListeningPort(options.listen, credentials.value(), &s->port_);
  builder.RegisterService(s->service_.get());
  // Chunks are a few MiB; anything far larger is a misbehaving client.
  builder.SetMaxReceiveMessageSize(16 << 20);
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) return Unavailable("cannot listen on " + options.listen);
  auto* health = s->server_->GetHealthCheckService();
  health->SetServingStatus("", false);
  health->SetServingStatus(kServiceName, false);
  s->calibration_ = std::thread(&SegmentationServer::CalibrateAll, s.get(), options.calibration);
  return s;
}

void SegmentationServer::LogUnavailable(const ModelCatalog& catalog) {
  for (const auto& [dir, why] : catalog.unavailable_models) Log(LogLevel::kWarning, "model folder %s is unavailable: %s", dir.c_str(), why.c_str());
  for (const auto& m : catalog.models)
    for (const auto& [variant, why] : m.unavailable) Log(LogLevel::kWarning, "variant %s/%s is unavailable: %s", m.name.c_str(), variant.c_str(), why.c_str());
}

Result<ModelCatalog> SegmentationServer::CalibrateOnDevice(ServedDevice& device, const ModelCatalog& source, CalibrationOptions options) {
  const std::string label = device.profile.Label();
  const torch::ScalarType dtype = device.device.is_cuda() ? gpu_dtype_ : torch::kFloat32;
  // Networks are shared with the loaded catalog where they already live on this device.
  TS_ASSIGN_OR_RETURN(ModelCatalog placed, PlaceOnDevice(source, device.device, dtype, label));
  PrepareDevice(device.device);
  if (device.device.is_cuda() && nvml_) {
    options.memory_used = [this, index = device.profile.index]() -> std::optional<int64_t> {
      const auto sample = nvml_->Sample(index);
      return sample ? std::optional<int64_t>(sample->memory_used_bytes) : std::nullopt;
    };
  }
  for (auto& model : placed.models) {
    TS_RETURN_IF_ERROR(Calibrate(&model, options));
    for (const auto& v : model.variants) {
      metrics_->Calibrated(label, model.name, v.name, v.seconds_per_tile, v.selectable);
      Log("calibrated %s/%s on %s: %.4f s/tile, quality %s, %s", model.name.c_str(), v.name.c_str(), label.c_str(),
                   v.seconds_per_tile, v.quality ? std::to_string(*v.quality).c_str() : "unknown",
                   v.selectable ? "selectable" : ("not selectable: " + v.not_selectable_reason).c_str());
    }
  }
  placed.calibrated = true;
  return placed;
}

void SegmentationServer::CalibrateAll(CalibrationOptions options) {
  Status status;
  for (auto& device : state_.devices) {
    auto placed = CalibrateOnDevice(*device, *device->catalog.Get(), options);
    status = Annotate(placed.status(), device->profile.spec);
    if (!status.ok()) break;
    device->catalog.Publish(std::make_shared<const ModelCatalog>(std::move(placed.value())));
  }
  {
    absl::MutexLock lock(&mutex_);
    calibration_done_ = true;
    calibration_status_ = status;
    if (status.ok() && !shut_down_) {
      state_.ready.store(true);
      server_->GetHealthCheckService()->SetServingStatus("", true);
      server_->GetHealthCheckService()->SetServingStatus(kServiceName, true);
    }
    calibrated_.SignalAll();
  }
  if (status.ok()) {
    size_t models = 0;
    std::string devices;
    for (const auto& device : state_.devices) devices += (devices.empty() ? "" : ", ") + device->profile.Label();
    if (!state_.devices.empty()) models = state_.devices[0]->catalog.Get()->models.size();
    Log("serving: %zu model(s) on %s, health SERVING", models, devices.c_str());
  } else {
    Log(LogLevel::kError, "calibration failed, staying NOT_SERVING: %s", status.message().c_str());
  }
}

Status SegmentationServer::WaitUntilCalibrated() {
  absl::MutexLock lock(&mutex_);
  while (!calibration_done_) calibrated_.Wait(&mutex_);
  return calibration_status_;
}

void SegmentationServer::Shutdown() {
  {
    absl::MutexLock lock(&mutex_);
    if (shut_down_) return;
    shut_down_ = true;
    state_.ready.store(false);
  }
  if (calibration_.joinable()) calibration_.join();
  std::thread reload;
  {
    absl::MutexLock lock(&mutex_);
    reload = std::move(reload_thread_);
  }
  if (reload.joinable()) reload.join();
  if (!server_) return;  // Start failed before listening
  server_->GetHealthCheckService()->SetServingStatus("", false);
  server_->GetHealthCheckService()->SetServingStatus(kServiceName, false);
  // Open calls finish (their queued work still runs); new calls are refused. Calls still open
  // after the drain time are cancelled.
  const auto drain_start = std::chrono::steady_clock::now();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(drain_seconds_ * 1000)));
  for (auto& device : state_.devices) device->scheduler->Shutdown();
  Log("drained in %.2f s: open calls finished, workers stopped",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - drain_start).count());
}

Status SegmentationServer::Reload() {
  if (!WaitUntilCalibrated().ok()) return FailedPrecondition("reload: the first calibration failed; restart instead");
  absl::MutexLock reloading(&reload_mutex_);
  const auto start = std::chrono::steady_clock::now();
  auto loaded = LoadModelPool(model_store_);
  if (!loaded.ok()) {
    Log(LogLevel::kError, "reload failed, the old store keeps serving: %s", loaded.status().message().c_str());
    return loaded.status();
  }
  LogUnavailable(loaded.value());
  // Every device is calibrated before any is switched, so that a request never sees a model on
  // one device that another lacks.
  std::vector<std::shared_ptr<const ModelCatalog>> ready;
  for (auto& device : state_.devices) {
    auto placed = CalibrateOnDevice(*device, loaded.value(), calibration_options_);
    if (!placed.ok()) {
      Log(LogLevel::kError, "reload failed on %s, the old store keeps serving: %s", device->profile.Label().c_str(), placed.status().message().c_str());
      return Annotate(placed.status(), device->profile.spec);
    }
    ready.push_back(std::make_shared<const ModelCatalog>(std::move(placed.value())));
  }
  for (size_t d = 0; d < ready.size(); ++d) state_.devices[d]->catalog.Publish(ready[d]);
  size_t variants = 0;
  for (const auto& m : ready[0]->models) variants += m.variants.size();
  Log("reloaded %s in %.2f s: %zu model(s), %zu variant(s); calls under way finish on the old ones", model_store_.c_str(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), ready[0]->models.size(), variants);
  return Status::Ok();
}

void SegmentationServer::StartReload() {
  std::thread previous;
  {
    absl::MutexLock lock(&mutex_);
    previous = std::move(reload_thread_);
  }
  if (previous.joinable()) previous.join();  // outside the lock: the reload itself takes it
  absl::MutexLock lock(&mutex_);
  if (shut_down_ || reload_thread_.joinable()) return;
  reload_thread_ = std::thread([this] { (void)Reload(); });
}

SegmentationServer::~SegmentationServer() { Shutdown(); }

}  // namespace tucker_seg::server
