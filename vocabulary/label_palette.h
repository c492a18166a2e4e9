// One colour per class id, shared by every output that shows classes (PNG preview, DICOM SEG's
// RecommendedDisplayCIELabValue, the NIfTI label table), so a class looks the same everywhere.
#pragma once

#include <array>
#include <cstdint>

namespace tucker_seg {

using Rgb8 = std::array<uint8_t, 3>;

// Id k >= 1 gets the k-th colour of a farthest-point sequence in CIE L*a*b* over the 6x6x6 sRGB
// grid (colours neither dark nor grey, starting from red): each next colour is the one farthest
// from all before it, so any n first ids are as far apart as this greedy order makes them
// (ids 1..117, TotalSegmentator's classes, at least 14 CIE76 units apart). Ids past the
// sequence's length wrap around; id 0 (background) is black.
Rgb8 LabelColour(int64_t id);

// CIE L*a*b* (D65) of an sRGB colour: L in [0, 100], a and b about [-128, 127].
std::array<double, 3> SrgbToCieLab(const Rgb8& rgb);

}  // namespace tucker_seg
