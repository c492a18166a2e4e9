// What a segmentation leaves on disk: per-class files named as TotalSegmentator names them, the
// multilabel map's label table (sidecar and NIfTI extension), the input's qform/sform codes, the
// provenance in `descrip`, and statistics in TotalSegmentator's keys and units.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "image_io/image_io.h"
#include "image_io/segmentation_files.h"
#include "support/run_command.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

// 10 x 8 x 10 voxels of 2 x 1.5 x 3 mm: liver (5) a 2x2x2 block well inside, kidney_left (3) one
// voxel at x = 0 (the border), everything else background.
struct Case {
  CtVolume ct;
  LabelMap labels;
  LabelTable table{{0, "background"}, {3, "kidney_left"}, {5, "liver"}, {6, "stomach"}};
};

Case MakeCase() {
  Case c;
  Geometry g;
  g.size = {{10, 8, 10}};
  g.spacing = {{2.0, 1.5, 3.0}};
  c.ct.geometry = c.labels.geometry = g;
  c.ct.voxels.assign(800, -1000.0f);
  c.labels.voxels.assign(800, 0);
  const auto at = [](int x, int y, int z) { return static_cast<size_t>((z * 8 + y) * 10 + x); };
  float hu = 50;
  for (int z = 3; z < 5; ++z)
    for (int y = 3; y < 5; ++y)
      for (int x = 4; x < 6; ++x) {
        c.labels.voxels[at(x, y, z)] = 5;
        c.ct.voxels[at(x, y, z)] = hu;
        hu += 10;  // 50, 60, ..., 120: mean 85
      }
  c.labels.voxels[at(0, 4, 3)] = 3;
  c.ct.voxels[at(0, 4, 3)] = 30;
  return c;
}

const Provenance kProvenance{"tucker-abdomen-3mm", "df0.3", 0.9361, "9.9.9", 0.8};

std::string Decompressed(const std::filesystem::path& path) {
  gzFile in = gzopen(path.c_str(), "rb");
  std::string data;
  char buffer[65536];
  for (int n; (n = gzread(in, buffer, sizeof buffer)) > 0;) data.append(buffer, static_cast<size_t>(n));
  gzclose(in);
  return data;
}

