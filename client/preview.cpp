#include "client/preview.h"

#include <unistd.h>

#include "vocabulary/atomic_file.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <set>

#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkPNGImageIOFactory.h>
#include <itkRGBPixel.h>

namespace tucker_seg {
namespace {

constexpr int64_t kPanelPixels = 512;  // each panel's longer side
constexpr int64_t kGap = 24;  // room between panels for their orientation letters
constexpr int kGlyphScale = 2;         // 5x7 glyphs drawn at 10x14 pixels
constexpr int64_t kLineHeight = 8 * kGlyphScale + 6;

// A 5x7 bitmap font for class names and orientation letters; each row's 5 bits, leftmost first.
const std::map<char, std::array<uint8_t, 7>>& Font() {
  static const std::map<char, std::array<uint8_t, 7>> font = {
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'-', {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c}},
    {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}},
    {'0', {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e}},
    {'1', {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e}},
    {'2', {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f}},
    {'3', {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e}},
    {'4', {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02}},
    {'5', {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e}},
    {'6', {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e}},
    {'7', {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e}},
    {'9', {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c}},
    {':', {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00}},
    {'=', {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00}},
    {'A', {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}},
    {'B', {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e}},
    {'C', {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e}},
    {'D', {0x1e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1e}},
    {'E', {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f}},
    {'F', {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10}},
    {'G', {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f}},
    {'H', {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}},
    {'I', {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f}},
    {'M', {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}},
    {'P', {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10}},
    {'Q', {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d}},
    {'R', {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11}},
    {'S', {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e}},
    {'T', {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a}},
    {'X', {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04}},
    {'Z', {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f}},
    {'a', {0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f}},
    {'b', {0x10, 0x10, 0x1e, 0x11, 0x11, 0x11, 0x1e}},
    {'c', {0x00, 0x00, 0x0f, 0x10, 0x10, 0x10, 0x0f}},
    {'d', {0x01, 0x01, 0x0f, 0x11, 0x11, 0x11, 0x0f}},
    {'e', {0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0f}},
    {'f', {0x06, 0x08, 0x1e, 0x08, 0x08, 0x08, 0x08}},
    {'g', {0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x0e}},
    {'h', {0x10, 0x10, 0x1e, 0x11, 0x11, 0x11, 0x11}},
    {'i', {0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e}},
    {'j', {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0c}},
    {'k', {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}},
    {'l', {0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}},
    {'m', {0x00, 0x00, 0x1a, 0x15, 0x15, 0x15, 0x15}},
    {'n', {0x00, 0x00, 0x1e, 0x11, 0x11, 0x11, 0x11}},
    {'o', {0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e}},
    {'p', {0x00, 0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10}},
    {'q', {0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x01}},
    {'r', {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}},
    {'s', {0x00, 0x00, 0x0f, 0x10, 0x0e, 0x01, 0x1e}},
    {'t', {0x08, 0x08, 0x1e, 0x08, 0x08, 0x09, 0x06}},
    {'u', {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d}},
    {'v', {0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04}},
    {'w', {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a}},
    {'x', {0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11}},
    {'y', {0x00, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e}},
    {'z', {0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f}},

  };
  return font;
}

// The volume seen along the patient's axes: canonical axis a (0 = L, 1 = P, 2 = S, LPS as ITK
// uses) is voxel axis `axis[a]`, running backwards when `flip[a]`.
struct PatientAxes {
  std::array<int, 3> axis{0, 1, 2};
  std::array<bool, 3> flip{false, false, false};
  std::array<int64_t, 3> size{};
  std::array<double, 3> spacing{};
};

PatientAxes ToPatientAxes(const Geometry& g) {
  PatientAxes p;
  std::array<bool, 3> used{false, false, false};
  for (int voxel_axis = 0; voxel_axis < 3; ++voxel_axis) {
    int best = 0;
    double best_value = -1;
    for (int a = 0; a < 3; ++a) {  // column voxel_axis of the direction matrix
      const double v = std::fabs(g.direction[static_cast<size_t>(a * 3 + voxel_axis)]);
      if (!used[static_cast<size_t>(a)] && v > best_value) best_value = v, best = a;
    }
    used[static_cast<size_t>(best)] = true;
    p.axis[static_cast<size_t>(best)] = voxel_axis;
    p.flip[static_cast<size_t>(best)] = g.direction[static_cast<size_t>(best * 3 + voxel_axis)] < 0;
    p.size[static_cast<size_t>(best)] = g.size[static_cast<size_t>(voxel_axis)];
    p.spacing[static_cast<size_t>(best)] = g.spacing[static_cast<size_t>(voxel_axis)];
  }
  return p;
}

