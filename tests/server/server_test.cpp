// The real server on loopback with the bundled model store: results equal in-process prediction,
// the catalogue RPCs, and the bad-input matrix (the server keeps serving after every case).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <unistd.h>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "image_io/image_io.h"
#include "model_store/inference/predictor.h"
#include "server/grpc_status.h"
#include "server/grpc_test_client.h"
#include "server/server.h"
#include "support/loopback_server.h"
#include "support/run_command.h"
#include "test_paths.h"

namespace tucker_seg::server {
namespace {

using testing::Connect;
using testing::Segment;
using testing::SegmentCallOptions;

using testing::LoopbackServerOptions;

// A small synthetic CT (a bright box in air) that the default model segments in about a second.
CtVolume SmallCt() {
  CtVolume ct;
  ct.geometry.size = {40, 36, 24};
  ct.geometry.spacing = {3, 3, 3};
  ct.voxels.assign(40 * 36 * 24, -1000.0f);
  for (int z = 6; z < 18; ++z)
    for (int y = 8; y < 28; ++y)
      for (int x = 10; x < 30; ++x) ct.voxels[(z * 36 + y) * 40 + x] = 60.0f;
  return ct;
}

class Server : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = SegmentationServer::Start(LoopbackServerOptions());
    ASSERT_TRUE(s.ok()) << s.status().message();
    server_ = s.value().release();
    ASSERT_TRUE(server_->WaitUntilCalibrated().ok());
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  // Every bad-input case ends with this: a valid request still succeeds.
  static void ExpectStillServing() {
    auto stub = Connect(server_->port());
    SegmentCallOptions o;
    o.variant = "original";
    const auto call = Segment(*stub, SmallCt(), o);
    ASSERT_TRUE(call.status.ok()) << call.status.error_message();
    EXPECT_EQ(call.labels.size(), 40u * 36 * 24);
  }
  static void ExpectRejected(const testing::SegmentCall& call, grpc::StatusCode code, const std::string& needle) {
    EXPECT_EQ(call.status.error_code(), code) << call.status.error_message();
    EXPECT_NE(call.status.error_message().find(needle), std::string::npos) << call.status.error_message();
  }
  static SegmentationServer* server_;
};
SegmentationServer* Server::server_ = nullptr;

TEST_F(Server, SegmentingARealCtGivesTheInProcessLabels) {
  auto ct = ReadCt(tucker_seg::testing::TotalSegmentatorExample("example_ct_sm.nii.gz").string());
  ASSERT_TRUE(ct.ok()) << ct.status().message();
  auto stub = Connect(server_->port());
  SegmentCallOptions o;
  o.chunk_bytes = 3 << 20;
  o.voxel_type = tuckerseg::v1::VOXEL_TYPE_FLOAT32;  // exact HU values, as the in-process run sees them
  const auto call = Segment(*stub, ct.value(), o);
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();
  const auto& h = call.header;
  // Header accepted, queued, running, then one running message per finished tile (batch 1).
  EXPECT_EQ(call.progress_messages, 3 + h.timings().tiles());
  EXPECT_EQ(h.model(), "tucker-abdomen-3mm");
  EXPECT_FALSE(h.selection_reason().empty());
  EXPECT_EQ(h.label_bytes(), static_cast<int64_t>(ct.value().voxels.size()));
  EXPECT_GT(h.timings().tiles(), 0);
  for (int a = 0; a < 3; ++a) {
    EXPECT_EQ(h.volume().size(a), ct.value().geometry.size[a]);
    EXPECT_DOUBLE_EQ(h.volume().spacing(a), ct.value().geometry.spacing[a]);
    EXPECT_DOUBLE_EQ(h.volume().origin(a), ct.value().geometry.origin[a]);
  }

  const auto catalog = server_->state().devices[0]->catalog.Get();
  const VariantEntry* variant = catalog->models[0].Find(h.variant());
  ASSERT_NE(variant, nullptr);
  UNetPatchNetwork net(*variant->executor);
  auto local = Predict(variant->info, net, ct.value(), {});
  ASSERT_TRUE(local.ok()) << local.status().message();
  ASSERT_EQ(call.labels.size(), local.value().labels.voxels.size());
  EXPECT_TRUE(std::equal(call.labels.begin(), call.labels.end(), local.value().labels.voxels.begin(),
                         [](char a, uint8_t b) { return static_cast<uint8_t>(a) == b; }));
  ASSERT_EQ(h.labels_size(), static_cast<int>(local.value().label_table.size()));
  EXPECT_EQ(h.labels(1).name(), local.value().label_table[1].second);
}

TEST_F(Server, CatalogueDescribesVariantsAndTheDevice) {
  auto stub = Connect(server_->port());
  grpc::ClientContext list_context;
  tuckerseg::v1::ListModelsResponse list;
  ASSERT_TRUE(stub->ListModels(&list_context, {}, &list).ok());
  ASSERT_EQ(list.models_size(), 1);
  EXPECT_EQ(list.models(0).name(), "tucker-abdomen-3mm");
  EXPECT_EQ(list.models(0).variants_size(), 8);  // original, 3 Tucker variants, int8 of each
  EXPECT_EQ(list.models(0).labels_size(), 16);

  grpc::ClientContext describe_context;
  tuckerseg::v1::DescribeModelRequest request;
  request.set_model("tucker-abdomen-3mm");
  tuckerseg::v1::DescribeModelResponse model;
  ASSERT_TRUE(stub->DescribeModel(&describe_context, request, &model).ok());
  EXPECT_EQ(model.device().kind(), "cpu");
  EXPECT_EQ(model.device().cores(), 2);
  ASSERT_EQ(model.variants_size(), 8);
  for (const auto& v : model.variants()) {
    const bool int8 = v.name().size() > 5 && v.name().substr(v.name().size() - 5) == "-int8";
    EXPECT_EQ(v.precision(), int8 ? "int8" : "float32") << v.name();
    EXPECT_GT(v.calibrated_seconds_per_tile(), 0) << v.name();
    EXPECT_GT(v.parameters(), 0);
    EXPECT_TRUE(v.quality_known());
    EXPECT_EQ(v.selectable(), v.not_selectable_reason().empty()) << v.name();
  }
  EXPECT_TRUE(model.variants(0).selectable());  // the original is never dominated (quality 1)

  grpc::ClientContext missing_context;
  request.set_model("no-such-model");
  const auto missing = stub->DescribeModel(&missing_context, request, &model);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
}

// An int8 variant pinned by name runs on the CPU engine's int8 path: its labels are the in-process
// int8 prediction's and nearly all of the float32 original's.
TEST_F(Server, PinnedInt8VariantGivesItsLabels) {
  auto stub = Connect(server_->port());
  SegmentCallOptions o;
  o.variant = "original-int8";
  o.voxel_type = tuckerseg::v1::VOXEL_TYPE_FLOAT32;
  const CtVolume ct = SmallCt();
  const auto call = Segment(*stub, ct, o);
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();
  EXPECT_EQ(call.header.variant(), "original-int8");
  EXPECT_EQ(call.header.selection_reason(), "pinned");
  const auto catalog = server_->state().devices[0]->catalog.Get();
  const auto predict = [&](const std::string& name) {
    const VariantEntry* v = catalog->models[0].Find(name);
    EXPECT_NE(v, nullptr) << name;
    UNetPatchNetwork net(*v->executor);
    return Predict(v->info, net, ct, {}).value().labels.voxels;
  };
  EXPECT_EQ(catalog->models[0].Find("original-int8")->executor->name(), "CPU engine (int8)");
  const auto int8 = predict("original-int8"), original = predict("original");
  ASSERT_EQ(call.labels.size(), int8.size());
  EXPECT_TRUE(std::equal(call.labels.begin(), call.labels.end(), int8.begin(),
                         [](char a, uint8_t b) { return static_cast<uint8_t>(a) == b; }));
  int64_t same = 0;
  for (size_t i = 0; i < int8.size(); ++i) same += int8[i] == original[i] ? 1 : 0;
  EXPECT_GE(static_cast<double>(same) / static_cast<double>(int8.size()), 0.9);
}

TEST_F(Server, WrongByteCountIsInvalidArgument) {
  auto stub = Connect(server_->port());
  SegmentCallOptions more;
  more.edit_bytes = [](std::string* b) { b->append("xx"); };
  ExpectRejected(Segment(*stub, SmallCt(), more), grpc::StatusCode::INVALID_ARGUMENT, "more than the 69120 bytes");
  SegmentCallOptions fewer;
  fewer.edit_bytes = [](std::string* b) { b->resize(b->size() / 2); };
  ExpectRejected(Segment(*stub, SmallCt(), fewer), grpc::StatusCode::INVALID_ARGUMENT, "ended after 34560 of the 69120 bytes");
  ExpectStillServing();
}

TEST_F(Server, HugeDeclaredDimsAreRejectedBeforeAllocating) {
  auto stub = Connect(server_->port());
  SegmentCallOptions o;
  o.edit_header = [](tuckerseg::v1::SegmentHeader* h) {
    for (int a = 0; a < 3; ++a) h->mutable_volume()->set_size(a, int64_t{1} << 40);
  };
  o.edit_bytes = [](std::string* b) { b->clear(); };
  ExpectRejected(Segment(*stub, SmallCt(), o), grpc::StatusCode::INVALID_ARGUMENT, "max_voxels");
  ExpectStillServing();
}

TEST_F(Server, NanSpacingIsInvalidArgument) {
  auto stub = Connect(server_->port());
  SegmentCallOptions o;
  o.edit_header = [](tuckerseg::v1::SegmentHeader* h) { h->mutable_volume()->set_spacing(2, std::nan("")); };
  ExpectRejected(Segment(*stub, SmallCt(), o), grpc::StatusCode::INVALID_ARGUMENT, "header.volume.spacing.z");
  ExpectStillServing();
}

// google.rpc.BadRequest from the grpc-status-details-bin trailer: the field at fault, or nothing.
std::vector<std::pair<std::string, std::string>> FieldViolations(const grpc::Status& status) {
  std::vector<std::pair<std::string, std::string>> out;
  google::rpc::Status details;
  if (status.error_details().empty() || !details.ParseFromString(status.error_details())) return out;
  EXPECT_EQ(details.code(), static_cast<int>(status.error_code()));
  EXPECT_EQ(details.message(), status.error_message());
  for (const auto& any : details.details()) {
    google::rpc::BadRequest bad;
    if (!any.UnpackTo(&bad)) continue;
    for (const auto& v : bad.field_violations()) out.emplace_back(v.field(), v.description());
  }
  return out;
}

TEST_F(Server, InvalidArgumentsCarryTheFieldAsBadRequestDetails) {
  auto stub = Connect(server_->port());
  SegmentCallOptions spacing;
  spacing.edit_header = [](tuckerseg::v1::SegmentHeader* h) { h->mutable_volume()->set_spacing(2, std::nan("")); };
  const auto nan = FieldViolations(Segment(*stub, SmallCt(), spacing).status);
  ASSERT_EQ(nan.size(), 1u);
  EXPECT_EQ(nan[0].first, "header.volume.spacing.z");
  EXPECT_NE(nan[0].second.find("must be finite and > 0"), std::string::npos) << nan[0].second;
  EXPECT_NE(nan[0].second.rfind("header.volume", 0), 0u) << nan[0].second;  // the description, not the path again
  SegmentCallOptions step;
  step.edit_header = [](tuckerseg::v1::SegmentHeader* h) { h->set_step(3); };
  const auto steps = FieldViolations(Segment(*stub, SmallCt(), step).status);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].first, "header.step");
  SegmentCallOptions bytes;
  bytes.edit_bytes = [](std::string* b) { b->append("xx"); };
  const auto voxels = FieldViolations(Segment(*stub, SmallCt(), bytes).status);
  ASSERT_EQ(voxels.size(), 1u);
  EXPECT_EQ(voxels[0].first, "voxels");
  SegmentCallOptions model;  // NOT_FOUND: no field violation
  model.model = "no-such-model";
  const auto missing = Segment(*stub, SmallCt(), model);
  EXPECT_EQ(missing.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(missing.status.error_details().empty());
  // Messages that name no request field get no details.
  EXPECT_EQ(server::FieldAtFault("the volume is smaller than one voxel"), "");
  EXPECT_EQ(server::FieldAtFault("header.model and header.variant: at most 128 characters"), "header.model");
  EXPECT_EQ(server::FieldAtFault("header: the first message must be a header"), "header");
  EXPECT_EQ(server::FieldAtFault("headers are missing"), "");
  ExpectStillServing();
}

