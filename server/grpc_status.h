// The one place where model_store/server statuses become gRPC statuses (the codes are equal).
#pragma once

#include <string>

#include <grpcpp/support/status.h>

#include "vocabulary/status.h"

namespace tucker_seg::server {

inline grpc::Status ToGrpc(const Status& s) {
  return s.ok() ? grpc::Status::OK : grpc::Status(static_cast<grpc::StatusCode>(s.code()), s.message());
}

// The status name as a metric label and in logs: "OK", "INVALID_ARGUMENT", ...
inline std::string StatusName(StatusCode code) {
  switch (static_cast<int>(code)) {
    case 0: return "OK";
    case 1: return "CANCELLED";
    case 2: return "UNKNOWN";
    case 3: return "INVALID_ARGUMENT";
    case 4: return "DEADLINE_EXCEEDED";
    case 5: return "NOT_FOUND";
    case 8: return "RESOURCE_EXHAUSTED";
    case 9: return "FAILED_PRECONDITION";
    case 12: return "UNIMPLEMENTED";
    case 13: return "INTERNAL";
    case 14: return "UNAVAILABLE";
    case 15: return "DATA_LOSS";
    case 16: return "UNAUTHENTICATED";
    default: return "CODE_" + std::to_string(static_cast<int>(code));
  }
}

}  // namespace tucker_seg::server
