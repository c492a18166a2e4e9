#include "server/server_flags.h"

#include "server/serving/memory_budget.h"

namespace tucker_seg::server {

void AddServerFlags(CLI::App& app, ServerOptions* o) {
  auto add = [&app](const std::string& flag, auto* field, const std::string& env, const std::string& help) {
    return app.add_option(flag, *field, help)->envname(env)->capture_default_str();
  };
  add("--model-store", &o->model_store, "TUCKER_SEG_MODEL_STORE", "Folder of model folders, or one model folder");
  add("--listen", &o->listen, "TUCKER_SEG_LISTEN", "gRPC address");
  add("--metrics-listen", &o->metrics_listen, "TUCKER_SEG_METRICS_LISTEN", "Prometheus /metrics address");
  add("--devices", &o->devices, "TUCKER_SEG_DEVICES",
      "Where inference runs: auto (every CUDA device, then the CPU) or a list such as cpu,cuda:0");
  add("--gpu-precision", &o->gpu_precision, "TUCKER_SEG_GPU_PRECISION", "Precision of the networks on GPUs")
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}));
  add("--workers", &o->workers, "TUCKER_SEG_WORKERS", "CPU requests running at once (each GPU runs one at a time)")->check(CLI::Range(1, 64));
  add("--threads", &o->threads, "TUCKER_SEG_THREADS", "LibTorch intra-op threads, 0 = the CPUs this process may use (affinity and cgroup quota)")->check(CLI::Range(0, 1024));
  add("--max-queue", &o->max_queue, "TUCKER_SEG_MAX_QUEUE", "Requests waiting for a worker before RESOURCE_EXHAUSTED")
      ->check(CLI::Range(0, 100000));
  add("--latency-target", &o->latency_target_seconds, "TUCKER_SEG_LATENCY_TARGET",
      "Seconds a request should take; auto selection keeps it and the queue behind it to it (0 = none)")->check(CLI::NonNegativeNumber);
  add("--max-voxels", &o->limits.max_voxels, "TUCKER_SEG_MAX_VOXELS", "Largest volume accepted, in voxels")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  add("--max-bytes", &o->limits.max_bytes, "TUCKER_SEG_MAX_BYTES", "Largest voxel payload accepted, in bytes")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 42));
  add("--max-streams", &o->limits.max_streams, "TUCKER_SEG_MAX_STREAMS", "Segment streams open at once")->check(CLI::Range(1, 100000));
  add("--calibration-repeats", &o->calibration.repeats, "TUCKER_SEG_CALIBRATION_REPEATS", "Timed runs per variant at start")
      ->check(CLI::Range(1, 1000));
  add("--tls-cert", &o->tls_cert_file, "TUCKER_SEG_TLS_CERT", "PEM certificate chain: serve gRPC over TLS (with --tls-key)");
  add("--tls-key", &o->tls_key_file, "TUCKER_SEG_TLS_KEY", "PEM private key for --tls-cert");
  add("--tls-client-ca", &o->tls_client_ca_file, "TUCKER_SEG_TLS_CLIENT_CA",
      "PEM CA bundle: require and verify client certificates (mutual TLS; needs --tls-cert)");
  add("--auth-tokens", &o->auth_tokens_file, "TUCKER_SEG_AUTH_TOKENS",
      "File of bearer tokens, one per line: calls need 'authorization: Bearer <token>' (health stays open); needs --tls-cert/--tls-key");
  app.add_flag("--reflection", o->reflection, "Serve gRPC reflection (grpcurl without .proto files)")->envname("TUCKER_SEG_REFLECTION");
  app.add_option_function<std::string>(
         "--memory-budget",
         [o](const std::string& text) {
           auto bytes = ParseByteSize(text, "--memory-budget");
           if (!bytes.ok()) throw CLI::ValidationError(bytes.status().message());
           o->memory_budget_bytes = bytes.value();
         },
         "Memory admitted requests may reserve at once, e.g. 8G (0 = 60% of the cgroup's or machine's memory)")
      ->envname("TUCKER_SEG_MEMORY_BUDGET")
      ->default_str("0");
  add("--max-grid-voxels", &o->limits.max_grid_voxels, "TUCKER_SEG_MAX_GRID_VOXELS",
      "Largest network grid (the CT resampled to the model's spacing), in voxels")->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  add("--max-tiles", &o->limits.max_tiles, "TUCKER_SEG_MAX_TILES", "Most sliding-window tiles one model may run for a request")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  add("--stream-idle-timeout", &o->stream_idle_timeout_seconds, "TUCKER_SEG_STREAM_IDLE_TIMEOUT",
      "Seconds a Segment stream may wait on its client without a byte moving (0 = forever)")->check(CLI::NonNegativeNumber);
  add("--keepalive", &o->keepalive_seconds, "TUCKER_SEG_KEEPALIVE", "Seconds between HTTP/2 keepalive pings on idle connections")
      ->check(CLI::Range(1.0, 86400.0));
  add("--max-connection-age", &o->max_connection_age_seconds, "TUCKER_SEG_MAX_CONNECTION_AGE",
      "Seconds before a connection is asked to reconnect (GOAWAY; 0 = never)")->check(CLI::NonNegativeNumber);
  add("--log-format", &o->log_format, "TUCKER_SEG_LOG_FORMAT", "Log lines as text or as one JSON object each")
      ->check(CLI::IsMember({"text", "json"}));
  add("--drain-seconds", &o->drain_seconds, "TUCKER_SEG_DRAIN_SECONDS", "On SIGTERM, time open requests get to finish")
      ->check(CLI::NonNegativeNumber);
}

}  // namespace tucker_seg::server
