// The preview in radiological convention whatever the storage order, its size, its legend, and
// a palette that tells TotalSegmentator's 117 classes apart.
#include <gtest/gtest.h>

#include <cmath>

#include "client/preview.h"
#include "vocabulary/label_palette.h"

namespace tucker_seg {
namespace {

// A 40 x 30 x 20 CT whose patient-left half (LPS +x) holds a labelled marker (id 7). `flip_x`
// stores the same patient with x running right-to-left (direction -1, origin moved): a viewer
// that follows storage order would show the marker on the other side.
struct Marked {
  CtVolume ct;
  LabelMap labels;
};
Marked MarkerOnPatientLeft(bool flip_x) {
  Marked m;
  Geometry g;
  g.size = {{40, 30, 20}};
  g.spacing = {{1.0, 1.0, 2.0}};
  if (flip_x) g.direction[0] = -1;
  m.ct.geometry = m.labels.geometry = g;
  m.ct.voxels.assign(static_cast<size_t>(g.NumVoxels()), 0.0f);
  m.labels.voxels.assign(static_cast<size_t>(g.NumVoxels()), 0);
  for (int64_t z = 0; z < 20; ++z)
    for (int64_t y = 10; y < 20; ++y)
      for (int64_t left = 30; left < 38; ++left) {  // patient-left columns in LPS order
        const int64_t x = flip_x ? 39 - left : left;
        m.labels.voxels[static_cast<size_t>((z * 30 + y) * 40 + x)] = 7;
      }
  return m;
}

// Fraction of the axial panel's right half that shows the marker's colour tint.
double MarkerShareOnTheRight(const PreviewImage& image) {
  const auto& axial = image.panels[0];
  int64_t right = 0, left = 0;
  const Rgb8 c = LabelColour(7);
  for (int64_t y = axial.top; y < axial.top + axial.height; ++y)
    for (int64_t x = axial.left; x < axial.left + axial.width; ++x) {
      const Rgb8& p = image.At(x, y);
      const bool tinted = std::abs(p[0] - 0.55 * c[0] - 0.45 * 102) < 3 && std::abs(p[1] - 0.55 * c[1] - 0.45 * 102) < 3;
      if (tinted) (x >= axial.left + axial.width / 2 ? right : left) += 1;
    }
  return right + left ? static_cast<double>(right) / static_cast<double>(right + left) : 0;
}

TEST(Preview, PatientLeftIsOnTheImageRightWhateverTheStorageOrder) {
  const LabelTable table{{0, "background"}, {7, "marker"}};
  for (bool flip : {false, true}) {
    const Marked m = MarkerOnPatientLeft(flip);
    auto image = RenderPreview(m.ct, m.labels, table);
    ASSERT_TRUE(image.ok()) << image.status().message();
    ASSERT_EQ(image.value().panels.size(), 3u);
    EXPECT_EQ(image.value().panels[0].view, "axial");
    EXPECT_GT(MarkerShareOnTheRight(image.value()), 0.99) << (flip ? "x stored right-to-left" : "x stored left-to-right");
  }
}

TEST(Preview, PanelsAreAtLeast512PixelsAndTheLegendShowsEachClass) {
  const Marked m = MarkerOnPatientLeft(false);
  auto image = RenderPreview(m.ct, m.labels, {{0, "background"}, {7, "marker"}});
  ASSERT_TRUE(image.ok());
  for (const auto& panel : image.value().panels) EXPECT_GE(std::max(panel.width, panel.height), 512) << panel.view;
  // The legend swatch (below the panels) is drawn in the class's own colour.
  int64_t panels_bottom = 0;
  for (const auto& panel : image.value().panels) panels_bottom = std::max(panels_bottom, panel.top + panel.height);
  int64_t swatch = 0;
  for (int64_t y = panels_bottom; y < image.value().height; ++y)
    for (int64_t x = 0; x < image.value().width; ++x) swatch += image.value().At(x, y) == LabelColour(7);
  EXPECT_GT(swatch, 100);
}

TEST(Preview, PaletteTellsTheTotalSegmentatorClassesApart) {
  double closest = 1e9;
  for (int64_t a = 1; a <= 117; ++a)
    for (int64_t b = 1; b < a; ++b) {
      const auto la = SrgbToCieLab(LabelColour(a)), lb = SrgbToCieLab(LabelColour(b));
      closest = std::min(closest, std::hypot(la[0] - lb[0], la[1] - lb[1], la[2] - lb[2]));
    }
  EXPECT_GT(closest, 12.0);  // CIE76; about 2.3 is a just-noticeable difference
  const auto white = SrgbToCieLab({255, 255, 255});
  EXPECT_NEAR(white[0], 100.0, 0.01);
  EXPECT_NEAR(white[1], 0.0, 0.01);
}

}  // namespace
}  // namespace tucker_seg