class Canvas {
 public:
  Canvas(int64_t width, int64_t height) : width_(width), height_(height), pixels_(static_cast<size_t>(width * height), Rgb8{0, 0, 0}) {}
  void Set(int64_t x, int64_t y, const Rgb8& c) {
    if (x >= 0 && y >= 0 && x < width_ && y < height_) pixels_[static_cast<size_t>(y * width_ + x)] = c;
  }
  void Fill(int64_t x, int64_t y, int64_t w, int64_t h, const Rgb8& c) {
    for (int64_t j = y; j < y + h; ++j)
      for (int64_t i = x; i < x + w; ++i) Set(i, j, c);
  }
  // Returns the x after the text.
  int64_t Text(int64_t x, int64_t y, const std::string& text, const Rgb8& c) {
    for (char ch : text) {
      const auto it = Font().find(ch);
      if (it != Font().end()) {
        for (int row = 0; row < 7; ++row)
          for (int col = 0; col < 5; ++col)
            if (it->second[static_cast<size_t>(row)] & (0x10 >> col)) Fill(x + col * kGlyphScale, y + row * kGlyphScale, kGlyphScale, kGlyphScale, c);
      }
      x += 6 * kGlyphScale;
    }
    return x;
  }
  std::vector<Rgb8> Take() { return std::move(pixels_); }

 private:
  int64_t width_, height_;
  std::vector<Rgb8> pixels_;
};

Rgb8 Blend(float hu, uint8_t id) {
  const auto grey = static_cast<uint8_t>(std::clamp((hu + 400.0) / 1000.0, 0.0, 1.0) * 255.0);
  Rgb8 p{grey, grey, grey};
  if (id) {
    const Rgb8 c = LabelColour(id);
    for (size_t k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>(0.45 * p[k] + 0.55 * c[k]);
  }
  return p;
}

// One view: screen column u follows canonical axis `across` (forward or backward), screen row v
// follows canonical axis `down`; `fixed` is held at its middle slice.
struct View {
  const char* name;
  int across, down, fixed;
  bool across_backwards, down_backwards;
  const char *left_letter, *right_letter, *top_letter;
};

}  // namespace