TEST_F(Server, UnknownModelOrVariantIsNotFound) {
  auto stub = Connect(server_->port());
  SegmentCallOptions model;
  model.model = "no-such-model";
  ExpectRejected(Segment(*stub, SmallCt(), model), grpc::StatusCode::NOT_FOUND, "no-such-model");
  SegmentCallOptions variant;
  variant.variant = "df0.9";
  ExpectRejected(Segment(*stub, SmallCt(), variant), grpc::StatusCode::NOT_FOUND, "header.variant 'df0.9'");
  ExpectStillServing();
}

TEST_F(Server, StreamCutMidVolumeIsCancelled) {
  auto stub = Connect(server_->port());
  grpc::ClientContext context;
  auto stream = stub->Segment(&context);
  const auto ct = SmallCt();
  SegmentCallOptions pinned;
  pinned.variant = "original";
  ASSERT_TRUE(stream->Write(testing::HeaderRequest(ct, pinned)));
  tuckerseg::v1::SegmentResponse accepted;
  ASSERT_TRUE(stream->Read(&accepted));  // the server holds the header: now cut the stream
  EXPECT_EQ(accepted.progress().stage(), tuckerseg::v1::Progress::HEADER_ACCEPTED);
  tuckerseg::v1::SegmentRequest half;
  half.set_voxels(std::string(ct.voxels.size(), '\0'));
  ASSERT_TRUE(stream->Write(half));
  context.TryCancel();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ExpectStillServing();
}

