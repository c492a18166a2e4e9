// A composite model served end to end: the server loads its parts, calibrates and selects each,
// runs them for one request and merges their labels exactly as the in-process merge does.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "model_store/format/composite.h"
#include "model_store/format/model.h"
#include "model_store/import/nnunet_import.h"
#include "model_store/inference/predictor.h"
#include "model_store/network/loaded_model.h"
#include "server/grpc_test_client.h"
#include "server/server.h"
#include "support/loopback_server.h"
#include "test_paths.h"

namespace tucker_seg::server {
namespace {

void SavePart(const std::filesystem::path& composite, const std::string& part, const std::vector<std::string>& names) {
  NnUNetImportOptions options;
  options.results_dir = tucker_seg::testing::ResultsDir("iso4").string();
  options.name = part;
  auto model = ImportNnUNet(options);
  ASSERT_TRUE(model.ok()) << model.status().message();
  for (size_t i = 0; i < names.size(); ++i) model.value().info.labels[i + 1].second = names[i];
  ASSERT_TRUE(SaveModel(model.value(), (composite / "parts" / part).string()).ok());
}

TEST(CompositeServing, OneRequestRunsEveryPartAndMergesTheirLabels) {
  const auto store = tucker_seg::testing::TempDir("composite-serving");
  const auto dir = store / "combo";
  SavePart(dir, "organs", {"liver", "spleen", "kidney_left", "kidney_right", "aorta"});
  SavePart(dir, "bones", {"vertebrae_L1", "vertebrae_L2", "spleen", "rib_left_1", "sacrum"});
  ASSERT_TRUE(WriteCompositeModel(dir.string(), "combo", {"organs", "bones"}).ok());
  auto spec = ReadCompositeModel(dir.string());
  ASSERT_TRUE(spec.ok()) << spec.status().message();

  auto options = tucker_seg::testing::LoopbackServerOptions();
  options.model_store = store.string();
  auto server = SegmentationServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status().message();
  ASSERT_TRUE(server.value()->WaitUntilCalibrated().ok());

  CtVolume ct;
  ct.geometry.size = {{48, 40, 36}};
  ct.geometry.spacing = {{1.0, 1.0, 1.0}};
  std::mt19937 random(7);
  std::normal_distribution<float> hu(0, 300);
  for (int64_t i = 0; i < ct.geometry.NumVoxels(); ++i) ct.voxels.push_back(std::round(hu(random)));
  auto stub = tucker_seg::testing::Connect(server.value()->port());
  tucker_seg::testing::SegmentCallOptions o;  // no model named: the store's only (composite) model
  o.voxel_type = tuckerseg::v1::VOXEL_TYPE_FLOAT32;
  const auto call = tucker_seg::testing::Segment(*stub, ct, o);
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();
  EXPECT_EQ(call.header.model(), "combo");
  EXPECT_EQ(call.header.variant(), "organs:original,bones:original");
  ASSERT_EQ(call.header.labels_size(), 10);
  EXPECT_EQ(call.header.labels(6).name(), "vertebrae_L1");
  EXPECT_TRUE(call.header.variant_quality_known());

  // The same merge in-process.
  LabelMap merged;
  for (size_t p = 0; p < spec.value().part_dirs.size(); ++p) {
    auto model = LoadNetwork(spec.value().part_dirs[p]);
    ASSERT_TRUE(model.ok()) << model.status().message();
    const auto executor = model.value().Executor();
    UNetPatchNetwork net(*executor);
    auto prediction = Predict(model.value().info, net, ct, {});
    ASSERT_TRUE(prediction.ok()) << prediction.status().message();
    ASSERT_TRUE(MergePartLabels(spec.value(), p, prediction.value().labels, &merged).ok());
  }
  ASSERT_EQ(call.labels.size(), merged.voxels.size());
  int64_t same = 0;
  std::set<uint8_t> ids;
  for (size_t i = 0; i < merged.voxels.size(); ++i) {
    same += static_cast<uint8_t>(call.labels[i]) == merged.voxels[i];
    ids.insert(static_cast<uint8_t>(call.labels[i]));
  }
  EXPECT_GE(static_cast<double>(same) / static_cast<double>(merged.voxels.size()), 0.999);
  EXPECT_GT(*ids.rbegin(), 5) << "no voxel of the second part's classes";

  // --roi-subset: only the part that has the class runs (a coarse pass first, then its tiles).
  o.edit_header = [](tuckerseg::v1::SegmentHeader* h) { h->add_roi_subset("vertebrae_L1"); };
  const auto roi = tucker_seg::testing::Segment(*stub, ct, o);
  ASSERT_TRUE(roi.status.ok()) << roi.status.error_message();
  EXPECT_EQ(roi.header.variant(), "bones:original");
  for (char c : roi.labels) ASSERT_TRUE(c == 0 || static_cast<uint8_t>(c) == 2 || static_cast<uint8_t>(c) >= 6) << int(c);
  o.edit_header = [](tuckerseg::v1::SegmentHeader* h) { h->add_roi_subset("no_such_class"); };
  const auto unknown = tucker_seg::testing::Segment(*stub, ct, o);
  EXPECT_EQ(unknown.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(unknown.status.error_message().find("header.roi_subset: 'no_such_class' is not a class of model 'combo'"), std::string::npos)
      << unknown.status.error_message();

  // The catalog lists the composite and each part; DescribeModel sums the parts' costs.
  grpc::ClientContext list_context;
  tuckerseg::v1::ListModelsResponse list;
  ASSERT_TRUE(stub->ListModels(&list_context, {}, &list).ok());
  std::set<std::string> names;
  for (const auto& m : list.models()) names.insert(m.name());
  EXPECT_EQ(names, (std::set<std::string>{"combo", "combo/organs", "combo/bones"}));
  grpc::ClientContext describe_context;
  tuckerseg::v1::DescribeModelRequest request;
  request.set_model("combo");
  tuckerseg::v1::DescribeModelResponse description;
  ASSERT_TRUE(stub->DescribeModel(&describe_context, request, &description).ok());
  ASSERT_EQ(description.variants_size(), 1);
  EXPECT_EQ(description.variants(0).name(), "original");
  EXPECT_EQ(description.variants(0).parameters(), 2 * 285106);  // iso4 has 285,106 parameters
  EXPECT_TRUE(description.variants(0).selectable());
}

}  // namespace
}  // namespace tucker_seg::server
