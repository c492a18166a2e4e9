// The one place where model_store/server statuses become gRPC statuses (the codes are equal).
#pragma once

#include <string>

#include <grpcpp/support/status.h>

#include "vocabulary/status.h"

namespace tucker_seg::server {

// The request field an INVALID_ARGUMENT message is about, as its first words name it: the
// server's messages about a request start with the field's path ("header.step must be ...",
// "header.volume.size.x is 0, ...", "voxels: the stream ended ..."). Empty when they name none.
std::string FieldAtFault(const std::string& message);

// With a field at fault, the status also carries google.rpc.Status with a google.rpc.BadRequest
// field violation (gRPC sends it as the grpc-status-details-bin trailer), so that clients in any
// language can tell which field without parsing the message.
grpc::Status ToGrpc(const Status& s);

}  // namespace tucker_seg::server
