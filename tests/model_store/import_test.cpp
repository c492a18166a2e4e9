// Reading real nnU-Net checkpoints, and refusing broken ones with clear messages.
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model_store/import/nnunet_import.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ResultsDir;
using testing::TempDir;
using testing::CopyResults;

// Replaces the first `from` in the copy's plans.json by `to`.
void EditPlans(const fs::path& dir, const std::string& from, const std::string& to) {
  std::ifstream in(dir / "plans.json");
  std::string plans((std::istreambuf_iterator<char>(in)), {});
  in.close();
  ASSERT_NE(plans.find(from), std::string::npos);
  plans.replace(plans.find(from), from.size(), to);
  std::ofstream(dir / "plans.json", std::ios::trunc) << plans;
}

TEST(Import, PlansNamingAnotherNetworkClassFailClearly) {
  const fs::path dir = CopyResults("iso4", "other-class");
  EditPlans(dir, "architectures.unet.PlainConvUNet", "architectures.unet.ResidualEncoderUNet");
  NnUNetImportOptions opt;
  opt.results_dir = dir.string();
  auto r = ImportNnUNet(opt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
  EXPECT_THAT(r.status().message(), HasSubstr("network class 'dynamic_network_architectures.architectures.unet.ResidualEncoderUNet' is not supported"));
}

TEST(Import, UnsupportedOpIsNamed) {
  const fs::path dir = CopyResults("iso4", "other-op");
  EditPlans(dir, "torch.nn.modules.instancenorm.InstanceNorm3d", "torch.nn.modules.batchnorm.BatchNorm3d");
  NnUNetImportOptions opt;
  opt.results_dir = dir.string();
  auto r = ImportNnUNet(opt);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("norm_op 'torch.nn.modules.batchnorm.BatchNorm3d' is not supported"));
}

TEST(Import, CheckpointOfAnotherArchitectureNamesTheMismatchedTensor) {
  // iso4's plans with aniso5's checkpoint: aniso5 has a fifth stage that iso4's network lacks.
  const fs::path dir = CopyResults("iso4", "mismatch");
  fs::copy_file(testing::CheckpointFile("aniso5"), dir / "fold_0/checkpoint_final.pth", fs::copy_options::overwrite_existing);
  NnUNetImportOptions opt;
  opt.results_dir = dir.string();
  auto r = ImportNnUNet(opt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("unexpected tensor 'encoder.stages.4.0.convs.0.conv.weight'"));
}

TEST(Import, MissingFoldIsNotFound) {
  NnUNetImportOptions opt;
  opt.results_dir = ResultsDir("iso4").string();
  opt.fold = "3";
  auto r = ImportNnUNet(opt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("fold_3/checkpoint_final.pth"));
}

}  // namespace
}  // namespace tucker_seg
