// A PNG preview of a segmentation: the CT (window -400..600 HU) with coloured label overlays on
// its middle axial, coronal and sagittal slices, side by side, at physical aspect ratio.
#pragma once

#include <string>

#include "vocabulary/status.h"
#include "vocabulary/volume.h"

namespace tucker_seg {

Status WritePreview(const std::string& path, const CtVolume& ct, const LabelMap& labels);

}  // namespace tucker_seg