TEST_F(Server, DeadlineExceeded) {
  auto stub = Connect(server_->port());
  SegmentCallOptions o;
  o.variant = "original";
  o.edit_context = [](grpc::ClientContext* c) { c->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1)); };
  const auto call = Segment(*stub, SmallCt(), o);
  EXPECT_EQ(call.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << call.status.error_message();
  ExpectStillServing();
}

TEST_F(Server, ShutdownDrainsRunningRequestsAndRefusesNewOnes) {
  auto draining = SegmentationServer::Start(LoopbackServerOptions());
  ASSERT_TRUE(draining.ok()) << draining.status().message();
  ASSERT_TRUE(draining.value()->WaitUntilCalibrated().ok());
  auto stub = Connect(draining.value()->port());

  // A request that is queued or running when shutdown begins still completes.
  grpc::ClientContext context;
  auto stream = stub->Segment(&context);
  const auto ct = SmallCt();
  SegmentCallOptions pinned;
  pinned.variant = "original";
  ASSERT_TRUE(stream->Write(testing::HeaderRequest(ct, pinned)));
  tuckerseg::v1::SegmentRequest voxels;
  voxels.set_voxels(wire::EncodeCt(ct, tuckerseg::v1::VOXEL_TYPE_INT16));
  ASSERT_TRUE(stream->Write(voxels));
  stream->WritesDone();
  tuckerseg::v1::SegmentResponse response;
  do {
    ASSERT_TRUE(stream->Read(&response));
  } while (!response.has_progress() || response.progress().stage() != tuckerseg::v1::Progress::QUEUED);

  std::thread shutdown([&] { draining.value()->Shutdown(); });
  std::string labels;
  while (stream->Read(&response))
    if (response.has_labels()) labels += response.labels();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(labels.size(), ct.voxels.size());
  shutdown.join();

  const auto after = Segment(*stub, SmallCt());  // the server is gone
  EXPECT_EQ(after.status.error_code(), grpc::StatusCode::UNAVAILABLE) << after.status.error_message();
}

