// nnU-Net's sliding-window inference over a padded image, streamed in slabs along axis 0:
// rows that no later tile touches are handed out (normalised) as soon as the tiles above them
// are done, so memory holds one tile's depth of logits, not the whole volume's.
#pragma once

#include <array>
#include <functional>
#include <vector>

#include <torch/types.h>

#include "model_store/format/unet_config.h"
#include "vocabulary/status.h"

namespace tucker_seg {

// What the sliding window runs: (N, C, tile) -> (N, K, tile) logits.
class PatchNetwork {
 public:
  virtual ~PatchNetwork() = default;
  // x: float32 on device(); returns float32 logits on device().
  virtual torch::Tensor Forward(const torch::Tensor& x) const = 0;
  // volume += weight * Forward(x)[0] for one tile: x (1, C, tile), weight (tile), volume a
  // (K, tile) float32 view of the window's accumulator. The CPU engine overrides it: its head
  // adds the logits in place, so no tile of logits (118 classes: 758 MiB) is ever written.
  virtual void ForwardWeightedSum(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& volume) const {
    volume.addcmul_(Forward(x)[0], weight);
  }
  virtual int64_t num_classes() const = 0;
  // Where the network runs: the sliding window keeps the image, the Gaussian and its
  // accumulators there and hands out rows of logits on it.
  virtual torch::Device device() const { return torch::kCPU; }
};

// A network seen through its Forward only, so the window adds each tile of logits itself (the path
// of every executor without an in-place sum): what tests and benchmarks compare the in-place sum with.
class ForwardOnly : public PatchNetwork {
 public:
  explicit ForwardOnly(const PatchNetwork& net) : net_(net) {}
  torch::Tensor Forward(const torch::Tensor& x) const override { return net_.Forward(x); }
  int64_t num_classes() const override { return net_.num_classes(); }
  torch::Device device() const override { return net_.device(); }

 private:
  const PatchNetwork& net_;
};

// nnU-Net's compute_steps_for_sliding_window for one axis: ceil((size - tile) / (tile * step)) + 1
// steps, spread evenly, rounded half to even as numpy does.
std::vector<int64_t> ComputeSteps(int64_t size, int64_t tile, double step);
std::array<std::vector<int64_t>, 3> ComputeSteps(const Int3& size, const Int3& tile, double step);

// nnU-Net's compute_gaussian: a centred Gaussian (sigma = tile * sigma_scale, truncated at 4
// sigma like scipy's gaussian_filter), scaled to max value_scaling, zeros replaced by the minimum.
torch::Tensor GaussianImportanceMap(const Int3& tile, double sigma_scale = 1.0 / 8, double value_scaling = 10.0);

struct SlidingWindowOptions {
  double step = 0.5;         // fraction of the tile between neighbouring tiles
  int64_t batch = 1;         // tiles per network call
  bool mirror = false;       // test-time augmentation over the mirror axes
  std::vector<int64_t> mirror_axes{0, 1, 2};
  // Asked before every network call; a non-OK status stops the window and is returned
  // (the server stops work for a client that is gone or past its deadline).
  std::function<Status()> should_continue;
  // Told after every network call: tiles finished so far and the tiles this window runs in all.
  std::function<void(int64_t done, int64_t total)> on_tiles;
  // Which tiles to run, by their first voxel (padded coordinates); unset: all. Voxels that no
  // run tile covers get logits 0 for every class (so argmax gives the background).
  std::function<bool(const Int3& tile_start)> include_tile;
  // The rows handed out are the Gaussian-weighted sums, and the sums of the Gaussian come with
  // them: the consumer divides them itself (in place), in the same pass as its own first read.
  // The predictor's export does; a separate division pass over 118 classes of rows cost 0.16 s
  // per 300-slice CT.
  bool consumer_normalizes = false;
};

struct SlidingWindowStats {
  int64_t tiles = 0;
  double network_seconds = 0;
  double aggregation_seconds = 0;
  int64_t peak_buffer_bytes = 0;
};

// Receives rows [first_row, first_row + logits.size(1)) of the final logits (K, rows, P1, P2),
// on the network's device. With SlidingWindowOptions::consumer_normalizes, `logits` are the
// weighted sums and `weights` (rows, P1, P2) the Gaussian's sums, the final logits being
// logits / weights; the rows are the callback's to divide in place until it returns. Otherwise
// `weights` is undefined.
using RowsCallback = std::function<void(int64_t first_row, const torch::Tensor& logits, const torch::Tensor& weights)>;

// image: (C, P0, P1, P2) with every P >= tile, on any device (copied to the network's device
// once, from pinned memory for CUDA). Rows arrive in order, each exactly once.
Status SlidingWindow(const torch::Tensor& image, const Int3& tile, const PatchNetwork& net,
                     const SlidingWindowOptions& options, const RowsCallback& on_rows, SlidingWindowStats* stats);

// Pads (C, N0, N1, N2) with zeros to at least `tile` (lower pad = difference / 2, as nnU-Net).
torch::Tensor PadToTile(const torch::Tensor& image, const Int3& tile, Int3* pad_lower);

// Whole-volume logits (K, N0, N1, N2): pads, runs the sliding window, crops the padding away.
// For tests and small volumes; the predictor streams instead.
Result<torch::Tensor> SlidingWindowLogits(const torch::Tensor& image, const Int3& tile, const PatchNetwork& net,
                                          const SlidingWindowOptions& options);

}  // namespace tucker_seg
