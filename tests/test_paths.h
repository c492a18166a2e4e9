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

// A fresh, empty folder for one test.
inline std::filesystem::path TempDir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("tucker-seg-test-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace tucker_seg::testing