TEST_F(Server, ABrokenVariantIsUnavailableWhileTheOthersServe) {
  namespace fs = std::filesystem;
  const fs::path store = tucker_seg::testing::TempDir("broken-variant-" + std::to_string(getpid()));
  fs::copy(tucker_seg::testing::SourceDir() / "models", store, fs::copy_options::recursive);
  const fs::path weights = store / "tucker-abdomen-3mm/variants/df0.5/weights.safetensors";
  ASSERT_TRUE(fs::exists(weights));
  fs::resize_file(weights, fs::file_size(weights) / 2);  // a copy cut short
  auto options = LoopbackServerOptions();
  options.model_store = store.string();
  auto broken = SegmentationServer::Start(options);  // before: the whole store refused to load
  ASSERT_TRUE(broken.ok()) << broken.status().message();
  ASSERT_TRUE(broken.value()->WaitUntilCalibrated().ok());
  auto stub = Connect(broken.value()->port());

  grpc::ClientContext context;
  tuckerseg::v1::DescribeModelRequest request;
  tuckerseg::v1::DescribeModelResponse description;
  ASSERT_TRUE(stub->DescribeModel(&context, request, &description).ok());
  bool listed = false;
  for (const auto& v : description.variants()) {
    if (v.name() != "df0.5") continue;
    listed = true;
    EXPECT_FALSE(v.selectable());
    EXPECT_NE(v.not_selectable_reason().find("unavailable: "), std::string::npos) << v.not_selectable_reason();
    EXPECT_NE(v.not_selectable_reason().find("weights.safetensors"), std::string::npos) << v.not_selectable_reason();
  }
  EXPECT_TRUE(listed);
  SegmentCallOptions pinned;
  pinned.variant = "df0.5";
  ExpectRejected(Segment(*stub, SmallCt(), pinned), grpc::StatusCode::NOT_FOUND, "header.variant 'df0.5' of model 'tucker-abdomen-3mm' is unavailable");
  for (const char* serving : {"auto", "original", "df0.3"}) {
    SegmentCallOptions o;
    o.variant = serving;
    const auto call = Segment(*stub, SmallCt(), o);
    EXPECT_TRUE(call.status.ok()) << serving << ": " << call.status.error_message();
  }
}

