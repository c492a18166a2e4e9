#include "server/caller_auth.h"

#include <fstream>

#include "server/grpc_status.h"

namespace tucker_seg::server {
namespace {

// Compares without an early exit, so that the time taken does not tell how much of a guess
// was right.
bool SameSecret(const std::string& a, const std::string& b) {
  unsigned char differ = a.size() == b.size() ? 0 : 1;
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) differ |= static_cast<unsigned char>(a[i] ^ b[i]);
  return differ == 0;
}

}  // namespace

Result<CallerAuth> CallerAuth::Load(const std::string& tokens_file) {
  CallerAuth auth;
  if (tokens_file.empty()) return auth;
  std::ifstream in(tokens_file);
  if (!in) return InvalidArgument("auth_tokens: cannot read '" + tokens_file + "'");
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    const size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    const std::string token = line.substr(start);
    if (token.size() < 16) return InvalidArgument("auth_tokens: a token in '" + tokens_file + "' is shorter than 16 characters");
    if (token.size() > 4096) return InvalidArgument("auth_tokens: a token in '" + tokens_file + "' is longer than 4096 characters");
    auth.tokens_.push_back(token);
  }
  if (auth.tokens_.empty()) return InvalidArgument("auth_tokens: '" + tokens_file + "' holds no token");
  return auth;
}

Status CallerAuth::Check(const std::string* authorization) const {
  if (tokens_.empty()) return Status::Ok();
  if (!authorization) return Unauthenticated("authorization: this server needs the metadata 'authorization: Bearer <token>'");
  constexpr char kScheme[] = "Bearer ";
  if (authorization->rfind(kScheme, 0) != 0) return Unauthenticated("authorization: the metadata must read 'Bearer <token>'");
  const std::string token = authorization->substr(sizeof kScheme - 1);
  bool accepted = false;
  for (const auto& t : tokens_) accepted |= SameSecret(token, t);
  if (!accepted) return Unauthenticated("authorization: the bearer token is not accepted");
  return Status::Ok();
}

namespace {

class BearerTokenProcessor final : public grpc::AuthMetadataProcessor {
 public:
  explicit BearerTokenProcessor(CallerAuth auth) : auth_(std::move(auth)) {}
  bool IsBlocking() const override { return false; }  // a few string compares: run inline
  grpc::Status Process(const InputMetadata& metadata, grpc::AuthContext*, OutputMetadata*, OutputMetadata*) override {
    const auto path = metadata.find(":path");
    if (path != metadata.end() && path->second.starts_with("/grpc.health.v1.Health/")) return grpc::Status::OK;
    const auto found = metadata.find("authorization");
    if (found == metadata.end()) return ToGrpc(auth_.Check(nullptr));
    const std::string value(found->second.data(), found->second.size());
    return ToGrpc(auth_.Check(&value));
  }

 private:
  const CallerAuth auth_;
};

}  // namespace

std::shared_ptr<grpc::AuthMetadataProcessor> CallerAuth::Processor() const { return std::make_shared<BearerTokenProcessor>(*this); }

}  // namespace tucker_seg::server
