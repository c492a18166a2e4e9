#include "model_store/training/training_data.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace tucker_seg {

Result<IntensityProperties> ForegroundIntensity(const CtVolume& ct, const LabelValues& labels, const std::vector<int64_t>& ids) {
  if (labels.voxels.size() != ct.voxels.size()) return InvalidArgument("labels and image have different sizes");
  const std::set<int64_t> wanted(ids.begin(), ids.end());
  std::vector<float> values;
  for (size_t i = 0; i < ct.voxels.size(); ++i)
    if (wanted.count(static_cast<int64_t>(std::lround(labels.voxels[i])))) values.push_back(ct.voxels[i]);
  if (values.empty()) return InvalidArgument("no voxel carries any of the model's labels");
  std::sort(values.begin(), values.end());
  auto percentile = [&](double q) {  // numpy's linear interpolation
    const double pos = q / 100.0 * static_cast<double>(values.size() - 1);
    const auto lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, values.size() - 1);
    return values[lo] + (pos - static_cast<double>(lo)) * (values[hi] - values[lo]);
  };
  double sum = 0, sum_sq = 0;
  for (float v : values) sum += v, sum_sq += static_cast<double>(v) * v;
  const double n = static_cast<double>(values.size());
  IntensityProperties p;
  p.mean = sum / n;
  p.std = std::sqrt(std::max(0.0, sum_sq / n - p.mean * p.mean));
  p.median = percentile(50);
  p.min = values.front();
  p.max = values.back();
  p.percentile_00_5 = percentile(0.5);
  p.percentile_99_5 = percentile(99.5);
  return p;
}

Result<TrainingCase> MakeTrainingCase(const ModelInfo& info, const CtVolume& ct, const LabelValues* labels) {
  TS_RETURN_IF_ERROR(ValidateCt(ct, PredictionOptions{}.max_voxels));
  auto pre = Preprocess(info, ct);
  if (!pre.ok()) return pre.status();
  TrainingCase c;
  c.image = pre.value().image;
  if (!labels) return c;
  LabelValues aligned;
  if (!(labels->geometry == ct.geometry)) {  // e.g. a label map stored with flipped axes
    aligned = ResampleLabelsNearest(*labels, ct.geometry);
    labels = &aligned;
  }
  std::vector<float> lut(256, 0.0f);  // label id -> output index
  for (size_t i = 0; i < info.labels.size(); ++i) lut[static_cast<size_t>(info.labels[i].first)] = static_cast<float>(i);
  const Int3 s = ToZyx(ct.geometry.size);
  auto ids = torch::from_blob(const_cast<float*>(labels->voxels.data()), {s[0], s[1], s[2]}, torch::kFloat32)
                 .round().clamp(0, 255).to(torch::kInt64);
  auto index = torch::from_blob(lut.data(), {256}, torch::kFloat32).index({ids});
  const auto& p = pre.value();
  index = index.permute({p.axes[0], p.axes[1], p.axes[2]});
  for (int a = 0; a < 3; ++a) index = index.narrow(a, p.crop_begin[a], p.crop_shape[a]);
  namespace F = torch::nn::functional;
  const std::vector<int64_t> shape{p.image.size(1), p.image.size(2), p.image.size(3)};
  c.labels = F::interpolate(index.unsqueeze(0).unsqueeze(0).contiguous(),
                            F::InterpolateFuncOptions().size(shape).mode(torch::kNearestExact))
                 .squeeze(0)
                 .squeeze(0)
                 .round()
                 .to(torch::kInt64);
  if (!p.FlipDims().empty()) c.labels = c.labels.flip(p.FlipDims());
  return c;
}

LabelValues ResampleLabelsNearest(const LabelValues& labels, const Geometry& target) {
  const Geometry& g = labels.geometry;
  LabelValues out;
  out.geometry = target;
  out.voxels.assign(static_cast<size_t>(target.NumVoxels()), 0.0f);
  size_t i = 0;
  for (int64_t z = 0; z < target.size[2]; ++z)
    for (int64_t y = 0; y < target.size[1]; ++y)
      for (int64_t x = 0; x < target.size[0]; ++x, ++i) {
        const double idx[3] = {static_cast<double>(x), static_cast<double>(y), static_cast<double>(z)};
        double point[3];
        for (int w = 0; w < 3; ++w) {
          point[w] = target.origin[w];
          for (int a = 0; a < 3; ++a) point[w] += target.direction[w * 3 + a] * target.spacing[a] * idx[a];
        }
        int64_t src[3];
        bool inside = true;
        for (int a = 0; a < 3; ++a) {
          double c = 0;  // direction is orthonormal: its transpose is its inverse
          for (int w = 0; w < 3; ++w) c += g.direction[w * 3 + a] * (point[w] - g.origin[w]);
          src[a] = std::llround(c / g.spacing[a]);
          inside = inside && src[a] >= 0 && src[a] < g.size[a];
        }
        if (inside) out.voxels[i] = labels.voxels[static_cast<size_t>(src[0] + g.size[0] * (src[1] + g.size[1] * src[2]))];
      }
  return out;
}

std::map<int64_t, double> DicePerLabel(const LabelMap& prediction, const LabelValues& reference, const std::vector<int64_t>& ids) {
  std::map<int64_t, std::array<int64_t, 3>> counts;  // id -> (both, prediction, reference)
  for (int64_t id : ids) counts[id] = {0, 0, 0};
  for (size_t i = 0; i < prediction.voxels.size() && i < reference.voxels.size(); ++i) {
    const int64_t p = prediction.voxels[i], r = std::lround(reference.voxels[i]);
    auto ip = counts.find(p), ir = counts.find(r);
    if (ip != counts.end()) ++ip->second[1];
    if (ir != counts.end()) ++ir->second[2];
    if (p == r && ip != counts.end()) ++ip->second[0];
  }
  std::map<int64_t, double> dice;
  for (const auto& [id, c] : counts)
    if (c[1] + c[2] > 0) dice[id] = 2.0 * static_cast<double>(c[0]) / static_cast<double>(c[1] + c[2]);
  return dice;
}

}  // namespace tucker_seg
