// Composite models (TotalSegmentator's `total`: parts merged into one id space): the label table
// derived by class name, the merge rule where parts overlap, and the checks on composite.json.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "model_store/format/composite.h"
#include "model_store/format/model.h"
#include "model_store/import/nnunet_import.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

// The iso4 conformance model saved as part `part` with these class names (ids 1..5).
void SavePart(const std::filesystem::path& composite, const std::string& part, const std::vector<std::string>& names) {
  NnUNetImportOptions options;
  options.results_dir = testing::ResultsDir("iso4").string();
  options.name = part;
  auto model = ImportNnUNet(options);
  ASSERT_TRUE(model.ok()) << model.status().message();
  ASSERT_EQ(model.value().info.labels.size(), names.size() + 1);
  for (size_t i = 0; i < names.size(); ++i) model.value().info.labels[i + 1].second = names[i];
  ASSERT_TRUE(SaveModel(model.value(), (composite / "parts" / part).string()).ok());
}

// Two parts whose ids overlap (both use 1..5) and share one class name (spleen).
std::filesystem::path TwoParts(const std::string& test) {
  const auto dir = testing::TempDir(test) / "combo";
  SavePart(dir, "organs", {"liver", "spleen", "kidney_left", "kidney_right", "aorta"});
  SavePart(dir, "bones", {"vertebrae_L1", "vertebrae_L2", "spleen", "rib_left_1", "sacrum"});
  return dir;
}

TEST(Composite, LabelsMergeByNameAndLaterPartsWinOverlaps) {
  const auto dir = TwoParts("composite-merge");
  ASSERT_TRUE(WriteCompositeModel(dir.string(), "combo", {"organs", "bones"}).ok());
  ASSERT_TRUE(IsCompositeModel(dir.string()));
  auto model = ReadCompositeModel(dir.string());
  ASSERT_TRUE(model.ok()) << model.status().message();
  const auto& m = model.value();
  EXPECT_EQ(m.name, "combo");
  const LabelTable expected{{0, "background"},    {1, "liver"},        {2, "spleen"}, {3, "kidney_left"},
                            {4, "kidney_right"},  {5, "aorta"},        {6, "vertebrae_L1"}, {7, "vertebrae_L2"},
                            {8, "rib_left_1"},    {9, "sacrum"}};
  EXPECT_EQ(m.labels, expected);
  EXPECT_EQ(m.to_composite_id[0][1], 1);  // organs' 1 (liver)
  EXPECT_EQ(m.to_composite_id[1][1], 6);  // bones' 1 (vertebrae_L1)
  EXPECT_EQ(m.to_composite_id[1][3], 2);  // bones' 3 is spleen: the id organs gave it

  // Voxels: [organs, bones] = [1, 0], [0, 1], [1, 1], [2, 3], [0, 0].
  Geometry g;
  g.size = {{5, 1, 1}};
  const LabelMap organs{g, {1, 0, 1, 2, 0}}, bones{g, {0, 1, 1, 3, 0}};
  LabelMap merged;
  ASSERT_TRUE(MergePartLabels(m, 0, organs, &merged).ok());
  ASSERT_TRUE(MergePartLabels(m, 1, bones, &merged).ok());
  EXPECT_EQ(merged.voxels, (std::vector<uint8_t>{1, 6, 6, 2, 0}));  // the later part wins where both claim a voxel
  EXPECT_FALSE(MergePartLabels(m, 2, bones, &merged).ok());
  LabelMap other_grid{Geometry{}, {1}};
  EXPECT_FALSE(MergePartLabels(m, 0, other_grid, &merged).ok());
}

TEST(Composite, ExplicitLabelsAreHonouredAndBadFilesNamedTheirError) {
  const auto dir = TwoParts("composite-explicit");
  std::ofstream(dir / "composite.json") << R"({"name": "combo", "parts": ["organs", "bones"], "labels": [[0, "background"],
      [1, "spleen"], [5, "liver"], [3, "kidney_left"], [2, "kidney_right"], [7, "aorta"], [27, "vertebrae_L1"], [26, "vertebrae_L2"],
      [92, "rib_left_1"], [25, "sacrum"]]})";
  auto model = ReadCompositeModel(dir.string());
  ASSERT_TRUE(model.ok()) << model.status().message();
  EXPECT_EQ(model.value().to_composite_id[0][1], 5);   // liver -> TotalSegmentator's id 5
  EXPECT_EQ(model.value().to_composite_id[1][1], 27);  // vertebrae_L1 -> 27
  EXPECT_EQ(model.value().to_composite_id[1][3], 1);   // spleen -> 1

  std::ofstream(dir / "composite.json") << R"({"parts": ["organs", "bones"], "labels": [[0, "background"], [1, "liver"]]})";
  auto missing = ReadCompositeModel(dir.string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("class 'spleen' of part 'organs' is not in \"labels\""), std::string::npos)
      << missing.status().message();
  std::ofstream(dir / "composite.json") << R"({"parts": ["../organs"]})";
  EXPECT_FALSE(ReadCompositeModel(dir.string()).ok());
  std::ofstream(dir / "composite.json") << R"({"parts": []})";
  EXPECT_FALSE(ReadCompositeModel(dir.string()).ok());
  std::ofstream(dir / "composite.json") << "not json";
  EXPECT_FALSE(ReadCompositeModel(dir.string()).ok());
}

}  // namespace
}  // namespace tucker_seg
