// Where tests find the shared conformance data and the repository's own files.
#pragma once

#include <filesystem>
#include <string>

namespace tucker_seg::testing {

inline std::filesystem::path SharedDir() { return TUCKER_SEG_SHARED_DIR; }
inline std::filesystem::path SourceDir() { return TUCKER_SEG_SOURCE_DIR; }
inline std::filesystem::path ConformanceCase(const std::string& name) { return SharedDir() / "conformance/nnunet-v2" / name; }
inline std::filesystem::path ResultsDir(const std::string& name) {
  return ConformanceCase(name) / "Dataset999_Golden/nnUNetTrainer__nnUNetPlans__3d_fullres";
}
inline std::filesystem::path CheckpointFile(const std::string& name) { return ResultsDir(name) / "fold_0/checkpoint_final.pth"; }
// The example DICOM series (JPEG 2000) from TotalSegmentator's examples.
inline std::filesystem::path ExampleDicomSeries() { return SharedDir() / "data/totalsegmentator-examples/example_ct_dicom_uids"; }
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
