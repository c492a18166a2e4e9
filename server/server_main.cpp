// tucker-seg-server: flags (each with an environment variable for containers) -> ServerOptions.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>

#include "model_store/runtime.h"
#include "server/server.h"

namespace {

using tucker_seg::server::ServerOptions;

struct Flag {
  const char* env;
  const char* help;
  std::function<bool(const std::string&)> set;
};

bool ParseDouble(const std::string& s, double* out) {
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return !s.empty() && end && *end == '\0';
}

bool ParseInt(const std::string& s, int64_t* out) {
  char* end = nullptr;
  *out = std::strtoll(s.c_str(), &end, 10);
  return !s.empty() && end && *end == '\0';
}

std::map<std::string, Flag> Flags(ServerOptions* o) {
  auto integer = [](auto* field) {
    return [field](const std::string& s) {
      int64_t v;
      if (!ParseInt(s, &v)) return false;
      *field = static_cast<std::remove_pointer_t<decltype(field)>>(v);
      return true;
    };
  };
  auto real = [](double* field) { return [field](const std::string& s) { return ParseDouble(s, field); }; };
  auto text = [](std::string* field) { return [field](const std::string& s) { *field = s; return !s.empty(); }; };
  return {
      {"--model-store", {"TUCKER_SEG_MODEL_STORE", "folder of model folders, or one model folder (default: models)", text(&o->model_store)}},
      {"--listen", {"TUCKER_SEG_LISTEN", "gRPC address (default: 0.0.0.0:50051)", text(&o->listen)}},
      {"--metrics-listen", {"TUCKER_SEG_METRICS_LISTEN", "Prometheus /metrics address (default: 0.0.0.0:9090)", text(&o->metrics_listen)}},
      {"--workers", {"TUCKER_SEG_WORKERS", "requests running at once (default: 1)", integer(&o->workers)}},
      {"--threads", {"TUCKER_SEG_THREADS", "LibTorch intra-op threads, 0 = all cores (default: 0)", integer(&o->threads)}},
      {"--max-queue", {"TUCKER_SEG_MAX_QUEUE", "requests waiting for a worker before RESOURCE_EXHAUSTED (default: 8)", integer(&o->max_queue)}},
      {"--latency-target", {"TUCKER_SEG_LATENCY_TARGET", "seconds a request should take; auto selection keeps to it (default: 0 = none)", real(&o->latency_target_seconds)}},
      {"--hysteresis", {"TUCKER_SEG_HYSTERESIS", "headroom needed to move back to a more accurate variant (default: 0.2)", real(&o->hysteresis)}},
      {"--max-voxels", {"TUCKER_SEG_MAX_VOXELS", "largest volume accepted (default: 262144000)", integer(&o->limits.max_voxels)}},
      {"--max-bytes", {"TUCKER_SEG_MAX_BYTES", "largest voxel payload accepted (default: 1073741824)", integer(&o->limits.max_bytes)}},
      {"--max-streams", {"TUCKER_SEG_MAX_STREAMS", "Segment streams open at once (default: 16)", integer(&o->limits.max_streams)}},
      {"--calibration-repeats", {"TUCKER_SEG_CALIBRATION_REPEATS", "timed runs per variant at start (default: 3)", integer(&o->calibration.repeats)}},
      {"--tls-cert", {"TUCKER_SEG_TLS_CERT", "PEM certificate chain: serve gRPC over TLS (with --tls-key)", text(&o->tls_cert_file)}},
      {"--tls-key", {"TUCKER_SEG_TLS_KEY", "PEM private key for --tls-cert", text(&o->tls_key_file)}},
      {"--drain-seconds", {"TUCKER_SEG_DRAIN_SECONDS", "on SIGTERM, time open requests get to finish (default: 30)", real(&o->drain_seconds)}},
  };
}

void Usage(const std::map<std::string, Flag>& flags) {
  std::fprintf(stderr, "usage: tucker-seg-server [flags]\n");
  for (const auto& [name, flag] : flags) std::fprintf(stderr, "  %-22s %-32s %s\n", name.c_str(), flag.env, flag.help);
}

}  // namespace

int main(int argc, char** argv) {
  tucker_seg::TuneAllocatorForTensors();
  ServerOptions options;
  const auto flags = Flags(&options);
  for (const auto& [name, flag] : flags) {
    if (const char* value = std::getenv(flag.env); value && *value && !flag.set(value)) {
      std::fprintf(stderr, "error: %s='%s' is not valid\n", flag.env, value);
      return 2;
    }
  }
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "--help" || arg == "-h") return Usage(flags), 0;
    if (const auto eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    }
    const auto it = flags.find(arg);
    if (it == flags.end()) {
      std::fprintf(stderr, "error: unknown flag %s\n", arg.c_str());
      return Usage(flags), 2;
    }
    if (!it->second.set(value)) {
      std::fprintf(stderr, "error: %s '%s' is not valid\n", arg.c_str(), value.c_str());
      return 2;
    }
  }

  // SIGINT/SIGTERM are taken by sigwait below, in this thread, after the server has started.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = tucker_seg::server::SegmentationServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "error: %s\n", server.status().message().c_str());
    return 1;
  }
  const auto& state = server.value()->state();
  std::printf("listening on port %d (gRPC), metrics on port %d; device %s; %zu model(s); calibrating\n", server.value()->port(),
              server.value()->metrics_port(), state.device.Label().c_str(), state.models.size());
  std::fflush(stdout);
  int signal = 0;
  sigwait(&signals, &signal);
  std::fprintf(stderr, "signal %d: draining\n", signal);
  server.value()->Shutdown();
  return 0;
}
