// Bearer tokens (--auth-tokens FILE), checked at the transport for every call: an
// AuthMetadataProcessor on the TLS port answers UNAUTHENTICATED before any handler runs unless
// the call carries "authorization: Bearer <token>" with one of the file's tokens, so a new RPC
// cannot forget the check. gRPC health stays open (probes and load balancers carry no token).
// Tokens need TLS: gRPC runs metadata processors on secure ports only (InsecureServerCredentials
// refuses one), and a token sent in plaintext is readable by anyone on the path.
// The file holds one token per line; blank lines and lines starting with '#' are skipped. Tokens
// never reach a log line.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/security/auth_metadata_processor.h>

#include "vocabulary/status.h"

namespace tucker_seg::server {

class CallerAuth {
 public:
  // No file: every caller is let in.
  static Result<CallerAuth> Load(const std::string& tokens_file);
  bool enabled() const { return !tokens_.empty(); }
  // Whether a call with this "authorization" metadata value may proceed (and why not).
  Status Check(const std::string* authorization) const;
  // The processor for the server's credentials; every call but health passes through Check.
  std::shared_ptr<grpc::AuthMetadataProcessor> Processor() const;

 private:
  std::vector<std::string> tokens_;
};

}  // namespace tucker_seg::server
