// Scanning DICOM series folders: slice order, a choice among several series, mixed slice geometry
// and gaps, on folders made from the example series with DCMTK.
#include <gtest/gtest.h>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>

#include "image_io/dicom_series.h"
#include "support/run_command.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

namespace fs = std::filesystem;
using tucker_seg::testing::RunCommand;

fs::path Example() { return tucker_seg::testing::ExampleDicomSeries(); }

std::string Cli() { return tucker_seg::testing::ProgramPath("tucker-seg"); }

std::vector<fs::path> ExampleFiles() {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(Example())) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

// Copies the example series; `edit(i, dataset)` may change file i (in sorted name order).
fs::path CopySeries(const std::string& name, const std::function<bool(size_t, DcmDataset*)>& edit = {}) {
  const auto dir = tucker_seg::testing::TempDir(name);
  const auto files = ExampleFiles();
  for (size_t i = 0; i < files.size(); ++i) {
    DcmFileFormat file;
    EXPECT_TRUE(file.loadFile(files[i].c_str()).good());
    if (edit && !edit(i, file.getDataset())) continue;  // false: leave the file out
    EXPECT_TRUE(file.saveFile((dir / files[i].filename()).c_str(), EXS_Unknown).good());
  }
  return dir;
}

TEST(DicomSeries, SortsSlicesAlongTheirNormal) {
  auto s = ScanDicomSeries(Example().string());
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_EQ(s.value().slices.size(), 20u);
  EXPECT_NEAR(s.value().slice_spacing, 2.0, 1e-3);
  for (size_t i = 1; i < 20; ++i) EXPECT_GT(s.value().slices[i].position[2], s.value().slices[i - 1].position[2]);
  EXPECT_FALSE(s.value().series_instance_uid.empty());
}

TEST(DicomSeries, TwoSeriesNeedAChoice) {
  const auto dir = CopySeries("dicom-two-series", [](size_t i, DcmDataset* d) {
    if (i >= 3) return true;
    d->putAndInsertString(DCM_SeriesInstanceUID, "1.2.826.0.1.3680043.8.498.1");
    d->putAndInsertString(DCM_SOPInstanceUID, ("1.2.826.0.1.3680043.8.498.1." + std::to_string(i)).c_str());
    return true;
  });
  auto ambiguous = ScanDicomSeries(dir.string());
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_NE(ambiguous.status().message().find("holds 2 series"), std::string::npos) << ambiguous.status().message();
  auto chosen = ScanDicomSeries(dir.string(), "1.2.826.0.1.3680043.8.498.1");
  ASSERT_TRUE(chosen.ok()) << chosen.status().message();
  EXPECT_EQ(chosen.value().slices.size(), 3u);

  const auto cli = RunCommand(Cli() + " segment -i " + dir.string() + " -o /dev/null --server 127.0.0.1:1");
  EXPECT_EQ(cli.exit_code, 1);
  EXPECT_NE(cli.output.find("error: folder"), std::string::npos) << cli.output;
  EXPECT_NE(cli.output.find("choose one by its SeriesInstanceUID"), std::string::npos) << cli.output;
}

TEST(DicomSeries, MixedSliceGeometryIsRejected) {
  const auto dir = CopySeries("dicom-mixed", [](size_t i, DcmDataset* d) {
    if (i == 5) d->putAndInsertString(DCM_ImageOrientationPatient, "0\\1\\0\\1\\0\\0");
    return true;
  });
  auto s = ScanDicomSeries(dir.string());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("mixed slice geometry"), std::string::npos) << s.status().message();
  const auto cli = RunCommand(Cli() + " segment -i " + dir.string() + " -o /dev/null --server 127.0.0.1:1");
  EXPECT_EQ(cli.exit_code, 1);
  EXPECT_NE(cli.output.find("mixed slice geometry"), std::string::npos) << cli.output;
}

TEST(DicomSeries, AMissingSliceIsAGap) {
  // The file whose position is the 10th along the normal is left out.
  auto full = ScanDicomSeries(Example().string());
  ASSERT_TRUE(full.ok());
  const fs::path tenth = full.value().slices[10].path;
  const auto files = ExampleFiles();
  const auto dir = CopySeries("dicom-gap", [&](size_t i, DcmDataset*) { return files[i].filename() != tenth.filename(); });
  auto s = ScanDicomSeries(dir.string());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("has a gap: slices 9 and 10 are 4.000000 mm apart"), std::string::npos) << s.status().message();
}

}  // namespace
}  // namespace tucker_seg