// A label map above the 16 MiB the writer compresses per core is written as several gzip
// members: zlib, ITK and Python's gzip read it back whole.
TEST(SegmentationFiles, LargeLabelMapsAreSeveralGzipMembersReadBackWhole) {
  LabelMap labels;
  labels.geometry.size = {256, 256, 300};
  labels.geometry.spacing = {1.5, 1.5, 1.5};
  labels.voxels.resize(256 * 256 * 300);
  for (size_t i = 0; i < labels.voxels.size(); ++i) labels.voxels[i] = static_cast<uint8_t>((i * 2654435761u) >> 27);  // 0..31, noisy
  const auto path = tucker_seg::testing::TempDir("large-labels") / "labels.nii.gz";
  ASSERT_TRUE(WriteLabelMap(path.string(), labels).ok());
  std::ifstream file(path, std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  EXPECT_NE(raw.find(std::string("\x1f\x8b\x08\0\0\0\0\0", 8), 1), std::string::npos);  // a second member's header
  const std::string inflated = Decompressed(path);
  ASSERT_GT(inflated.size(), labels.voxels.size());
  auto back = ReadCt(path.string());
  ASSERT_TRUE(back.ok()) << back.status().message();
  ASSERT_EQ(back.value().voxels.size(), labels.voxels.size());
  for (size_t i = 0; i < labels.voxels.size(); ++i) ASSERT_EQ(back.value().voxels[i], labels.voxels[i]) << i;
  const auto python = tucker_seg::testing::RunCommand("/usr/bin/python3 -c \"import gzip, sys; print(len(gzip.open(sys.argv[1]).read()))\" " +
                                                      path.string());
  ASSERT_EQ(python.exit_code, 0) << python.output;
  EXPECT_EQ(std::stoull(python.output), inflated.size());
}

TEST(SegmentationFiles, PerClassFilesAreNamedAsTotalSegmentatorNamesThem) {
  const Case c = MakeCase();
  const auto dir = testing::TempDir("per-class") / "segmentations";
  ASSERT_TRUE(WriteSegmentationFiles(dir.string(), c.labels, c.table, {OutputType::kPerClass, NiftiXformCodes{0, 2}, kProvenance}).ok());
  std::set<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files.insert(e.path().filename().string());
  EXPECT_EQ(files, (std::set<std::string>{"kidney_left.nii.gz", "liver.nii.gz", "stomach.nii.gz"}));  // empty classes too

  auto liver = ReadCt((dir / "liver.nii.gz").string());
  ASSERT_TRUE(liver.ok()) << liver.status().message();
  EXPECT_EQ(liver.value().geometry.size, c.labels.geometry.size);
  for (size_t i = 0; i < c.labels.voxels.size(); ++i) ASSERT_EQ(liver.value().voxels[i], c.labels.voxels[i] == 5 ? 1.0f : 0.0f) << i;
  const auto codes = ReadNiftiXformCodes((dir / "liver.nii.gz").string());
  ASSERT_TRUE(codes.has_value());
  EXPECT_EQ(codes->qform_code, 0);
  EXPECT_EQ(codes->sform_code, 2);

  // An image file name is not a folder.
  EXPECT_FALSE(WriteSegmentationFiles((dir / "x.nii.gz").string(), c.labels, c.table, {OutputType::kPerClass, {}, kProvenance}).ok());
}

TEST(SegmentationFiles, MultilabelCarriesItsLabelTableCodesAndProvenance) {
  const Case c = MakeCase();
  const auto path = testing::TempDir("multilabel") / "ct.nii.gz";
  ASSERT_TRUE(WriteSegmentationFiles(path.string(), c.labels, c.table, {OutputType::kMultilabel, NiftiXformCodes{0, 2}, kProvenance}).ok());
  auto back = ReadCt(path.string());
  ASSERT_TRUE(back.ok()) << back.status().message();
  for (size_t i = 0; i < c.labels.voxels.size(); ++i) ASSERT_EQ(back.value().voxels[i], c.labels.voxels[i]) << i;

  const std::string nifti = Decompressed(path);
  ASSERT_GT(nifti.size(), 352u);
  int16_t qform = 0, sform = 0;
  std::memcpy(&qform, nifti.data() + 252, 2);
  std::memcpy(&sform, nifti.data() + 254, 2);
  EXPECT_EQ(qform, 0);
  EXPECT_EQ(sform, 2);
  EXPECT_EQ(std::string(nifti.data() + 148), "tucker-seg 9.9.9 model=tucker-abdomen-3mm variant=df0.3 agreement=0.936");
  EXPECT_EQ(nifti[348], 1);  // an extension follows
  int32_t esize = 0, ecode = -1;
  std::memcpy(&esize, nifti.data() + 352, 4);
  std::memcpy(&ecode, nifti.data() + 356, 4);
  EXPECT_EQ(ecode, 0);
  EXPECT_EQ(esize % 16, 0);
  const std::string extension = nifti.substr(360, static_cast<size_t>(esize) - 8);
  EXPECT_NE(extension.find("<Label Key=\"5\""), std::string::npos);
  EXPECT_NE(extension.find("<![CDATA[liver]]>"), std::string::npos);
  EXPECT_NE(extension.find("<![CDATA[kidney_left]]>"), std::string::npos);
  float vox_offset = 0;
  std::memcpy(&vox_offset, nifti.data() + 108, 4);
  EXPECT_EQ(static_cast<int>(vox_offset), 352 + esize);

  std::ifstream sidecar_file(path.parent_path() / "ct.json");
  const auto sidecar = nlohmann::json::parse(sidecar_file);
  EXPECT_EQ(sidecar["labels"]["5"], "liver");
  EXPECT_EQ(sidecar["labels"]["3"], "kidney_left");
  EXPECT_EQ(sidecar["variant"], "df0.3");
  EXPECT_DOUBLE_EQ(sidecar["agreement"].get<double>(), 0.9361);
  EXPECT_EQ(sidecar["step"], 0.8);
}

TEST(SegmentationFiles, StatisticsHaveTotalSegmentatorsShapeAndTheirProvenanceBeside) {
  const Case c = MakeCase();
  const auto result = SegmentationStatistics(c.ct, c.labels, c.table, kProvenance, false);
  ASSERT_TRUE(result.ok()) << result.status().message();
  const nlohmann::json& stats = result.value().classes;
  const nlohmann::json& made_by = result.value().provenance;
  // liver: 8 voxels of 2 x 1.5 x 3 = 9 mm3; mean HU (50 + ... + 120) / 8 = 85.
  EXPECT_DOUBLE_EQ(stats["liver"]["volume"].get<double>(), 72.0);
  EXPECT_DOUBLE_EQ(stats["liver"]["intensity"].get<double>(), 85.0);
  EXPECT_DOUBLE_EQ(stats["kidney_left"]["volume"].get<double>(), 9.0);
  EXPECT_DOUBLE_EQ(stats["kidney_left"]["intensity"].get<double>(), 30.0);
  EXPECT_DOUBLE_EQ(stats["stomach"]["volume"].get<double>(), 0.0);
  EXPECT_EQ(stats["liver"].size(), 2u);  // volume and intensity, nothing else
  EXPECT_EQ(made_by["units"]["volume"], "mm3");
  EXPECT_EQ(made_by["model"], "tucker-abdomen-3mm");
  EXPECT_EQ(made_by["variant"], "df0.3");
  EXPECT_EQ(made_by["software_version"], "9.9.9");
  EXPECT_EQ(made_by["step"], 0.8);
  EXPECT_FALSE(stats.contains("background"));
  EXPECT_FALSE(stats.contains("meta"));  // TotalSegmentator's shape: class names only
  EXPECT_EQ(StatisticsProvenancePath("out/statistics.json"), "out/statistics_provenance.json");
  LabelMap other = c.labels;
  other.voxels.pop_back();
  EXPECT_FALSE(SegmentationStatistics(c.ct, other, c.table, kProvenance, false).ok());

  // At the border: kidney_left touches x = 0 and is zeroed; the liver (x 4..5 of 10, y 3..4 of 8,
  // z 3..4 of 10) keeps at least 3 voxels to every face and stays.
  const auto excluding = SegmentationStatistics(c.ct, c.labels, c.table, kProvenance, true).value();
  const nlohmann::json& excluded = excluding.classes;
  EXPECT_DOUBLE_EQ(excluded["kidney_left"]["volume"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(excluded["kidney_left"]["intensity"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(excluded["liver"]["volume"].get<double>(), 72.0);
  EXPECT_EQ(excluding.provenance["excluded_at_border"], (nlohmann::json{"kidney_left"}));
}

TEST(SegmentationFiles, InputsExpandToFilesAndSeriesByContent) {
  const auto dir = testing::TempDir("inputs");
  const Case c = MakeCase();
  ASSERT_TRUE(WriteCt((dir / "b.nii.gz").string(), c.ct).ok());
  ASSERT_TRUE(WriteCt((dir / "a.nii.gz").string(), c.ct).ok());
  auto expanded = ExpandCtInputs({dir.string(), testing::ExampleDicomSeries().string()});
  ASSERT_TRUE(expanded.ok()) << expanded.status().message();
  ASSERT_EQ(expanded.value().size(), 3u);
  EXPECT_EQ(CaseName(expanded.value()[0]), "a");
  EXPECT_EQ(CaseName(expanded.value()[1]), "b");
  EXPECT_EQ(expanded.value()[2], testing::ExampleDicomSeries().string());  // DICOM files without .dcm names
  std::filesystem::create_directories(dir / "empty");
  EXPECT_FALSE(ExpandCtInputs({(dir / "empty").string()}).ok());
}

}  // namespace
}  // namespace tucker_seg
