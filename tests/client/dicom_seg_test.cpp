// DICOM SEG read back by an independent reader (pydicom): TotalSegmentator's SNOMED CT codes,
// laterality, the palette's colour, provenance, deflated transfer syntax; dciodvfy finds no error.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include <dcmtk/dcmiod/cielabutil.h>
#include <nlohmann/json.hpp>

#include "client/dicom_seg.h"
#include "image_io/image_io.h"
#include "support/run_command.h"
#include "test_paths.h"
#include "vocabulary/label_palette.h"

namespace tucker_seg {
namespace {

class DicomSeg : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto input = ReadCtInput(testing::ExampleDicomSeries().string());
    ASSERT_TRUE(input.ok()) << input.status().message();
    input_ = new CtInput(std::move(input.value()));
    // Each test runs in its own process under CTest: one folder per process.
    path_ = new std::string((testing::TempDir("dicom-seg-" + std::to_string(getpid())) / "seg.dcm").string());
    // liver (5) and kidney_left (3) blocks in a few slices; 200 is a class the mapping lacks.
    LabelMap labels{input_->ct.geometry, std::vector<uint8_t>(input_->ct.voxels.size(), 0)};
    const auto& size = labels.geometry.size;
    for (int64_t z = 4; z < 12; ++z)
      for (int64_t y = 200; y < 260; ++y)
        for (int64_t x = 100; x < 400; ++x) {
          const uint8_t id = x < 200 ? 5 : x < 300 ? 3 : z < 6 ? 200 : 0;
          labels.voxels[static_cast<size_t>((z * size[1] + y) * size[0] + x)] = id;
        }
    const LabelTable table{{0, "background"}, {3, "kidney_left"}, {5, "liver"}, {200, "not_in_the_mapping"}};
    const Provenance provenance{"tucker-abdomen-3mm", "df0.3", 0.936, "9.9.9", 0.5};
    status_ = new Status(WriteDicomSeg(*path_, labels, *input_->dicom, table, provenance));
    labelmap_path_ = new std::string(*path_ + ".labelmap.dcm");
    labelmap_status_ = new Status(WriteDicomSeg(*labelmap_path_, labels, *input_->dicom, table, provenance, DicomSegType::kLabelMap));
  }
  static void TearDownTestSuite() {
    delete input_;
    delete path_;
    delete status_;
    delete labelmap_path_;
    delete labelmap_status_;
  }
  static CtInput* input_;
  static std::string *path_, *labelmap_path_;
  static Status *status_, *labelmap_status_;
};
CtInput* DicomSeg::input_ = nullptr;
std::string* DicomSeg::path_ = nullptr;
std::string* DicomSeg::labelmap_path_ = nullptr;
Status* DicomSeg::status_ = nullptr;
Status* DicomSeg::labelmap_status_ = nullptr;

std::string CheckScript() { return "/usr/bin/python3 " + (testing::SourceDir() / "tests/client/check_dicom_seg.py").string(); }

nlohmann::json Code(const std::string& scheme, const std::string& value, const std::string& meaning) {
  return {{"scheme", scheme}, {"value", value}, {"meaning", meaning}};
}

std::vector<int> DicomLab(int64_t id) {
  const auto lab = SrgbToCieLab(LabelColour(id));
  double l = 0, a = 0, b = 0;
  IODCIELabUtil::lab2DicomLab(l, a, b, lab[0], lab[1], lab[2]);
  return {static_cast<int>(std::lround(l)), static_cast<int>(std::lround(a)), static_cast<int>(std::lround(b))};
}

TEST_F(DicomSeg, PydicomReadsCodesColoursAndProvenance) {
  ASSERT_TRUE(status_->ok()) << status_->message();
  const auto read = testing::RunCommand(CheckScript() + " " + *path_);
  ASSERT_EQ(read.exit_code, 0) << read.output;
  const auto seg = nlohmann::json::parse(read.output);
  EXPECT_EQ(seg["transfer_syntax"], "1.2.840.10008.1.2.1.99");  // Deflated Explicit VR Little Endian
  EXPECT_EQ(seg["series_description"], "tucker-seg tucker-abdomen-3mm df0.3");
  EXPECT_EQ(seg["content_description"], "df0.3 of tucker-abdomen-3mm, agreement 0.936");
  EXPECT_EQ(seg["software_versions"], "9.9.9");

  const auto& liver = seg["segments"]["liver"];
  EXPECT_EQ(liver["category"], Code("SCT", "123037004", "Anatomical Structure"));
  EXPECT_EQ(liver["type"], Code("SCT", "10200004", "Liver"));
  EXPECT_TRUE(liver["type_modifiers"].empty());
  EXPECT_EQ(liver["lab"], nlohmann::json(DicomLab(5)));
  EXPECT_EQ(liver["algorithm"], "tucker-seg tucker-abdomen-3mm/df0.3");

  const auto& kidney = seg["segments"]["kidney_left"];
  EXPECT_EQ(kidney["type"], Code("SCT", "64033007", "Kidney"));
  ASSERT_EQ(kidney["type_modifiers"].size(), 1u);
  EXPECT_EQ(kidney["type_modifiers"][0], Code("SCT", "7771000", "Left"));
  EXPECT_EQ(kidney["lab"], nlohmann::json(DicomLab(3)));
  EXPECT_NE(kidney["lab"], liver["lab"]);

  EXPECT_EQ(seg["segments"]["not_in_the_mapping"]["type"], Code("SCT", "85756007", "Tissue"));
  EXPECT_EQ(seg["frames"], 8 + 8 + 2);  // one frame per (segment, slice holding it)
}

