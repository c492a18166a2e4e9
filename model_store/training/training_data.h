// Turning CTs and reference label maps into training cases in a model's network space, and
// scoring label maps against references.
#pragma once

#include <map>
#include <vector>

#include "model_store/format/model.h"
#include "model_store/inference/predictor.h"
#include "model_store/training/trainer.h"
#include "vocabulary/volume.h"

namespace tucker_seg {

// A label map read as numbers (e.g. through ReadCt): label ids per voxel.
using LabelValues = Volume<float>;

// nnU-Net's foreground intensity statistics (voxels whose label is one of `ids`).
Result<IntensityProperties> ForegroundIntensity(const CtVolume& ct, const LabelValues& labels, const std::vector<int64_t>& ids);

// The CT preprocessed as for prediction and, when given, its labels mapped from label ids to the
// model's output indices (ids the model does not know become background), transposed, cropped
// and resampled (nearest) onto the same grid.
Result<TrainingCase> MakeTrainingCase(const ModelInfo& info, const CtVolume& ct, const LabelValues* labels);

// `labels` on the grid of `target` by nearest neighbour in physical (LPS) space; outside is 0.
LabelValues ResampleLabelsNearest(const LabelValues& labels, const Geometry& target);

// Dice per label id (ids absent from both maps are left out); `reference` holds label ids.
std::map<int64_t, double> DicePerLabel(const LabelMap& prediction, const LabelValues& reference, const std::vector<int64_t>& ids);

}  // namespace tucker_seg