// DescribeModel of the only model (empty when the call fails).
tuckerseg::v1::DescribeModelResponse Described(tuckerseg::v1::Segmentation::Stub& stub) {
  grpc::ClientContext context;
  tuckerseg::v1::DescribeModelResponse description;
  if (!stub.DescribeModel(&context, {}, &description).ok()) return {};
  return description;
}

// The variant names DescribeModel lists for the only model.
std::vector<std::string> DescribedVariants(tuckerseg::v1::Segmentation::Stub& stub) {
  std::vector<std::string> names;
  const auto description = Described(stub);  // kept: a range-for over a temporary's member would dangle
  for (const auto& v : description.variants()) names.push_back(v.name());
  return names;
}

// A writable copy of the bundled model store, for tests that change it under a running server.
std::filesystem::path CopyOfTheStore(const std::string& name) {
  const std::filesystem::path store = tucker_seg::testing::TempDir(name + "-" + std::to_string(getpid()));
  std::filesystem::copy(tucker_seg::testing::SourceDir() / "models", store, std::filesystem::copy_options::recursive);
  return store;
}

// A calibrated server on `store`; null (and a test failure) when it does not start.
std::unique_ptr<SegmentationServer> ServeStore(const std::filesystem::path& store) {
  auto options = LoopbackServerOptions();
  options.model_store = store.string();
  auto server = SegmentationServer::Start(options);
  if (!server.ok()) {
    ADD_FAILURE() << server.status().message();
    return nullptr;
  }
  if (!server.value()->WaitUntilCalibrated().ok()) {
    ADD_FAILURE() << "calibration failed";
    return nullptr;
  }
  return std::move(server.value());
}