// The LABELMAP SEG (DICOM 2024c): its SOP class, one 8-bit frame per slice at that slice's
// position, pixel values = segment numbers (counted per segment by pydicom), no segment
// identification per frame; the same coded segments as the binary SEG.
TEST_F(DicomSeg, LabelMapHasOneFramePerSliceWithSegmentNumbers) {
  ASSERT_TRUE(labelmap_status_->ok()) << labelmap_status_->message();
  const auto read = testing::RunCommand(CheckScript() + " " + *labelmap_path_);
  ASSERT_EQ(read.exit_code, 0) << read.output;
  const auto seg = nlohmann::json::parse(read.output);
  EXPECT_EQ(seg["sop_class"], "1.2.840.10008.5.1.4.1.1.66.7");  // Label Map Segmentation Storage
  EXPECT_EQ(seg["segmentation_type"], "LABELMAP");
  const auto& slices = input_->dicom->slices;
  EXPECT_EQ(seg["frames"], static_cast<int>(slices.size()));
  const auto& map = seg["labelmap"];
  EXPECT_EQ(map["bits_allocated"], 8);
  EXPECT_EQ(map["pixel_padding_value"], 0);
  EXPECT_FALSE(map["segment_identification_per_frame"].get<bool>());
  ASSERT_EQ(map["frame_z"].size(), slices.size());
  for (size_t k = 0; k < slices.size(); ++k) EXPECT_NEAR(map["frame_z"][k].get<double>(), slices[k].position[2], 1e-3) << "frame " << k;
  EXPECT_EQ(map["voxels"]["liver"], 8 * 60 * 100);
  EXPECT_EQ(map["voxels"]["kidney_left"], 8 * 60 * 100);
  EXPECT_EQ(map["voxels"]["not_in_the_mapping"], 2 * 60 * 100);
  EXPECT_EQ(map["voxels"]["background"], static_cast<int64_t>(input_->ct.voxels.size()) - (8 + 8 + 2) * 60 * 100);
  EXPECT_EQ(map["value_at"]["4,200,100"], "liver");
  EXPECT_EQ(map["value_at"]["5,230,250"], "kidney_left");
  EXPECT_EQ(map["value_at"]["5,230,350"], "not_in_the_mapping");
  EXPECT_EQ(map["value_at"]["6,230,350"], "background");
  EXPECT_EQ(map["value_at"]["3,230,150"], "background");
  EXPECT_EQ(seg["segments"]["kidney_left"]["type_modifiers"][0], Code("SCT", "7771000", "Left"));
  EXPECT_EQ(seg["segments"]["liver"]["lab"], nlohmann::json(DicomLab(5)));
  std::cout << "[ size     ] binary SEG " << std::filesystem::file_size(*path_) << " bytes, LABELMAP SEG "
            << std::filesystem::file_size(*labelmap_path_) << " bytes (deflated)\n";
}

TEST_F(DicomSeg, DciodvfyFindsNoError) {
  ASSERT_TRUE(status_->ok()) << status_->message();
  const std::string inflated = *path_ + ".inflated.dcm";
  const auto copy = testing::RunCommand(CheckScript() + " " + *path_ + " --inflate " + inflated);
  ASSERT_EQ(copy.exit_code, 0) << copy.output;
  const auto check = testing::RunCommand("dciodvfy -new " + inflated);
  ASSERT_NE(check.output.find("Segmentation"), std::string::npos) << check.output;  // it recognised the IOD
  EXPECT_EQ(check.output.find("Error"), std::string::npos) << check.output;
}

TEST_F(DicomSeg, DeflatedIsSmallerThanTheSourceSeries) {
  ASSERT_TRUE(status_->ok());
  uintmax_t series_bytes = 0;
  for (const auto& slice : input_->dicom->slices) series_bytes += std::filesystem::file_size(slice.path);
  EXPECT_LT(std::filesystem::file_size(*path_), series_bytes / 20);
}

}  // namespace
}  // namespace tucker_seg
