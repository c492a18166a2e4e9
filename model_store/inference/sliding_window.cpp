#include "model_store/inference/sliding_window.h"

#include <torch/utils.h>

#include <chrono>
#include <cmath>

namespace tucker_seg {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Every non-empty subset of the mirror axes, as tensor dims of (N, C, z, y, x).
std::vector<std::vector<int64_t>> MirrorCombinations(const std::vector<int64_t>& axes) {
  std::vector<std::vector<int64_t>> out;
  for (uint32_t mask = 1; mask < (1u << axes.size()); ++mask) {
    std::vector<int64_t> dims;
    for (size_t i = 0; i < axes.size(); ++i)
      if (mask & (1u << i)) dims.push_back(axes[i] + 2);
    out.push_back(dims);
  }
  return out;
}

torch::Tensor Predict(const PatchNetwork& net, const torch::Tensor& x, const SlidingWindowOptions& o) {
  torch::Tensor y = net.Forward(x);
  if (!o.mirror) return y;
  const auto combos = MirrorCombinations(o.mirror_axes);
  for (const auto& dims : combos) y += torch::flip(net.Forward(torch::flip(x, dims)), dims);
  return y / static_cast<double>(combos.size() + 1);
}

}  // namespace

std::vector<int64_t> ComputeSteps(int64_t size, int64_t tile, double step) {
  const double target = static_cast<double>(tile) * step;
  const auto num = static_cast<int64_t>(std::ceil(static_cast<double>(size - tile) / target)) + 1;
  const double actual = num > 1 ? static_cast<double>(size - tile) / static_cast<double>(num - 1) : 0.0;
  std::vector<int64_t> steps;
  for (int64_t i = 0; i < num; ++i) steps.push_back(static_cast<int64_t>(std::nearbyint(actual * static_cast<double>(i))));
  return steps;
}

std::array<std::vector<int64_t>, 3> ComputeSteps(const Int3& size, const Int3& tile, double step) {
  return {ComputeSteps(size[0], tile[0], step), ComputeSteps(size[1], tile[1], step), ComputeSteps(size[2], tile[2], step)};
}

torch::Tensor GaussianImportanceMap(const Int3& tile, double sigma_scale, double value_scaling) {
  std::vector<torch::Tensor> axes;
  for (int a = 0; a < 3; ++a) {
    // scipy.ndimage.gaussian_filter of a unit impulse at tile // 2: the normalised 1-D kernel,
    // radius int(4 * sigma + 0.5), zero beyond it.
    const double sigma = static_cast<double>(tile[a]) * sigma_scale;
    const int64_t radius = static_cast<int64_t>(4.0 * sigma + 0.5);
    const int64_t centre = tile[a] / 2;
    std::vector<double> kernel(2 * radius + 1);
    double sum = 0;
    for (int64_t k = -radius; k <= radius; ++k) sum += kernel[k + radius] = std::exp(-0.5 * static_cast<double>(k * k) / (sigma * sigma));
    auto line = torch::zeros({tile[a]}, torch::kFloat64);
    for (int64_t i = 0; i < tile[a]; ++i) {
      const int64_t k = i - centre;
      if (k >= -radius && k <= radius) line[i] = kernel[k + radius] / sum;
    }
    axes.push_back(line);
  }
  auto g = torch::einsum("i,j,k->ijk", {axes[0], axes[1], axes[2]});
  g = g / (g.max() / value_scaling);
  const auto min_nonzero = g.masked_select(g != 0).min();
  g = torch::where(g == 0, min_nonzero, g);
  return g.to(torch::kFloat32);
}

torch::Tensor PadToTile(const torch::Tensor& image, const Int3& tile, Int3* pad_lower) {
  std::vector<int64_t> pad;  // torch order: last dim first, (low, high) pairs
  for (int a = 2; a >= 0; --a) {
    const int64_t diff = std::max<int64_t>(0, tile[a] - image.size(a + 1));
    (*pad_lower)[a] = diff / 2;
    pad.push_back(diff / 2);
    pad.push_back(diff - diff / 2);
  }
  return torch::constant_pad_nd(image, pad, 0.0);
}

