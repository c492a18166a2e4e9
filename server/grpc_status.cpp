#include "server/grpc_status.h"

#include <cctype>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace tucker_seg::server {

std::string FieldAtFault(const std::string& message) {
  size_t end = 0;
  while (end < message.size() && (std::islower(static_cast<unsigned char>(message[end])) || message[end] == '_' || message[end] == '.')) ++end;
  const std::string path = message.substr(0, end);
  const bool request_field = path == "header" || path == "voxels" || path.rfind("header.", 0) == 0;
  const bool followed_by_words = end < message.size() && (message[end] == ':' || message[end] == ' ');
  if (!request_field || !followed_by_words || path.back() == '.') return "";
  return path;
}

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(s.code());
  const std::string field = s.code() == StatusCode::kInvalidArgument ? FieldAtFault(s.message()) : "";
  if (field.empty()) return grpc::Status(code, s.message());
  std::string description = s.message().substr(field.size());
  description.erase(0, description.find_first_not_of(": "));
  google::rpc::BadRequest bad_request;
  auto* violation = bad_request.add_field_violations();
  violation->set_field(field);
  violation->set_description(description);
  google::rpc::Status details;
  details.set_code(static_cast<int>(code));
  details.set_message(s.message());
  details.add_details()->PackFrom(bad_request);
  return grpc::Status(code, s.message(), details.SerializeAsString());
}

}  // namespace tucker_seg::server
