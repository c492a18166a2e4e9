// A PNG overview of a segmentation: the middle axial, coronal and sagittal slices in
// radiological convention whatever the input's orientation (axial seen from the feet and coronal
// from the front: the patient's right on the image's left; anterior up in the axial, superior up
// in the coronal and sagittal, anterior left in the sagittal), each panel at least 512 pixels on
// its longer side, classes in the shared palette, and a legend of the classes present.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "image_io/segmentation_files.h"
#include "vocabulary/label_palette.h"
#include "vocabulary/status.h"
#include "vocabulary/volume.h"

namespace tucker_seg {

struct PreviewImage {
  int64_t width = 0, height = 0;
  std::vector<Rgb8> pixels;  // row-major, top row first
  struct Panel {
    std::string view;  // "axial", "coronal", "sagittal"
    int64_t left = 0, top = 0, width = 0, height = 0;
  };
  std::vector<Panel> panels;
  const Rgb8& At(int64_t x, int64_t y) const { return pixels[static_cast<size_t>(y * width + x)]; }
};

// Voxel axes are matched to the patient's axes by their nearest direction (oblique scans are
// shown as the nearest axis-aligned view).
Result<PreviewImage> RenderPreview(const CtVolume& ct, const LabelMap& labels, const LabelTable& table);

Status WritePreview(const std::string& path, const CtVolume& ct, const LabelMap& labels, const LabelTable& table);

}  // namespace tucker_seg
