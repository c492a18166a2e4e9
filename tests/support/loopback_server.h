// Options for a tucker-seg-server inside a test process: the bundled model store, any free
// gRPC and metrics ports on loopback, 2 threads, one calibration run per variant.
#pragma once

#include "server/server.h"
#include "test_paths.h"

namespace tucker_seg::testing {

inline server::ServerOptions LoopbackServerOptions() {
  server::ServerOptions o;
  o.model_store = (SourceDir() / "models").string();
  o.listen = "127.0.0.1:0";
  o.metrics_listen = "127.0.0.1:0";
  o.threads = 2;
  o.calibration.repeats = 1;
  return o;
}

}  // namespace tucker_seg::testing
