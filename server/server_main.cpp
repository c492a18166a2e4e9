// tucker-seg-server: flags -> ServerOptions -> a running server until SIGINT/SIGTERM; SIGHUP
// reloads the model store.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "model_store/network/runtime.h"
#include "vocabulary/log.h"
#include "server/server.h"
#include "server/server_flags.h"

int main(int argc, char** argv) {
  tucker_seg::TuneAllocatorForTensors();
  tucker_seg::server::ServerOptions options;
  CLI::App app{"Serves the models of a model store over gRPC (tuckerseg.v1) with Prometheus metrics."};
  tucker_seg::command_line::Configure(app, "tucker-seg-server");
  tucker_seg::server::AddServerFlags(app, &options);
  if (auto exit_code = tucker_seg::command_line::Parse(app, std::vector<std::string>(argv + 1, argv + argc), std::cout, std::cerr)) {
    return *exit_code;
  }

  // SIGINT/SIGTERM/SIGHUP are taken by sigwait below, in this thread, after the server has started.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = tucker_seg::server::SegmentationServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "error: %s\n", server.status().message().c_str());
    return tucker_seg::command_line::kExitFailure;
  }
  const auto& state = server.value()->state();
  std::string devices;
  for (const auto& d : state.devices) devices += (devices.empty() ? "" : ", ") + d->profile.Label();
  std::printf("%s listening on port %d (gRPC), metrics on port %d; devices %s; %zu model(s); calibrating\n",
              tucker_seg::command_line::VersionLine("tucker-seg-server").c_str(), server.value()->port(), server.value()->metrics_port(),
              devices.c_str(), state.devices[0]->catalog.Get()->models.size());
  std::fflush(stdout);
  int signal = 0;
  for (sigwait(&signals, &signal); signal == SIGHUP; sigwait(&signals, &signal)) {
    tucker_seg::Log("signal %d: reloading the model store", signal);
    server.value()->StartReload();
  }
  tucker_seg::Log("signal %d: draining", signal);
  server.value()->Shutdown();
  return 0;
}
