// Whole CT in, label map out on the CT's own grid, with nnU-Net's semantics:
//   transpose -> crop to the non-zero box -> CTNormalization -> resample to the model's spacing
//   -> pad -> sliding window (streamed in slabs along axis 0) -> per slab: logits resampled back
//   (linear; nearest along a separate-z axis) -> argmax -> undo crop and transpose.
// Peak memory is the output, the resampled image, one tile's depth of logits and, unless the
// prediction consumes it, the input (docs/prediction.md).
#pragma once

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "model_store/format/composite.h"
#include "model_store/format/model.h"
#include "model_store/network/executor.h"
#include "model_store/inference/prediction_timings.h"
#include "model_store/inference/sliding_window.h"
#include "vocabulary/volume.h"

namespace tucker_seg {

// `--roi-subset`: compute only the tiles the requested classes need. A coarse pass (the given
// network, usually the fastest variant, at step 1: tiles side by side, about 1/8 of step 0.5's
// count) finds where those classes are on the network grid; the main pass then runs only the tiles
// that touch their bounding box grown by `margin` voxels. Voxels outside get the background. When
// the coarse pass finds none of the classes, the main pass runs every tile.
struct RoiOptions {
  const PatchNetwork* coarse = nullptr;  // null: the main network
  std::vector<int64_t> outputs;          // network output indices (not label ids) to look for
  int64_t margin = 8;
  double coarse_step = 1.0;  // tiles side by side: about 1/8 of step 0.5's count on a large CT
};

struct PredictionOptions {
  SlidingWindowOptions window;
  std::optional<RoiOptions> roi;
  int64_t max_voxels = 1024LL * 1024 * 1024;  // input volumes larger than this are refused
  // On the CPU, the slab export's fused resample-and-argmax kernel; false runs the LibTorch ops
  // every other device runs (upsample + argmax on the device), so tests cover that path on CPU.
  bool cpu_export_kernel = true;
  // Called between the prediction's steps (each preprocessing slab, each tile, each exported
  // output slice) with the share of output slices labelled so far, where the caller may run other
  // work on this thread: the server runs short requests there that would miss their budget
  // waiting for a long one.
  std::function<void(double exported)> between_steps;
};

struct Prediction {
  LabelMap labels;                                       // the input's geometry
  std::vector<std::pair<int64_t, std::string>> label_table;  // id -> name
  PredictionTimings timings;
  int64_t tiles = 0;
  Int3 network_shape{0, 0, 0};                           // the resampled image, before padding
  int64_t peak_logits_bytes = 0;                         // the sliding window's slab buffer
  int64_t coarse_tiles = 0;                              // --roi-subset: the coarse pass's tiles
  int64_t full_tiles = 0;                                // the tiles a prediction without ROI runs
  // The CPU export: output voxels labelled, and those whose label needed interpolation (the
  // others lie in cells whose 8 network voxels agree on their class).
  int64_t exported_voxels = 0;
  int64_t interpolated_voxels = 0;
};

// Runs a network's executor as a PatchNetwork on the network's device and in its precision
// (tiles are cast to the weights' type, logits back to float32 for the accumulation).
class UNetPatchNetwork : public PatchNetwork {
 public:
  explicit UNetPatchNetwork(const NetworkExecutor& executor) : executor_(executor) {}
  torch::Tensor Forward(const torch::Tensor& x) const override {
    const torch::ScalarType dtype = executor_.network().dtype();
    if (dtype == torch::kFloat32) return executor_.Forward(x);
    return executor_.Forward(x.to(dtype)).to(torch::kFloat32);
  }
  void ForwardWeightedSum(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& volume) const override {
    if (executor_.network().dtype() != torch::kFloat32) return PatchNetwork::ForwardWeightedSum(x, weight, volume);
    executor_.ForwardWeightedSum(x, weight, volume);
  }
  int64_t num_classes() const override { return executor_.network().config().num_classes; }
  torch::Device device() const override { return executor_.network().device(); }