TEST_F(Server, ReloadAddsAndDrainsVariantsWithoutDroppingACall) {
  namespace fs = std::filesystem;
  const fs::path store = CopyOfTheStore("reload");
  const fs::path variants = store / "tucker-abdomen-3mm/variants";
  for (const char* int8 : {"original-int8", "df0.1-int8", "df0.3-int8", "df0.5-int8"}) fs::remove_all(variants / int8);  // not this test's subject
  const fs::path parked = store.parent_path() / (store.filename().string() + "-parked-df0.3");  // outside the store
  fs::rename(variants / "df0.3", parked);
  auto server = ServeStore(store);
  ASSERT_TRUE(server);
  auto stub = Connect(server->port());
  EXPECT_EQ(DescribedVariants(*stub), (std::vector<std::string>{"original", "df0.1", "df0.5"}));

  // A call that started on the old store: header accepted, voxels not yet sent.
  grpc::ClientContext context;
  auto open_call = stub->Segment(&context);
  const auto ct = SmallCt();
  SegmentCallOptions on_df01;
  on_df01.variant = "df0.1";
  ASSERT_TRUE(open_call->Write(testing::HeaderRequest(ct, on_df01)));
  tuckerseg::v1::SegmentResponse response;
  ASSERT_TRUE(open_call->Read(&response));
  EXPECT_EQ(response.progress().stage(), tuckerseg::v1::Progress::HEADER_ACCEPTED);

  // df0.3 appears, df0.1 goes away; health stays SERVING throughout.
  fs::rename(parked, variants / "df0.3");
  fs::remove_all(variants / "df0.1");
  ASSERT_TRUE(server->Reload().ok());
  EXPECT_EQ(DescribedVariants(*stub), (std::vector<std::string>{"original", "df0.3", "df0.5"}));
  SegmentCallOptions on_df03;
  on_df03.variant = "df0.3";
  const auto fresh = Segment(*stub, SmallCt(), on_df03);
  EXPECT_TRUE(fresh.status.ok()) << fresh.status.error_message();
  ExpectRejected(Segment(*stub, SmallCt(), on_df01), grpc::StatusCode::NOT_FOUND, "header.variant 'df0.1'");

  // The old call finishes on the variant it was admitted with.
  tuckerseg::v1::SegmentRequest voxels;
  voxels.set_voxels(wire::EncodeCt(ct, tuckerseg::v1::VOXEL_TYPE_INT16));
  ASSERT_TRUE(open_call->Write(voxels));
  open_call->WritesDone();
  std::string labels;
  std::string variant;
  while (open_call->Read(&response)) {
    if (response.has_header()) variant = response.header().variant();
    if (response.has_labels()) labels += response.labels();
  }
  const auto finished = open_call->Finish();
  EXPECT_TRUE(finished.ok()) << finished.error_message();
  EXPECT_EQ(variant, "df0.1");
  EXPECT_EQ(labels.size(), ct.voxels.size());

  // A store that no longer loads leaves the current one serving.
  fs::remove_all(store / "tucker-abdomen-3mm");
  EXPECT_FALSE(server->Reload().ok());
  EXPECT_EQ(DescribedVariants(*stub), (std::vector<std::string>{"original", "df0.3", "df0.5"}));
}