Result<PreviewImage> RenderPreview(const CtVolume& ct, const LabelMap& labels, const LabelTable& table) {
  const auto& g = ct.geometry;
  if (labels.geometry.size != g.size) return InvalidArgument("preview: labels and CT differ in size");
  const PatientAxes p = ToPatientAxes(g);
  const auto voxel = [&](const std::array<int64_t, 3>& canonical) {
    std::array<int64_t, 3> index{};
    for (size_t a = 0; a < 3; ++a) {
      const int64_t c = p.flip[a] ? p.size[a] - 1 - canonical[a] : canonical[a];
      index[static_cast<size_t>(p.axis[a])] = c;
    }
    return static_cast<size_t>((index[2] * g.size[1] + index[1]) * g.size[0] + index[0]);
  };
  // L = 0, P = 1, S = 2. Patient's left to the screen's right; superior up; anterior up (axial)
  // and left (sagittal).
  const View views[] = {{"axial", 0, 1, 2, false, false, "R", "L", "A"},
                        {"coronal", 0, 2, 1, false, true, "R", "L", "S"},
                        {"sagittal", 1, 2, 0, false, true, "A", "P", "S"}};
  PreviewImage image;
  struct Sized {
    int64_t width, height;
    double mm_per_pixel;
  };
  std::vector<Sized> sizes;
  for (const View& v : views) {
    const double across_mm = static_cast<double>(p.size[static_cast<size_t>(v.across)]) * p.spacing[static_cast<size_t>(v.across)];
    const double down_mm = static_cast<double>(p.size[static_cast<size_t>(v.down)]) * p.spacing[static_cast<size_t>(v.down)];
    const double mm_per_pixel = std::max(across_mm, down_mm) / kPanelPixels;
    sizes.push_back({std::max<int64_t>(1, std::lround(across_mm / mm_per_pixel)), std::max<int64_t>(1, std::lround(down_mm / mm_per_pixel)),
                     mm_per_pixel});
  }
  // Legend: the classes present, in id order, as many columns as fit.
  std::set<uint8_t> present(labels.voxels.begin(), labels.voxels.end());
  present.erase(0);
  std::map<int64_t, std::string> names(table.begin(), table.end());
  int64_t panels_width = kGap;
  int64_t panels_height = 0;
  for (const auto& s : sizes) panels_width += s.width + kGap, panels_height = std::max(panels_height, s.height);
  const int64_t top = kLineHeight;  // orientation letters above the panels
  const int64_t column_width = 24 * 6 * kGlyphScale;
  const int64_t columns = std::max<int64_t>(1, panels_width / column_width);
  const int64_t legend_rows = (static_cast<int64_t>(present.size()) + columns - 1) / columns;
  image.width = panels_width;
  image.height = top + panels_height + kGap + legend_rows * kLineHeight + kGap;
  if (image.width * image.height > (int64_t{1} << 26)) return InvalidArgument("preview: the image would exceed 64 megapixels");
  Canvas canvas(image.width, image.height);

  int64_t left = kGap;
  const Rgb8 white{255, 255, 255};
  for (size_t k = 0; k < 3; ++k) {
    const View& v = views[k];
    const Sized& s = sizes[k];
    std::array<int64_t, 3> c{};
    c[static_cast<size_t>(v.fixed)] = p.size[static_cast<size_t>(v.fixed)] / 2;
    const auto along = [&](int axis, int64_t pixel, bool backwards) {
      const int64_t n = p.size[static_cast<size_t>(axis)];
      const int64_t i = std::min(n - 1, static_cast<int64_t>((static_cast<double>(pixel) + 0.5) * s.mm_per_pixel / p.spacing[static_cast<size_t>(axis)]));
      return backwards ? n - 1 - i : i;
    };
    for (int64_t y = 0; y < s.height; ++y) {
      c[static_cast<size_t>(v.down)] = along(v.down, y, v.down_backwards);
      for (int64_t x = 0; x < s.width; ++x) {
        c[static_cast<size_t>(v.across)] = along(v.across, x, v.across_backwards);
        const size_t i = voxel(c);
        canvas.Set(left + x, top + y, Blend(ct.voxels[i], labels.voxels[i]));
      }
    }
    canvas.Text(left, 2, v.left_letter, white);
    canvas.Text(left + s.width - 5 * kGlyphScale, 2, v.right_letter, white);
    canvas.Text(left + s.width / 2 - 2 * kGlyphScale, 2, v.top_letter, white);
    image.panels.push_back({v.name, left, top, s.width, s.height});
    left += s.width + kGap;
  }
  int64_t entry = 0;
  for (uint8_t id : present) {
    const int64_t x = kGap + (entry % columns) * column_width;
    const int64_t y = top + panels_height + kGap + (entry / columns) * kLineHeight;
    canvas.Fill(x, y, 7 * kGlyphScale, 7 * kGlyphScale, LabelColour(id));
    const std::string name = names.count(id) ? names[id] : "label_" + std::to_string(id);
    canvas.Text(x + 10 * kGlyphScale, y, std::to_string(id) + " " + name.substr(0, 20), white);
    ++entry;
  }
  image.pixels = canvas.Take();
  return image;
}

Status WritePreview(const std::string& path, const CtVolume& ct, const LabelMap& labels, const LabelTable& table) {
  static std::once_flag once;
  std::call_once(once, [] { itk::PNGImageIOFactory::RegisterOneFactory(); });
  TS_ASSIGN_OR_RETURN(const PreviewImage preview, RenderPreview(ct, labels, table));
  using Rgb = itk::RGBPixel<uint8_t>;
  using RgbImage = itk::Image<Rgb, 2>;
  auto image = RgbImage::New();
  RgbImage::RegionType region;
  region.SetSize(0, static_cast<itk::SizeValueType>(preview.width));
  region.SetSize(1, static_cast<itk::SizeValueType>(preview.height));
  image->SetRegions(region);
  image->Allocate();
  Rgb* out = image->GetBufferPointer();
  for (size_t i = 0; i < preview.pixels.size(); ++i) out[i].Set(preview.pixels[i][0], preview.pixels[i][1], preview.pixels[i][2]);
  const std::string temporary = path + ".tmp-" + std::to_string(getpid()) + ".png";  // ITK picks PNG by the name
  try {
    auto writer = itk::ImageFileWriter<RgbImage>::New();
    writer->SetFileName(temporary);
    writer->SetInput(image);
    writer->Update();
  } catch (const itk::ExceptionObject& e) {
    std::remove(temporary.c_str());
    return Internal("cannot write preview '" + path + "': " + std::string(e.GetDescription()).substr(0, 200));
  }
  return CommitWrittenFile(temporary, path);
}

}  // namespace tucker_seg
