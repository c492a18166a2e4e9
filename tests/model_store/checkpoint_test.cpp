// Reading real nnU-Net checkpoints, and refusing broken ones with clear messages.
#include <filesystem>
#include <fstream>
#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model_store/import/torch_checkpoint.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ResultsDir;
using testing::TempDir;
using testing::CopyResults;

TEST(Checkpoint, ReadsNetworkWeightsOfARealCheckpointAndSkipsTheRest) {
  auto tensors = ReadCheckpointStateDict(testing::CheckpointFile("iso4").string());
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

// Checkpoints written by tests/data/crafted-checkpoints/make_checkpoints.py (no torch needed).
fs::path Crafted(const std::string& name) { return testing::TestData("crafted-checkpoints/" + name); }

TEST(Checkpoint, CraftedCheckpointWithOneStorageReads) {
  // The generator's control: the format it writes is one the reader accepts.
  auto tensors = ReadCheckpointStateDict(Crafted("one_storage.pth").string());
  ASSERT_TRUE(tensors.ok()) << tensors.status().message();
  ASSERT_EQ(tensors.value().size(), 1u);
  EXPECT_EQ(tensors.value()[0].name, "w");
  EXPECT_TRUE(torch::equal(tensors.value()[0].tensor, torch::arange(4096, torch::kFloat32)));
}

TEST(Checkpoint, StoragesAliasedToTheSameBytesCannotClaimMoreThanTheFile) {
  // Two zip directory entries point at one record of the data's size: each storage fits its
  // record, but together they claim twice the file (N such entries used to allocate N x the file).
  auto r = ReadCheckpointStateDict(Crafted("aliased_storages.pth").string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("the storages claim more bytes than the file's"));
}

TEST(Checkpoint, MissingEntryIsNamed) {
  auto r = ReadCheckpointStateDict(testing::CheckpointFile("iso4").string(), "ema_weights");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("no 'ema_weights' entry"));
}

TEST(Checkpoint, TruncatedZipFailsClearly) {
  const fs::path dir = TempDir("truncated");
  std::ifstream in(testing::CheckpointFile("iso4"), std::ios::binary);
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

}  // namespace
}  // namespace tucker_seg