 private:
  const NetworkExecutor& executor_;
};

// The model's image in network space: transposed, cropped, normalised, resampled (1, N0, N1, N2).
struct Preprocessed {
  torch::Tensor image;
  // The (z, y, x) voxel array as the model sees it = array.permute(axes) (then transposed);
  // `flip` (in the transposed order) is applied to the network-resolution image, never to the input.
  std::array<int64_t, 3> axes{0, 1, 2};
  std::array<bool, 3> flip{false, false, false};
  std::vector<int64_t> FlipDims() const {
    std::vector<int64_t> dims;
    for (int64_t a = 0; a < 3; ++a)
      if (flip[a]) dims.push_back(a);
    return dims;
  }
  std::array<int64_t, 3> crop_begin{};
  std::array<int64_t, 3> crop_shape{};
  int separate_z_axis = -1;
};
// `should_continue` is asked before each slab of rows (a non-OK status stops and is returned):
// preprocessing a large CT takes seconds, and a client that went away should not hold a worker.
Result<Preprocessed> Preprocess(const ModelInfo& info, const CtVolume& ct, const std::function<Status()>& should_continue = {});

// The permutation of the (z, y, x) array axes and the flips (in permuted order) that bring a
// volume with this geometry to the canonical orientation ("RAS" or "LPS"); identity for "as-is".
void CanonicalAxes(const Geometry& g, const std::string& orientation, std::array<int64_t, 3>* axes, std::array<bool, 3>* flip);

// What a volume with this geometry costs this model, for admission before anything is allocated.
struct WorkLimits {
  int64_t max_grid_voxels = 0;  // the network grid (the CT resampled to the model's spacing)
  int64_t max_tiles = 0;        // sliding-window tiles
};
struct WorkEstimate {
  Int3 grid{};                  // padded network grid, network axis order
  int64_t grid_voxels = 0;
  int64_t tiles = 0;            // EstimateTiles
  int64_t window_bytes = 0;     // EstimateWindowBytes
};
// For untrusted geometry (a 1-voxel volume may claim a spacing of 1e12 mm): the grid and the
// tile count are computed in floating point and checked against `limits` before any integer
// conversion or loop over tiles. INVALID_ARGUMENT names the limit and the model's spacing.
Result<WorkEstimate> EstimateWork(const ModelInfo& info, const Geometry& geometry, double step, const WorkLimits& limits);

// Sliding-window tiles a volume with this geometry needs at most (before nnU-Net's crop to the
// non-zero box): what the server's selector multiplies calibrated seconds per tile by.
int64_t EstimateTiles(const ModelInfo& info, const Geometry& geometry, double step = 0.5);
// Bytes the sliding window holds on the network's device for such a volume (image, accumulators,
// export buffer), beside the network's own weights and one tile's activations.
int64_t EstimateWindowBytes(const ModelInfo& info, const Geometry& geometry);

Result<Prediction> Predict(const ModelInfo& info, const PatchNetwork& net, const CtVolume& ct, const PredictionOptions& options);
// The same, consuming the CT: its voxels are freed as soon as preprocessing has made the network's
// image, so the sliding window's peak does not hold the input as well (600 MiB of float32 on a
// 512 x 512 x 600 CT). The result's labels carry the CT's geometry.
Result<Prediction> Predict(const ModelInfo& info, const PatchNetwork& net, CtVolume&& ct, const PredictionOptions& options);

// The network outputs (indices into info.labels, background excluded) whose class names are in
// `names`: what RoiOptions::outputs wants for --roi-subset.
std::vector<int64_t> OutputsNamed(const ModelInfo& info, const std::set<std::string>& names);

// Adds part `part` of a composite model to `combined`: its labels merged by the composite's rule,
// its tiles and timings summed, the composite's label table. `combined` starts default-constructed.
Status AddPartPrediction(const CompositeModel& model, size_t part, const Prediction& p, Prediction* combined);

}  // namespace tucker_seg