Status SlidingWindow(const torch::Tensor& image, const Int3& tile, const PatchNetwork& net, const SlidingWindowOptions& o,
                     const RowsCallback& on_rows, SlidingWindowStats* stats) {
  if (image.dim() != 4) return InvalidArgument("sliding window needs a (C, Z, Y, X) image");
  const Int3 size{image.size(1), image.size(2), image.size(3)};
  for (int a = 0; a < 3; ++a) {
    if (size[a] < tile[a]) return InvalidArgument("image is smaller than the tile; pad it first");
  }
  if (!(o.step > 0 && o.step <= 1)) return InvalidArgument("step must be in (0, 1], got " + std::to_string(o.step));
  if (o.batch < 1 || o.batch > 64) return InvalidArgument("batch must be 1..64, got " + std::to_string(o.batch));
  const auto steps = ComputeSteps(size, tile, o.step);
  const torch::Device device = net.device();
  const auto on_device = torch::TensorOptions().device(device).dtype(torch::kFloat32);
  const auto gaussian = GaussianImportanceMap(tile).to(on_device);
  const int64_t classes = net.num_classes();
  // The whole (small, network-resolution) image crosses to the device once; tiles are views of it.
  const torch::Tensor source = image.device() == device ? image
                               : device.is_cuda()       ? image.contiguous().pin_memory().to(on_device, /*non_blocking=*/true)
                                                        : image.to(on_device);

  // Accumulators for rows [base, base + tile[0]); at the start of each z group, base is its start.
  auto logits = torch::zeros({classes, tile[0], size[1], size[2]}, on_device);
  auto weights = torch::zeros({tile[0], size[1], size[2]}, on_device);
  SlidingWindowStats local;
  local.peak_buffer_bytes = (logits.numel() + weights.numel()) * static_cast<int64_t>(sizeof(float));
  torch::NoGradGuard no_grad;

  const auto included = [&](int64_t z, int64_t y, int64_t x) { return !o.include_tile || o.include_tile(Int3{{z, y, x}}); };
  int64_t total_tiles = 0;
  for (int64_t z : steps[0])
    for (int64_t y : steps[1])
      for (int64_t x : steps[2]) total_tiles += included(z, y, x);
  if (o.on_tiles) o.on_tiles(0, total_tiles);
  for (size_t gi = 0; gi < steps[0].size(); ++gi) {
    const int64_t z = steps[0][gi];
    std::vector<std::pair<int64_t, int64_t>> tiles;
    for (int64_t y : steps[1])
      for (int64_t x : steps[2])
        if (included(z, y, x)) tiles.emplace_back(y, x);
    for (size_t first = 0; first < tiles.size(); first += static_cast<size_t>(o.batch)) {
      const size_t last = std::min(tiles.size(), first + static_cast<size_t>(o.batch));
      if (o.should_continue) TS_RETURN_IF_ERROR(o.should_continue());
      std::vector<torch::Tensor> inputs;
      for (size_t t = first; t < last; ++t) {
        inputs.push_back(source.slice(1, z, z + tile[0]).slice(2, tiles[t].first, tiles[t].first + tile[1])
                             .slice(3, tiles[t].second, tiles[t].second + tile[2]));
      }
      const auto logits_of = [&](size_t t) {
        const auto [y, x] = tiles[t];
        return logits.slice(2, y, y + tile[1]).slice(3, x, x + tile[2]);
      };
      auto start = Clock::now();
      if (o.mirror || o.batch > 1) {
        const torch::Tensor pred = Predict(net, torch::stack(inputs), o);
        local.network_seconds += Since(start);
        start = Clock::now();
        for (size_t t = first; t < last; ++t) logits_of(t).addcmul_(pred[static_cast<int64_t>(t - first)], gaussian);
      } else {
        net.ForwardWeightedSum(inputs[0].unsqueeze(0), gaussian, logits_of(first));  // network time includes the sum
        local.network_seconds += Since(start);
        start = Clock::now();
      }
      for (size_t t = first; t < last; ++t) {
        const auto [y, x] = tiles[t];
        weights.slice(1, y, y + tile[1]).slice(2, x, x + tile[2]).add_(gaussian);
      }
      local.aggregation_seconds += Since(start);
      local.tiles += static_cast<int64_t>(last - first);
      if (o.on_tiles) o.on_tiles(local.tiles, total_tiles);
    }
    // Rows before the next group's start are final: normalise them in place and hand them out.
    auto start = Clock::now();
    const bool last_group = gi + 1 == steps[0].size();
    const int64_t done = last_group ? tile[0] : steps[0][gi + 1] - z;
    if (o.include_tile) weights.narrow(0, 0, done).clamp_min_(1e-12f);  // rows no tile covered: 0 / tiny = 0
    if (!o.consumer_normalizes) logits.narrow(1, 0, done).div_(weights.narrow(0, 0, done));
    local.aggregation_seconds += Since(start);
    // The consumer copies what it keeps and times itself.
    on_rows(z, logits.narrow(1, 0, done), o.consumer_normalizes ? weights.narrow(0, 0, done) : torch::Tensor());
    start = Clock::now();
    if (!last_group && done > 0) {
      // Shift the unfinished rows to the front, row by row in ascending order (never overlapping).
      for (int64_t r = 0; r + done < tile[0]; ++r) {
        logits.select(1, r).copy_(logits.select(1, r + done));
        weights.select(0, r).copy_(weights.select(0, r + done));
      }
      logits.narrow(1, tile[0] - done, done).zero_();
      weights.narrow(0, tile[0] - done, done).zero_();
    }
    local.aggregation_seconds += Since(start);
  }
  if (stats) *stats = local;
  return Status::Ok();
}

Result<torch::Tensor> SlidingWindowLogits(const torch::Tensor& image, const Int3& tile, const PatchNetwork& net,
                                          const SlidingWindowOptions& options) {
  Int3 pad{};
  const auto padded = PadToTile(image, tile, &pad);
  auto out = torch::empty({net.num_classes(), padded.size(1), padded.size(2), padded.size(3)}, net.device());
  SlidingWindowOptions normalized = options;
  normalized.consumer_normalizes = false;
  TS_RETURN_IF_ERROR(SlidingWindow(padded, tile, net, normalized,
                                   [&](int64_t row, const torch::Tensor& l, const torch::Tensor&) { out.narrow(1, row, l.size(1)).copy_(l); },
                                   nullptr));
  return out.narrow(1, pad[0], image.size(1)).narrow(2, pad[1], image.size(2)).narrow(3, pad[2], image.size(3)).to(torch::kCPU).contiguous();
}

}  // namespace tucker_seg
