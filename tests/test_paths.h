// Where tests find their data: every file lives in the repository (tests/data), so a fresh clone
// runs every test.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

namespace tucker_seg::testing {

inline std::filesystem::path SourceDir() { return TUCKER_SEG_SOURCE_DIR; }

// A file or folder under tests/data. A missing one throws, which GoogleTest reports as this test's
// failure naming the path; the test binary goes on with the next test instead of aborting later on
// a failed read.
inline std::filesystem::path TestData(const std::string& relative) {
  const auto path = SourceDir() / "tests/data" / relative;
  if (!std::filesystem::exists(path)) throw std::runtime_error("test data missing: " + path.string());
  return path;
}
// An nnU-Net v2 conformance case ("iso4", "aniso5"): tests/data/nnunet-v2-<name>.
inline std::filesystem::path ConformanceCase(const std::string& name) { return TestData("nnunet-v2-" + name); }
// One of TotalSegmentator's example CTs or label maps (tests/data/totalsegmentator/README.md).
inline std::filesystem::path TotalSegmentatorExample(const std::string& name) { return TestData("totalsegmentator/" + name); }
inline std::filesystem::path ResultsDir(const std::string& name) {
  return ConformanceCase(name) / "Dataset999_Golden/nnUNetTrainer__nnUNetPlans__3d_fullres";
}
inline std::filesystem::path CheckpointFile(const std::string& name) { return ResultsDir(name) / "fold_0/checkpoint_final.pth"; }
// The example DICOM series (JPEG 2000) from TotalSegmentator's examples.
inline std::filesystem::path ExampleDicomSeries() { return TotalSegmentatorExample("example_ct_dicom_uids"); }
// A program this build made: "tucker-seg", "tucker-seg-models", "tucker-seg-server".
inline std::string ProgramPath(const std::string& name) { return (std::filesystem::path(TUCKER_SEG_BINARY_DIR) / name).string(); }

// A fresh, empty folder for one test.
inline std::filesystem::path TempDir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("tucker-seg-test-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// A writable copy of a conformance results folder, in a fresh folder for `test`.
inline std::filesystem::path CopyResults(const std::string& name, const std::string& test) {
  namespace fs = std::filesystem;
  const fs::path dir = TempDir(test) / "Dataset999_Golden/nnUNetTrainer__nnUNetPlans__3d_fullres";
  fs::create_directories(dir);
  fs::copy(ResultsDir(name), dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  for (auto& e : fs::recursive_directory_iterator(dir)) fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return dir;
}

}  // namespace tucker_seg::testing
