// A bare Segment caller for the server tests: sends a header and voxel chunks, collects the
// result. (The client library with retries and progress is the client issue's job.)
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "tuckerseg/v1/segmentation.grpc.pb.h"
#include "wire/volume_wire.h"

namespace tucker_seg::testing {

struct SegmentCall {
  grpc::Status status;
  tuckerseg::v1::ResultHeader header;
  std::string labels;
  int progress_messages = 0;
};

struct SegmentCallOptions {
  std::string model;
  std::string variant = "auto";
  double min_quality = 0;
  int64_t chunk_bytes = 1 << 20;
  tuckerseg::v1::VoxelType voxel_type = tuckerseg::v1::VOXEL_TYPE_INT16;
  // For bad-input cases: change the header or the bytes before sending.
  std::function<void(tuckerseg::v1::SegmentHeader*)> edit_header;
  std::function<void(std::string*)> edit_bytes;
  std::function<void(grpc::ClientContext*)> edit_context;
};

inline std::unique_ptr<tuckerseg::v1::Segmentation::Stub> Connect(int port) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  return tuckerseg::v1::Segmentation::NewStub(
      grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args));
}

// The first message of a Segment stream for `ct` (for tests that drive the stream by hand).
inline tuckerseg::v1::SegmentRequest HeaderRequest(const CtVolume& ct, const SegmentCallOptions& o = {}) {
  tuckerseg::v1::SegmentRequest request;
  auto* header = request.mutable_header();
  header->set_request_id("test");
  header->set_model(o.model);
  header->set_variant(o.variant);
  header->set_min_quality(o.min_quality);
  wire::ToWire(ct.geometry, o.voxel_type, header->mutable_volume());
  if (o.edit_header) o.edit_header(header);
  return request;
}

inline SegmentCall Segment(tuckerseg::v1::Segmentation::Stub& stub, const CtVolume& ct, const SegmentCallOptions& o = {}) {
  grpc::ClientContext context;
  if (o.edit_context) o.edit_context(&context);
  auto stream = stub.Segment(&context);
  const tuckerseg::v1::SegmentRequest request = HeaderRequest(ct, o);
  std::string bytes = wire::EncodeCt(ct, o.voxel_type);
  if (o.edit_bytes) o.edit_bytes(&bytes);
  bool open = stream->Write(request);
  for (size_t offset = 0; open && offset < bytes.size(); offset += static_cast<size_t>(o.chunk_bytes)) {
    tuckerseg::v1::SegmentRequest chunk;
    chunk.set_voxels(bytes.substr(offset, static_cast<size_t>(o.chunk_bytes)));
    open = stream->Write(chunk);
  }
  stream->WritesDone();
  SegmentCall call;
  tuckerseg::v1::SegmentResponse response;
  while (stream->Read(&response)) {
    if (response.has_progress()) ++call.progress_messages;
    if (response.has_header()) call.header = response.header();
    if (response.has_labels()) call.labels += response.labels();
  }
  call.status = stream->Finish();
  return call;
}

}  // namespace tucker_seg::testing
