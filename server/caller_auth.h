// Bearer tokens (--auth-tokens FILE): Segment, ListModels and DescribeModel need the metadata
// "authorization: Bearer <token>" with one of the file's tokens, UNAUTHENTICATED otherwise.
// gRPC health stays open (probes and load balancers carry no token). The file holds one token
// per line; blank lines and lines starting with '#' are skipped. Tokens never reach a log line.
#pragma once

#include <string>
#include <vector>

#include <grpcpp/server_context.h>

#include "vocabulary/status.h"

namespace tucker_seg::server {

class CallerAuth {
 public:
  // No file: every caller is let in.
  static Result<CallerAuth> Load(const std::string& tokens_file);
  bool enabled() const { return !tokens_.empty(); }
  Status Check(const grpc::ServerContext& context) const;

 private:
  std::vector<std::string> tokens_;
};

}  // namespace tucker_seg::server
