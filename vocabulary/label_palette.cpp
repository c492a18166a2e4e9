#include "vocabulary/label_palette.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tucker_seg {
namespace {

double Distance(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return std::sqrt((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) + (a[2] - b[2]) * (a[2] - b[2]));
}

std::vector<Rgb8> FarthestPointPalette() {
  std::vector<Rgb8> candidates;
  std::vector<std::array<double, 3>> lab;
  for (int r = 0; r < 6; ++r)
    for (int g = 0; g < 6; ++g)
      for (int b = 0; b < 6; ++b) {
        const Rgb8 c{static_cast<uint8_t>(51 * r), static_cast<uint8_t>(51 * g), static_cast<uint8_t>(51 * b)};
        const auto l = SrgbToCieLab(c);
        if (l[0] < 30 || std::hypot(l[1], l[2]) < 15) continue;  // too dark to see on CT, or grey like CT
        candidates.push_back(c);
        lab.push_back(l);
      }
  std::vector<Rgb8> palette;
  std::vector<double> nearest(candidates.size(), 1e300);
  std::vector<bool> taken(candidates.size(), false);
  size_t next = static_cast<size_t>(std::find(candidates.begin(), candidates.end(), Rgb8{255, 0, 0}) - candidates.begin());
  while (palette.size() < candidates.size()) {
    palette.push_back(candidates[next]);
    taken[next] = true;
    size_t best = next;
    double best_distance = -1;
    for (size_t i = 0; i < candidates.size(); ++i) {
      nearest[i] = std::min(nearest[i], Distance(lab[i], lab[next]));
      if (!taken[i] && nearest[i] > best_distance) best_distance = nearest[i], best = i;
    }
    next = best;
  }
  return palette;
}

}  // namespace

Rgb8 LabelColour(int64_t id) {
  if (id <= 0) return {0, 0, 0};
  static const std::vector<Rgb8> palette = FarthestPointPalette();
  return palette[static_cast<size_t>(id - 1) % palette.size()];
}

std::array<double, 3> SrgbToCieLab(const Rgb8& rgb) {
  double linear[3];
  for (int i = 0; i < 3; ++i) {
    const double c = rgb[static_cast<size_t>(i)] / 255.0;
    linear[i] = c <= 0.04045 ? c / 12.92 : std::pow((c + 0.055) / 1.055, 2.4);
  }
  // sRGB -> XYZ (D65), normalised by the white point.
  const double x = (0.4124564 * linear[0] + 0.3575761 * linear[1] + 0.1804375 * linear[2]) / 0.95047;
  const double y = 0.2126729 * linear[0] + 0.7151522 * linear[1] + 0.0721750 * linear[2];
  const double z = (0.0193339 * linear[0] + 0.1191920 * linear[1] + 0.9503041 * linear[2]) / 1.08883;
  const auto f = [](double t) { return t > 216.0 / 24389 ? std::cbrt(t) : (24389.0 / 27 * t + 16) / 116; };
  return {116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))};
}

}  // namespace tucker_seg
