#include "client/preview.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkPNGImageIOFactory.h>
#include <itkRGBPixel.h>

namespace tucker_seg {
namespace {

using Rgb = itk::RGBPixel<uint8_t>;
using RgbImage = itk::Image<Rgb, 2>;

Rgb Colour(uint8_t id) {  // a stable colour per class id from a palette of distinct hues
  static const uint8_t kPalette[][3] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},  {245, 130, 48}, {145, 30, 180},
                                        {70, 240, 240}, {240, 50, 230}, {210, 245, 60}, {250, 190, 212}, {0, 128, 128}, {220, 190, 255},
                                        {170, 110, 40}, {255, 250, 200}, {128, 0, 0},   {170, 255, 195}};
  const auto& p = kPalette[id % (sizeof kPalette / sizeof kPalette[0])];
  Rgb c;
  c.Set(p[0], p[1], p[2]);
  return c;
}

// One panel: `width` x `height` source samples from voxel(u, v), rows stretched by `aspect`.
template <typename At>
std::vector<std::vector<Rgb>> Panel(int64_t width, int64_t height, double aspect, At at) {
  const int64_t rows = std::max<int64_t>(1, static_cast<int64_t>(std::lround(height * aspect)));
  std::vector<std::vector<Rgb>> panel(static_cast<size_t>(rows), std::vector<Rgb>(static_cast<size_t>(width)));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t v = std::min(height - 1, static_cast<int64_t>(r / aspect));
    for (int64_t u = 0; u < width; ++u) panel[static_cast<size_t>(r)][static_cast<size_t>(u)] = at(u, v);
  }
  return panel;
}

}  // namespace

Status WritePreview(const std::string& path, const CtVolume& ct, const LabelMap& labels) {
  static std::once_flag once;
  std::call_once(once, [] { itk::PNGImageIOFactory::RegisterOneFactory(); });
  const auto& g = ct.geometry;
  if (labels.geometry.size != g.size) return InvalidArgument("preview: labels and CT differ in size");
  const int64_t nx = g.size[0], ny = g.size[1], nz = g.size[2];
  const auto pixel = [&](int64_t x, int64_t y, int64_t z) {
    const size_t i = static_cast<size_t>((z * ny + y) * nx + x);
    const double grey = std::clamp((ct.voxels[i] + 400.0) / 1000.0, 0.0, 1.0) * 255.0;
    Rgb p;
    p.Fill(static_cast<uint8_t>(grey));
    if (const uint8_t id = labels.voxels[i]) {
      const Rgb c = Colour(id);
      for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>(0.5 * p[k] + 0.5 * c[k]);
    }
    return p;
  };
  // Axial: x across, y down. Coronal and sagittal: z up (the last slice at the top).
  const auto axial = Panel(nx, ny, g.spacing[1] / g.spacing[0], [&](int64_t u, int64_t v) { return pixel(u, v, nz / 2); });
  const auto coronal = Panel(nx, nz, g.spacing[2] / g.spacing[0], [&](int64_t u, int64_t v) { return pixel(u, ny / 2, nz - 1 - v); });
  const auto sagittal = Panel(ny, nz, g.spacing[2] / g.spacing[1], [&](int64_t u, int64_t v) { return pixel(nx / 2, u, nz - 1 - v); });

  const size_t height = std::max({axial.size(), coronal.size(), sagittal.size()});
  const size_t width = axial[0].size() + coronal[0].size() + sagittal[0].size() + 8;
  if (height * width > (size_t{1} << 26)) return InvalidArgument("preview: the image would exceed 64 megapixels");
  auto image = RgbImage::New();
  RgbImage::RegionType region;
  region.SetSize(0, width);
  region.SetSize(1, height);
  image->SetRegions(region);
  image->Allocate();
  Rgb black;
  black.Fill(0);
  image->FillBuffer(black);
  size_t left = 0;
  for (const auto* panel : {&axial, &coronal, &sagittal}) {
    for (size_t r = 0; r < panel->size(); ++r)
      for (size_t c = 0; c < (*panel)[r].size(); ++c) image->SetPixel({{static_cast<itk::IndexValueType>(left + c), static_cast<itk::IndexValueType>(r)}}, (*panel)[r][c]);
    left += (*panel)[0].size() + 4;
  }
  try {
    auto writer = itk::ImageFileWriter<RgbImage>::New();
    writer->SetFileName(path);
    writer->SetInput(image);
    writer->Update();
  } catch (const itk::ExceptionObject& e) {
    return Internal("cannot write preview '" + path + "': " + std::string(e.GetDescription()).substr(0, 200));
  }
  return Status::Ok();
}

}  // namespace tucker_seg
