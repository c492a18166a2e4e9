// The one place where model_store/server statuses become gRPC statuses (the codes are equal).
#pragma once

#include <string>

#include <grpcpp/support/status.h>

#include "vocabulary/status.h"

namespace tucker_seg::server {

inline grpc::Status ToGrpc(const Status& s) {
  return s.ok() ? grpc::Status::OK : grpc::Status(static_cast<grpc::StatusCode>(s.code()), s.message());
}

}  // namespace tucker_seg::server
