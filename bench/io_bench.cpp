// A whole CT's input and output files: reading a synthetic 512 x 512 x N CT from .nii.gz and
// writing its label map as .nii.gz (the header rewrite and compression predict does), the parts
// of `tucker-seg-models predict` around the prediction. Prints a table; asserts nothing.
//
//   build/bench/io_bench [--slices 300] [--repeats 3]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "image_io/image_io.h"
#include "synthetic_ct.h"

using namespace tucker_seg;

namespace {

template <typename F>
double Seconds(F fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  int64_t slices = 300;
  int repeats = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--slices") slices = std::stoll(v);
    else if (k == "--repeats") repeats = std::max(1, std::stoi(v));
  }
  const auto dir = std::filesystem::temp_directory_path() / ("io_bench_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string ct_path = (dir / "ct.nii.gz").string(), labels_path = (dir / "labels.nii.gz").string();
  const CtVolume ct = bench::SyntheticCt(slices);
  if (const Status s = WriteCt(ct_path, ct); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return 1;
  }
  // Labels shaped like a segmentation: the body's voxels in a few large classes.
  LabelMap labels{ct.geometry, std::vector<uint8_t>(ct.voxels.size())};
  for (size_t i = 0; i < ct.voxels.size(); ++i) labels.voxels[i] = ct.voxels[i] > 300 ? 25 : ct.voxels[i] > -500 ? static_cast<uint8_t>(1 + (i / 4096) % 8) : 0;
  std::vector<double> read, write;
  for (int r = 0; r < repeats; ++r) {
    read.push_back(Seconds([&] { (void)ReadCt(ct_path); }));
    write.push_back(Seconds([&] { (void)WriteLabelMap(labels_path, labels); }));
  }
  std::sort(read.begin(), read.end());
  std::sort(write.begin(), write.end());
  std::printf("CT 512x512x%ld (float32 NIfTI, %.0f MiB gzipped), label map %.0f MiB raw (%.1f MiB gzipped); %d runs each\n",
              static_cast<long>(slices), std::filesystem::file_size(ct_path) / 1048576.0, labels.voxels.size() / 1048576.0,
              std::filesystem::file_size(labels_path) / 1048576.0, repeats);
  std::printf("%-34s %8s %8s\n", "step", "min s", "median s");
  std::printf("%-34s %8.2f %8.2f\n", "read CT (.nii.gz)", read.front(), read[read.size() / 2]);
  std::printf("%-34s %8.2f %8.2f\n", "write label map (.nii.gz)", write.front(), write[write.size() / 2]);
  std::filesystem::remove_all(dir);
  return 0;
}
