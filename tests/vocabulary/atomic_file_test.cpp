// Replacing files atomically: readers see the old contents until Commit, a failed or abandoned
// write leaves the old file and no temporary behind, and a failing write is reported, not lost.
#include "vocabulary/atomic_file.h"

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_paths.h"

namespace tucker_seg {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string Contents(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// `name` holding "old", alone in a fresh folder for `test`.
fs::path OldFile(const std::string& test, const std::string& name) {
  const fs::path target = testing::TempDir("atomic-" + test + "-" + std::to_string(getpid())) / name;
  EXPECT_TRUE(WriteFileAtomically(target.string(), "old").ok());
  return target;
}

// Everything beside `target` in its folder: what a write left behind.
std::vector<std::string> Leftovers(const fs::path& target) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(target.parent_path()))
    if (e.path() != target) names.push_back(e.path().filename().string());
  return names;
}

TEST(AtomicFile, ReadersSeeTheOldContentsUntilCommit) {
  const fs::path target = OldFile("commit", "model.json");
  {
    AtomicFileWriter writer(target.string());
    writer.Write("new ");
    writer.Write("contents");
    EXPECT_EQ(Contents(target), "old");
    ASSERT_TRUE(writer.Commit().ok());
  }
  EXPECT_EQ(Contents(target), "new contents");
  EXPECT_THAT(Leftovers(target), ::testing::IsEmpty());
}

TEST(AtomicFile, AnAbandonedWriteLeavesTheOldFileAndNoTemporary) {
  const fs::path target = OldFile("abandon", "manifest.json");
  {
    AtomicFileWriter writer(target.string());
    writer.Write("half of a manifest");
  }  // an exception or an error return before Commit
  EXPECT_EQ(Contents(target), "old");
  EXPECT_THAT(Leftovers(target), ::testing::IsEmpty());
}

TEST(AtomicFile, AFailingWriteIsReportedAndTheOldFileStays) {
  const fs::path target = OldFile("efbig", "weights.safetensors");
  // A file size limit makes write() fail with EFBIG part-way, as a full disk would.
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto previous = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  Status status;
  {
    AtomicFileWriter writer(target.string());
    writer.Write(std::string(3000, 'a'));
    writer.Write(std::string(3000, 'b'));  // crosses the limit
    status = writer.Commit();
  }
  setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("weights.safetensors"));
  EXPECT_EQ(Contents(target), "old");
  EXPECT_THAT(Leftovers(target), ::testing::IsEmpty());
}

TEST(AtomicFile, AMissingFolderIsAnError) {
  const fs::path dir = testing::TempDir("atomic-missing-" + std::to_string(getpid()));
  const Status status = WriteFileAtomically((dir / "no/such/folder/x.json").string(), "x");
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("x.json"));
}

}  // namespace
}  // namespace tucker_seg
