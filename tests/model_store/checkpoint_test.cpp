// Reading real nnU-Net checkpoints, and refusing broken ones with clear messages.
#include <filesystem>
#include <fstream>
#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model_store/nnunet_import.h"
#include "model_store/torch_checkpoint.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ResultsDir;
using testing::TempDir;

fs::path Checkpoint(const std::string& c) { return ResultsDir(c) / "fold_0/checkpoint_final.pth"; }

// A writable copy of a conformance results folder.
fs::path CopyResults(const std::string& c, const std::string& test) {
  const fs::path dir = TempDir(test) / "Dataset999_Golden/nnUNetTrainer__nnUNetPlans__3d_fullres";
  fs::create_directories(dir);
  fs::copy(ResultsDir(c), dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  for (auto& e : fs::recursive_directory_iterator(dir)) fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return dir;
}

// Replaces the first `from` in the copy's plans.json by `to`.
void EditPlans(const fs::path& dir, const std::string& from, const std::string& to) {
  std::ifstream in(dir / "plans.json");
  std::string plans((std::istreambuf_iterator<char>(in)), {});
  in.close();
  ASSERT_NE(plans.find(from), std::string::npos);
  plans.replace(plans.find(from), from.size(), to);
  std::ofstream(dir / "plans.json", std::ios::trunc) << plans;
}

TEST(Checkpoint, ReadsNetworkWeightsOfARealCheckpointAndSkipsTheRest) {
  auto tensors = ReadCheckpointStateDict(Checkpoint("iso4").string());
  ASSERT_TRUE(tensors.ok()) << tensors.status().message();
  EXPECT_EQ(tensors.value().size(), 188u);  // golden.json lists 188 state_dict entries
  const auto& first = tensors.value().front();
  EXPECT_EQ(first.name, "encoder.stages.0.0.convs.0.conv.weight");
  EXPECT_EQ(first.tensor.sizes(), (std::vector<int64_t>{8, 1, 3, 3, 3}));
  // The all_modules.0 alias is the same tensor.
  for (const auto& t : tensors.value()) {
    if (t.name == "encoder.stages.0.0.convs.0.all_modules.0.weight") {
      EXPECT_EQ(t.identity, first.identity);
      EXPECT_TRUE(torch::equal(t.tensor, first.tensor));
    }
  }
}

TEST(Checkpoint, MissingEntryIsNamed) {
  auto r = ReadCheckpointStateDict(Checkpoint("iso4").string(), "ema_weights");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("no 'ema_weights' entry"));
}

TEST(Checkpoint, TruncatedZipFailsClearly) {
  const fs::path dir = TempDir("truncated");
  std::ifstream in(Checkpoint("iso4"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::ofstream(dir / "truncated.pth", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  auto r = ReadCheckpointStateDict((dir / "truncated.pth").string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("is a damaged zip archive (truncated or corrupt)"));
}

TEST(Checkpoint, RandomBytesFailClearly) {
  const fs::path dir = TempDir("random");
  std::mt19937 rng(42);
  std::string bytes(100000, '\0');
  for (auto& c : bytes) c = static_cast<char>(rng());
  std::ofstream(dir / "random.pth", std::ios::binary) << bytes;
  auto r = ReadCheckpointStateDict((dir / "random.pth").string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("is not a zip archive, so not a torch.save checkpoint"));
}

TEST(Checkpoint, MissingFileIsNotFound) {
  auto r = ReadCheckpointStateDict("/nonexistent/checkpoint.pth");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
}

TEST(Checkpoint, CorruptedStorageRecordIsCaught) {
  // Flip bytes inside data.pkl: the pickle machine must report, not crash.
  const fs::path dir = CopyResults("iso4", "corrupt-pickle");
  const fs::path ckpt = dir / "fold_0/checkpoint_final.pth";
  std::fstream f(ckpt, std::ios::binary | std::ios::in | std::ios::out);
  std::string bytes((std::istreambuf_iterator<char>(f)), {});
  const auto pos = bytes.find("network_weights");
  ASSERT_NE(pos, std::string::npos);
  for (size_t i = pos + 15; i < pos + 400; ++i) bytes[i] = static_cast<char>(0xEE);
  f.seekp(0);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  auto r = ReadCheckpointStateDict(ckpt.string());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("data.pkl"));
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
  fs::copy_file(Checkpoint("aniso5"), dir / "fold_0/checkpoint_final.pth", fs::copy_options::overwrite_existing);
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