// The model version is the SHA-256 of the weights file that served (checked against coreutils'
// sha256sum), per variant in DescribeModel and in every ResultHeader; new weights under the same
// names, reloaded, give a new version.
TEST_F(Server, ModelVersionIsTheDigestOfTheWeightsThatServed) {
  namespace fs = std::filesystem;
  const fs::path store = CopyOfTheStore("model-version");
  const fs::path original_weights = store / "tucker-abdomen-3mm" / "weights.safetensors";
  const auto sha256sum = [](const fs::path& file) {
    const auto run = tucker_seg::testing::RunCommand("sha256sum " + file.string());
    return "sha256:" + run.output.substr(0, 64);
  };
  auto server = ServeStore(store);
  ASSERT_TRUE(server);
  auto stub = Connect(server->port());
  const auto before = Described(*stub);
  EXPECT_EQ(before.model_version(), sha256sum(original_weights));
  ASSERT_EQ(before.variants_size(), 8);
  EXPECT_EQ(before.variants(0).weights_digest(), before.model_version());
  EXPECT_EQ(before.variants(1).weights_digest(), sha256sum(store / "tucker-abdomen-3mm" / "variants" / before.variants(1).name() / "weights.safetensors"));
  SegmentCallOptions on_df01;
  on_df01.variant = "df0.1";
  const auto served = Segment(*stub, SmallCt(), on_df01);
  ASSERT_TRUE(served.status.ok()) << served.status.error_message();
  EXPECT_EQ(served.header.model_version(), before.variants(1).weights_digest());

  // New weights for the original: one byte of its last tensor changed, the same shapes.
  {
    std::fstream weights(original_weights, std::ios::in | std::ios::out | std::ios::binary);
    weights.seekg(-1, std::ios::end);
    const char last = static_cast<char>(weights.get());
    weights.seekp(-1, std::ios::end);
    weights.put(static_cast<char>(last ^ 0x01));
  }
  ASSERT_TRUE(server->Reload().ok());
  const auto after = Described(*stub);
  EXPECT_EQ(after.model_version(), sha256sum(original_weights));
  EXPECT_NE(after.model_version(), before.model_version());
  EXPECT_EQ(after.variants(1).weights_digest(), before.variants(1).weights_digest());
  SegmentCallOptions on_original;
  on_original.variant = "original";
  const auto reloaded = Segment(*stub, SmallCt(), on_original);
  ASSERT_TRUE(reloaded.status.ok()) << reloaded.status.error_message();
  EXPECT_EQ(reloaded.header.model_version(), after.model_version());
}

TEST_F(Server, MoreStreamsThanAllowedIsResourceExhausted) {
  auto options = LoopbackServerOptions();
  options.limits.max_streams = 1;
  auto small = SegmentationServer::Start(options);
  ASSERT_TRUE(small.ok()) << small.status().message();
  ASSERT_TRUE(small.value()->WaitUntilCalibrated().ok());
  auto stub = Connect(small.value()->port());

  grpc::ClientContext holder_context;  // holds the only slot: header sent, voxels pending
  auto holder = stub->Segment(&holder_context);
  ASSERT_TRUE(holder->Write(testing::HeaderRequest(SmallCt())));
  tuckerseg::v1::SegmentResponse accepted;
  ASSERT_TRUE(holder->Read(&accepted));

  const auto refused = Segment(*stub, SmallCt());
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.status.error_message().find("max_streams: 1"), std::string::npos) << refused.status.error_message();

  holder_context.TryCancel();
  holder->Finish();
  // The slot is free again once the holder's handler has returned (it sees the cancellation).
  EXPECT_TRUE(small.value()->state().open_streams.AwaitOpen(0, absl::Seconds(30)));
  const auto status = Segment(*stub, SmallCt()).status;
  EXPECT_TRUE(status.ok()) << status.error_message();
}

}  // namespace
}  // namespace tucker_seg::server
