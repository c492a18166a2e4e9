// `tucker-seg segment` as a TotalSegmentator user types it, through a running server: their
// `--roi_subset liver spleen` and `--ml` spellings, statistics.json in exactly their shape,
// several CTs with the same file name, a batch that goes on after a failing CT, --skip-existing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "image_io/image_io.h"
#include "server/server.h"
#include "support/loopback_server.h"
#include "support/run_command.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

namespace fs = std::filesystem;

std::set<std::string> FileNames(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename().string());
  return names;
}

class SegmentCli : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = server::SegmentationServer::Start(tucker_seg::testing::LoopbackServerOptions());
    ASSERT_TRUE(started.ok()) << started.status().message();
    server_ = std::move(started.value());
    ASSERT_TRUE(server_->WaitUntilCalibrated().ok());
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }
  tucker_seg::testing::CommandResult Segment(const std::string& arguments) const {
    return tucker_seg::testing::RunCommand(tucker_seg::testing::ProgramPath("tucker-seg") + " segment --quiet --server 127.0.0.1:" +
                                           std::to_string(server_->port()) + " " + arguments);
  }
  std::unique_ptr<server::SegmentationServer> server_;
};

TEST_F(SegmentCli, TotalSegmentatorsSpellingsAndStatisticsShape) {
  const fs::path dir = tucker_seg::testing::TempDir("segment_cli_ts");
  const std::string ct = tucker_seg::testing::TotalSegmentatorExample("example_ct_sm.nii.gz").string();
  const auto run = Segment("-i " + ct + " -o " + (dir / "out").string() + " --roi_subset liver spleen --statistics");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  // Per-class files of those two classes only, statistics.json with their names as its only keys.
  EXPECT_EQ(FileNames(dir / "out"), (std::set<std::string>{"liver.nii.gz", "spleen.nii.gz", "statistics.json", "statistics_provenance.json"}));
  std::ifstream stats_file(dir / "out" / "statistics.json");
  const auto stats = nlohmann::json::parse(stats_file);
  ASSERT_EQ(stats.size(), 2u) << stats.dump();
  for (const char* name : {"liver", "spleen"}) {
    ASSERT_TRUE(stats.contains(name)) << stats.dump();
    EXPECT_EQ(stats[name].size(), 2u);
    EXPECT_TRUE(stats[name]["volume"].is_number());
    EXPECT_TRUE(stats[name]["intensity"].is_number());
  }
  std::ifstream provenance_file(dir / "out" / "statistics_provenance.json");
  const auto provenance = nlohmann::json::parse(provenance_file);
  EXPECT_EQ(provenance["model"], "tucker-abdomen-3mm");
  EXPECT_EQ(provenance["exclude_masks_at_border"], true);  // TotalSegmentator's default
  // The example is 30 slices cut from a longer CT: liver and spleen reach its cut faces and are excluded.
  EXPECT_EQ(provenance["excluded_at_border"], (nlohmann::json{"spleen", "liver"})) << provenance.dump();
  EXPECT_DOUBLE_EQ(stats["liver"]["volume"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(stats["spleen"]["volume"].get<double>(), 0.0);
  const auto incomplete = Segment("-i " + ct + " -o " + (dir / "all").string() + " --roi_subset liver --statistics --stats_include_incomplete");
  ASSERT_EQ(incomplete.exit_code, 0) << incomplete.output;
  std::ifstream all_file(dir / "all" / "statistics.json");
  EXPECT_GT(nlohmann::json::parse(all_file)["liver"]["volume"].get<double>(), 0.0);

  // --ml: one multilabel map in the folder's place, as TotalSegmentator writes it.
  const auto ml = Segment("-i " + ct + " -o " + (dir / "ml.nii.gz").string() + " --ml --roi_subset liver,spleen");
  ASSERT_EQ(ml.exit_code, 0) << ml.output;
  EXPECT_TRUE(fs::is_regular_file(dir / "ml.nii.gz"));
  const auto contradiction = Segment("-i " + ct + " -o " + (dir / "x").string() + " --ml --output-type per-class");
  EXPECT_EQ(contradiction.exit_code, 2) << contradiction.output;
  const auto unknown = Segment("-i " + ct + " -o " + (dir / "y").string() + " --roi_subset liver no_such_class");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.output.find("'no_such_class' is not a class of"), std::string::npos) << unknown.output;
}

TEST_F(SegmentCli, SeveralCtsWithOneNameABatchThatGoesOnAndSkipExisting) {
  const fs::path dir = tucker_seg::testing::TempDir("segment_cli_batch");
  const fs::path ct = tucker_seg::testing::TotalSegmentatorExample("example_ct_sm.nii.gz");
  for (const char* folder : {"a", "b"}) {
    fs::create_directories(dir / folder);
    fs::copy_file(ct, dir / folder / "ct_0000.nii.gz");
  }
  std::ofstream(dir / "broken.nii.gz") << "not a NIfTI file";
  const std::string inputs = "-i " + (dir / "a" / "ct_0000.nii.gz").string() + " " + (dir / "broken.nii.gz").string() + " " +
                             (dir / "b" / "ct_0000.nii.gz").string() + " -o " + (dir / "out").string() + " --roi_subset liver";
  // Without --continue-on-error the batch stops at the broken CT.
  const auto stops = Segment(inputs);
  EXPECT_NE(stops.exit_code, 0);
  EXPECT_FALSE(fs::exists(dir / "out" / "b_ct")) << stops.output;
  // With it, both CTs named ct_0000 are written, each to its own case (folder name in front, the
  // channel suffix gone), per-class as for one CT written to a folder; the summary names the failure.
  const auto goes_on = Segment(inputs + " --continue-on-error");
  EXPECT_NE(goes_on.exit_code, 0);
  EXPECT_NE(goes_on.output.find("1 of 3 CTs failed (--continue-on-error): " + (dir / "broken.nii.gz").string()), std::string::npos)
      << goes_on.output;
  EXPECT_EQ(FileNames(dir / "out"), (std::set<std::string>{"a_ct", "b_ct"}));
  EXPECT_EQ(FileNames(dir / "out" / "a_ct"), (std::set<std::string>{"liver.nii.gz"}));
  EXPECT_EQ(FileNames(dir / "out" / "b_ct"), (std::set<std::string>{"liver.nii.gz"}));
  // --skip-existing: the two done are skipped, only the broken one is tried again.
  const auto again = Segment(inputs + " --continue-on-error --skip-existing");
  EXPECT_NE(again.output.find((dir / "a" / "ct_0000.nii.gz").string() + ": skipped"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find((dir / "b" / "ct_0000.nii.gz").string() + ": skipped"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("1 of 3 CTs failed"), std::string::npos) << again.output;
  // Two inputs whose names clash even with their folders' names are refused before any work.
  fs::create_directories(dir / "c" / "a");
  fs::copy_file(ct, dir / "c" / "a" / "ct.nii.gz");
  fs::copy_file(ct, dir / "a" / "ct.nii.gz");
  const auto clash = Segment("-i " + (dir / "a" / "ct.nii.gz").string() + " " + (dir / "c" / "a" / "ct.nii.gz").string() + " -o " +
                             (dir / "clash").string());
  EXPECT_NE(clash.exit_code, 0);
  EXPECT_NE(clash.output.find("would both write the case 'a_ct'"), std::string::npos) << clash.output;
  EXPECT_FALSE(fs::exists(dir / "clash"));
}

// --seg-type labelmap on the example series: pydicom counts, per segment, as many voxels in the
// LABELMAP SEG as the per-class NIfTI files of the same run hold; one frame per slice, fewer bytes
// than the binary SEG's frames.
TEST_F(SegmentCli, LabelMapSegHoldsTheClassesVoxelForVoxel) {
  const fs::path dir = tucker_seg::testing::TempDir("segment_cli_labelmap");
  const std::string series = tucker_seg::testing::ExampleDicomSeries().string();
  const auto binary = Segment("-i " + series + " --dicom-seg " + (dir / "binary.dcm").string() + " --variant original");
  ASSERT_EQ(binary.exit_code, 0) << binary.output;
  const auto labelmap = Segment("-i " + series + " -o " + (dir / "classes").string() + " --dicom-seg " + (dir / "labelmap.dcm").string() +
                                " --seg-type labelmap --variant original");
  ASSERT_EQ(labelmap.exit_code, 0) << labelmap.output;
  const auto read = tucker_seg::testing::RunCommand("/usr/bin/python3 " + (tucker_seg::testing::SourceDir() / "tests/client/check_dicom_seg.py").string() +
                                                    " " + (dir / "labelmap.dcm").string());
  ASSERT_EQ(read.exit_code, 0) << read.output;
  const auto seg = nlohmann::json::parse(read.output);
  EXPECT_EQ(seg["segmentation_type"], "LABELMAP");
  const auto ct = ReadCt(series);
  ASSERT_TRUE(ct.ok()) << ct.status().message();
  EXPECT_EQ(seg["frames"], ct.value().geometry.size[2]);
  std::map<std::string, int64_t> counted;
  for (const auto& entry : fs::directory_iterator(dir / "classes")) {
    const std::string name = entry.path().filename().string();
    auto mask = ReadCt(entry.path().string());
    ASSERT_TRUE(mask.ok()) << mask.status().message();
    int64_t n = 0;
    for (float v : mask.value().voxels) n += v != 0;
    if (n > 0) counted[name.substr(0, name.size() - std::string(".nii.gz").size())] = n;
  }
  ASSERT_GT(counted.size(), 3u);
  for (const auto& [name, n] : counted) EXPECT_EQ(seg["labelmap"]["voxels"].value(name, int64_t{-1}), n) << name;
  EXPECT_EQ(seg["segments"].size(), counted.size());
  std::cout << "[ size     ] example series: binary SEG " << fs::file_size(dir / "binary.dcm") << " bytes, LABELMAP SEG "
            << fs::file_size(dir / "labelmap.dcm") << " bytes (deflated), " << counted.size() << " segments\n";
}

}  // namespace
}  // namespace tucker_seg
