#include "model_store/inference/predictor.h"

#include <torch/utils.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <deque>

#include <ATen/Parallel.h>

#include "model_store/inference/resample.h"
#include "model_store/inference/trilinear_argmax.h"

namespace tucker_seg {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The CT as a (z, y, x) tensor (ITK's buffer order, as nnU-Net's SimpleITK reader sees it).
torch::Tensor AsZyx(const CtVolume& ct) {
  const Int3 s = ToZyx(ct.geometry.size);
  return torch::from_blob(const_cast<float*>(ct.voxels.data()), {s[0], s[1], s[2]}, torch::kFloat32);
}

// Which slices, rows and columns of the (Z, Y, X) voxels hold a value other than 0: three bool
// tensors. One pass, slices in parallel (each its own row of the per-slice results).
std::array<torch::Tensor, 3> NonZeroAlongAxes(const CtVolume& ct) {
  const Int3 n = ToZyx(ct.geometry.size);
  const int64_t plane = n[1] * n[2];
  std::vector<uint8_t> rows(static_cast<size_t>(n[0] * n[1])), columns(static_cast<size_t>(n[0] * n[2]));
  at::parallel_for(0, n[0], 1, [&](int64_t begin, int64_t end) {
    for (int64_t z = begin; z < end; ++z) {
      uint8_t* column = columns.data() + z * n[2];
      for (int64_t y = 0; y < n[1]; ++y) {
        const float* v = ct.voxels.data() + z * plane + y * n[2];
        uint8_t row = 0;
        for (int64_t x = 0; x < n[2]; ++x) {
          const auto nonzero = static_cast<uint8_t>(v[x] != 0.0f);
          column[x] |= nonzero;
          row |= nonzero;
        }
        rows[static_cast<size_t>(z * n[1] + y)] = row;
      }
    }
  });
  const auto as_tensor = [](const std::vector<uint8_t>& v, int64_t a, int64_t b) {
    return torch::from_blob(const_cast<uint8_t*>(v.data()), {a, b}, torch::kUInt8);
  };
  const torch::Tensor by_row = as_tensor(rows, n[0], n[1]), by_column = as_tensor(columns, n[0], n[2]);
  return {by_row.amax(1).to(torch::kBool), by_row.amax(0).to(torch::kBool), by_column.amax(0).to(torch::kBool)};
}

// The same mapping with LibTorch's ops on the plane's device (PyTorch's bilinear with
// align_corners=false is nnU-Net's mapping, edges clamped): the label ids of the row, on the CPU.
torch::Tensor DeviceArgmaxOfBilinear(const torch::Tensor& plane, int64_t out_h, int64_t out_w, const torch::Tensor& label_lut) {
  const torch::Tensor resized =
      plane.size(1) == out_h && plane.size(2) == out_w
          ? plane
          : torch::upsample_bilinear2d(plane.unsqueeze(0), {out_h, out_w}, /*align_corners=*/false).squeeze(0);
  return label_lut.index({resized.argmax(0)}).to(torch::kCPU);
}

// Turns finalised logits rows (network space, axis 0) into label rows on the cropped,
// transposed input grid as soon as the rows each output row interpolates from have arrived.
class SlabExporter {
 public:
  SlabExporter(const Int3& network_shape, const std::array<int64_t, 3>& out_shape, int separate_z_axis,
               std::vector<uint8_t> label_ids, const std::array<bool, 3>& flip, torch::Tensor* labels, bool cpu_kernel,
               std::function<void(double exported)> after_slice)
      : n_(network_shape), out_(out_shape), nearest_z_(separate_z_axis == 0), label_ids_(std::move(label_ids)), flip_(flip), labels_(labels),
        cpu_kernel_(cpu_kernel), after_slice_(std::move(after_slice)), row_(torch::empty({out_shape[1], out_shape[2]}, torch::kUInt8)) {
    for (size_t i = 0; i < label_ids_.size(); ++i) labels_are_indices_ = labels_are_indices_ && label_ids_[i] == i;
  }

  // rows: (K, n, N1, N2) sums of the Gaussian-weighted logits and weights (n, N1, N2) the
  // Gaussian's sums, valid only during the call; each row is divided in place as it is first read.
  // The output rows they complete are written from views of them; only the rows later output rows
  // still need are copied (one or two).
  void Add(int64_t first_row, const torch::Tensor& rows, const torch::Tensor& weights) {
    const bool cpu = cpu_kernel_ && rows.is_cpu() && rows.scalar_type() == torch::kFloat32 && rows.stride(3) == 1 && weights.stride(2) == 1 &&
                     rows.size(0) < 255;
    if (cpu && !argmax_) argmax_.emplace(rows.size(0), n_[1], n_[2], out_[1], out_[2]);
    for (int64_t r = 0; r < rows.size(1); ++r) {
      Row row{rows.select(1, r), false, {}};
      const torch::Tensor weight = weights.select(0, r);
      if (cpu) {
        row.top = argmax_->NormalizedTopClasses(row.logits.data_ptr<float>(), row.logits.stride(0), row.logits.stride(1), weight.data_ptr<float>(),
                                                weight.stride(0));
      } else {
        row.logits.div_(weight);
      }
      buffer_.push_back(std::move(row));
    }
    received_ = first_row + rows.size(1);
    Flush();
    for (auto& row : buffer_) {
      if (!row.owned) row.logits = row.logits.clone(torch::MemoryFormat::Contiguous), row.owned = true;
    }
  }

  // Output voxels labelled on the CPU, and those of them that needed interpolation.
  int64_t labelled() const { return argmax_ ? argmax_->labelled() : 0; }
  int64_t interpolated() const { return argmax_ ? argmax_->interpolated() : 0; }

 private:
  // Source rows and weight of the next row for output row o.
  void Source(int64_t o, int64_t* r0, int64_t* r1, double* w) const {
    if (nearest_z_) {
      *r0 = *r1 = static_cast<int64_t>(std::floor(GridSourceCoordinate(o, n_[0], out_[0]) + 0.5));
      *w = 0;
      return;
    }
    const LinearTap t = GridLinearTap(o, n_[0], out_[0]);
    *r0 = t.i0;
    *r1 = t.i1;
    *w = t.w1;
  }

  void Flush() {
    while (next_ < out_[0]) {
      int64_t r0, r1;
      double w;
      Source(next_, &r0, &r1, &w);
      if (r1 >= received_) return;
      const Row& a = buffer_[static_cast<size_t>(r0 - buffer_first_)];
      const Row& b = buffer_[static_cast<size_t>(r1 - buffer_first_)];
      if (!a.top.empty()) {
        uint8_t* row = row_.data_ptr<uint8_t>();
        argmax_->Slice(r0, PlaneOf(a.logits), a.top.data(), r1, PlaneOf(b.logits), b.top.data(), static_cast<float>(w), row);
        if (!labels_are_indices_) {
          for (int64_t i = 0; i < row_.numel(); ++i) row[i] = label_ids_[row[i]];  // output index -> label id
        }
      } else {
        if (w != 0 && !plane_.defined()) plane_ = torch::empty(a.logits.sizes(), a.logits.options());
        const torch::Tensor plane = w == 0 ? a.logits : torch::lerp_out(plane_, a.logits, b.logits, w);  // (K, N1, N2)
        if (!label_lut_.defined()) {
          label_lut_ = torch::tensor(std::vector<int64_t>(label_ids_.begin(), label_ids_.end())).to(torch::kUInt8).to(plane.device());
        }
        row_.copy_(DeviceArgmaxOfBilinear(plane, out_[1], out_[2], label_lut_));
      }
      // Rows and planes come in the network's (possibly flipped) orientation; the target is a
      // strided view of the output in the input's own orientation.
      std::vector<int64_t> dims;
      if (flip_[1]) dims.push_back(0);
      if (flip_[2]) dims.push_back(1);
      labels_->select(0, flip_[0] ? out_[0] - 1 - next_ : next_).copy_(dims.empty() ? row_ : row_.flip(dims));
      ++next_;
      // Drop rows that no later output row needs.
      if (next_ < out_[0]) {
        Source(next_, &r0, &r1, &w);
        while (buffer_first_ < r0 && !buffer_.empty()) buffer_.pop_front(), ++buffer_first_;
      }
      if (after_slice_) after_slice_(static_cast<double>(next_) / static_cast<double>(out_[0]));
    }
  }

  Int3 n_;
  std::array<int64_t, 3> out_;
  bool nearest_z_;
  std::vector<uint8_t> label_ids_;
  bool labels_are_indices_ = true;  // label id i for output i (TotalSegmentator's models): no mapping
  std::array<bool, 3> flip_;
  torch::Tensor* labels_;
  bool cpu_kernel_;
  std::function<void(double exported)> after_slice_;  // with the share of output slices done
  torch::Tensor row_;
  torch::Tensor label_lut_;  // output index -> label id, on the rows' device
  struct Row {
    torch::Tensor logits;      // (K, N1, N2)
    bool owned;                // false: a view of the caller's buffer, valid during Add only
    std::vector<uint8_t> top;  // TrilinearArgmax::TopClasses; empty off the CPU kernel
  };
  static LogitPlane PlaneOf(const torch::Tensor& logits) { return {logits.data_ptr<float>(), logits.stride(0), logits.stride(1)}; }
  std::deque<Row> buffer_;  // rows [buffer_first_, received_)
  std::optional<TrilinearArgmax> argmax_;  // the CPU kernel
  torch::Tensor plane_;     // the z-interpolated plane (off the CPU kernel)
  int64_t buffer_first_ = 0;
  int64_t received_ = 0;
  int64_t next_ = 0;
};

}  // namespace

void CanonicalAxes(const Geometry& g, const std::string& orientation, std::array<int64_t, 3>* axes, std::array<bool, 3>* flip) {
  *axes = {0, 1, 2};
  *flip = {false, false, false};
  if (orientation != "RAS" && orientation != "LPS") return;
  // World (LPS) direction each canonical index axis x, y, z should point to.
  const std::array<double, 3> sign = orientation == "RAS" ? std::array<double, 3>{-1, -1, 1} : std::array<double, 3>{1, 1, 1};
  // Assign each world axis the index axis most aligned with it (best of the 6 permutations).
  std::array<int, 3> best{0, 1, 2}, perm{0, 1, 2};
  double best_score = -1;
  do {
    double score = 1;
    for (int w = 0; w < 3; ++w) score *= std::abs(g.direction[w * 3 + perm[w]]);
    if (score > best_score) best_score = score, best = perm;
  } while (std::next_permutation(perm.begin(), perm.end()));
  // In (z, y, x) tensor order, canonical dim 2 - w comes from input dim 2 - best[w].
  for (int w = 0; w < 3; ++w) {
    (*axes)[2 - w] = 2 - best[w];
    (*flip)[2 - w] = g.direction[w * 3 + best[w]] * sign[w] < 0;
  }
}

namespace {

// How a volume with this geometry meets the network: which (z, y, x) array axis becomes each
// network axis (canonical orientation, then nnU-Net's transpose), its flip, and its spacing.
struct NetworkAxes {
  std::array<int64_t, 3> axes{};
  std::array<bool, 3> flip{};
  std::array<double, 3> spacing{};
};

NetworkAxes AxesForNetwork(const ModelInfo& info, const Geometry& g) {
  std::array<int64_t, 3> canonical{};
  std::array<bool, 3> canonical_flip{};
  CanonicalAxes(g, info.orientation, &canonical, &canonical_flip);
  const Zyx<double> zyx_spacing = ToZyx(g.spacing);
  NetworkAxes n;
  for (int a = 0; a < 3; ++a) {
    n.axes[a] = canonical[info.transpose_forward[a]];
    n.flip[a] = canonical_flip[info.transpose_forward[a]];
    n.spacing[a] = zyx_spacing[n.axes[a]];
  }
  return n;
}

}  // namespace

namespace {

// The padded network grid of a volume with this geometry (before the crop to the non-zero box).
Int3 PaddedNetworkShape(const ModelInfo& info, const Geometry& geometry) {
  const NetworkAxes n = AxesForNetwork(info, geometry);
  const Int3 zyx_size = ToZyx(geometry.size);
  Int3 padded{};
  for (int a = 0; a < 3; ++a) {
    const double extent_mm = n.spacing[a] * static_cast<double>(zyx_size[n.axes[a]]);
    padded[a] = std::max<int64_t>(info.patch_size[a], static_cast<int64_t>(std::nearbyint(extent_mm / info.spacing[a])));
  }
  return padded;
}

// What EstimateWindowBytes says for a padded network grid `p`.
int64_t WindowBytes(const ModelInfo& info, const Int3& p) {
  const auto classes = static_cast<int64_t>(info.labels.size());
  const int64_t rows = info.patch_size[0] * p[1] * p[2];
  // The image, the logits and weight accumulators, and the export's buffered rows (at most as many).
  return static_cast<int64_t>(sizeof(float)) * (p[0] * p[1] * p[2] + (2 * classes + 1) * rows);
}

}  // namespace

Result<WorkEstimate> EstimateWork(const ModelInfo& info, const Geometry& geometry, double step, const WorkLimits& limits) {
  const NetworkAxes n = AxesForNetwork(info, geometry);
  const Int3 zyx_size = ToZyx(geometry.size);
  std::array<double, 3> grid{};
  double grid_voxels = 1, tiles = 1;
  for (int a = 0; a < 3; ++a) {
    const double patch = static_cast<double>(info.patch_size[a]);
    grid[a] = std::max(patch, std::nearbyint(n.spacing[a] * static_cast<double>(zyx_size[n.axes[a]]) / info.spacing[a]));
    grid_voxels *= grid[a];
    tiles *= std::ceil((grid[a] - patch) / (patch * step)) + 1;  // ComputeSteps' count
  }
  const auto spacing = [&info] {
    char text[96];
    std::snprintf(text, sizeof text, "%g x %g x %g mm", info.spacing[0], info.spacing[1], info.spacing[2]);
    return std::string(text);
  };
  if (!(grid_voxels <= static_cast<double>(limits.max_grid_voxels))) {
    char text[256];
    std::snprintf(text, sizeof text, "size x spacing: resampled to the model's %s the volume is a %.4g x %.4g x %.4g = %.4g voxel grid, more than max_grid_voxels %lld",
                  spacing().c_str(), grid[0], grid[1], grid[2], grid_voxels, static_cast<long long>(limits.max_grid_voxels));
    return InvalidArgument(text);
  }
  if (!(tiles <= static_cast<double>(limits.max_tiles))) {
    char text[256];
    std::snprintf(text, sizeof text, "size x spacing: the volume needs %.4g sliding-window tiles at the model's %s, more than max_tiles %lld", tiles,
                  spacing().c_str(), static_cast<long long>(limits.max_tiles));
    return InvalidArgument(text);
  }
  WorkEstimate w;
  for (int a = 0; a < 3; ++a) w.grid[a] = static_cast<int64_t>(grid[a]);
  w.grid_voxels = w.grid[0] * w.grid[1] * w.grid[2];
  w.tiles = EstimateTiles(info, geometry, step);
  w.window_bytes = WindowBytes(info, w.grid);  // w.grid is PaddedNetworkShape, checked
  return w;
}

int64_t EstimateTiles(const ModelInfo& info, const Geometry& geometry, double step) {
  int64_t tiles = 1;
  for (const auto& steps : ComputeSteps(PaddedNetworkShape(info, geometry), info.patch_size, step)) tiles *= static_cast<int64_t>(steps.size());
  return tiles;
}

int64_t EstimateWindowBytes(const ModelInfo& info, const Geometry& geometry) { return WindowBytes(info, PaddedNetworkShape(info, geometry)); }

Result<Preprocessed> Preprocess(const ModelInfo& info, const CtVolume& ct, const std::function<Status()>& should_continue) {
  if (info.channels.size() != 1) return Unimplemented("prediction supports single-channel models; this one has " + std::to_string(info.channels.size()));
  const auto& channel = info.channels[0];
  if (channel.scheme != "CTNormalization") {
    return Unimplemented("normalization scheme '" + channel.scheme + "' is not supported (only CTNormalization)");
  }
  Preprocessed p;
  const NetworkAxes network_axes = AxesForNetwork(info, ct.geometry);
  p.axes = network_axes.axes;
  p.flip = network_axes.flip;
  const std::array<double, 3>& spacing = network_axes.spacing;
  torch::Tensor x = AsZyx(ct).permute({p.axes[0], p.axes[1], p.axes[2]});
  // The crop box in one pass over the voxels; then normalisation and in-plane resampling in slabs
  // of rows along axis 0, so that no full-size copy of the input exists next to it.
  constexpr int64_t kSlab = 16;
  const auto still_wanted = [&should_continue] { return should_continue ? should_continue() : Status::Ok(); };
  const std::array<torch::Tensor, 3> zyx_any = NonZeroAlongAxes(ct);
  for (int a = 0; a < 3; ++a) {  // nnU-Net's crop_to_nonzero; an all-zero volume keeps its full extent
    const auto idx = zyx_any[p.axes[a]].nonzero();
    p.crop_begin[a] = idx.numel() ? idx.min().item<int64_t>() : 0;
    p.crop_shape[a] = idx.numel() ? idx.max().item<int64_t>() + 1 - p.crop_begin[a] : x.size(a);
    x = x.narrow(a, p.crop_begin[a], p.crop_shape[a]);
  }
  // Target shape = round(old_spacing / new_spacing * shape).
  Int3 shape{};
  for (int a = 0; a < 3; ++a) {
    shape[a] = static_cast<int64_t>(std::nearbyint(spacing[a] / info.spacing[a] * static_cast<double>(p.crop_shape[a])));
    if (shape[a] < 1) {
      return InvalidArgument("the volume is smaller than one voxel along axis " + std::to_string(a) + " after resampling to " +
                             std::to_string(info.spacing[a]) + " mm");
    }
  }
  p.separate_z_axis = SeparateZAxis(spacing, info.spacing);
  // CTNormalization, then in-plane resampling, slab by slab; the separable B-spline passes commute,
  // so axis 0 can come last on the (much smaller) in-plane-resampled volume.
  const auto& in = channel.intensity;
  const double inv_std = 1.0 / std::max(in.std, 1e-8);
  std::vector<torch::Tensor> slabs;
  for (int64_t r = 0; r < x.size(0); r += kSlab) {
    TS_RETURN_IF_ERROR(still_wanted());
    const int64_t n = std::min(kSlab, x.size(0) - r);
    auto slab = x.narrow(0, r, n).clamp(in.percentile_00_5, in.percentile_99_5);
    slab.sub_(in.mean).mul_(inv_std);
    slabs.push_back(ResampleCubic(slab, {n, shape[1], shape[2]}, p.separate_z_axis));
  }
  TS_RETURN_IF_ERROR(still_wanted());
  p.image = ResampleCubic(torch::cat(slabs, 0), shape, p.separate_z_axis);
  // Flipping commutes with the grid-mode resampling, so it is done here on the small image.
  if (!p.FlipDims().empty()) p.image = p.image.flip(p.FlipDims());
  p.image = p.image.unsqueeze(0);
  return p;
}

namespace {

// Inclusive bounds on the padded network grid.
struct RoiBox {
  Int3 lo{{0, 0, 0}}, hi{{-1, -1, -1}};
};

// The coarse pass of RoiOptions: where the wanted outputs win the argmax, grown by the margin;
// nullopt when they win nowhere.
Result<std::optional<RoiBox>> FindRoi(const torch::Tensor& padded, const Int3& tile, const PatchNetwork& main, const RoiOptions& roi,
                                      const SlidingWindowOptions& main_window, Prediction* result) {
  const PatchNetwork& coarse = roi.coarse ? *roi.coarse : main;
  for (int64_t output : roi.outputs)
    if (output <= 0 || output >= coarse.num_classes()) return InvalidArgument("roi output " + std::to_string(output) + " is not a class");
  SlidingWindowOptions window;
  window.step = roi.coarse_step;
  window.batch = main_window.batch;
  window.should_continue = main_window.should_continue;
  const auto wanted = torch::zeros({coarse.num_classes()}, torch::kBool);
  for (int64_t output : roi.outputs) wanted[output] = true;
  // Per axis, how many coarse voxels of the wanted classes lie at each coordinate: the box is
  // cut at the 0.5th and 99.5th percentiles, so that a few stray voxels (a weak coarse variant
  // in air, say) do not stretch it over the whole volume.
  std::array<std::vector<int64_t>, 3> histograms;
  for (int a = 0; a < 3; ++a) histograms[static_cast<size_t>(a)].assign(static_cast<size_t>(padded.size(a + 1)), 0);
  int64_t hits_total = 0;
  auto on_rows = [&](int64_t first, const torch::Tensor& rows, const torch::Tensor&) {
    const auto hits = wanted.index({rows.argmax(0).to(torch::kCPU)}).nonzero();  // (n, 3): row, y, x
    hits_total += hits.size(0);
    for (int a = 0; a < 3; ++a) {
      const auto counts = hits.select(1, a).bincount({}, rows.size(a + 1)).contiguous();
      const auto* c = counts.data_ptr<int64_t>();
      const int64_t offset = a == 0 ? first : 0;
      for (int64_t i = 0; i < counts.numel(); ++i) histograms[static_cast<size_t>(a)][static_cast<size_t>(i + offset)] += c[i];
    }
  };
  SlidingWindowStats stats;
  TS_RETURN_IF_ERROR(SlidingWindow(padded, tile, coarse, window, on_rows, &stats));
  result->coarse_tiles = stats.tiles;
  result->timings.network_seconds += stats.network_seconds;
  result->timings.aggregation_seconds += stats.aggregation_seconds;
  if (hits_total == 0) return std::optional<RoiBox>();
  RoiBox box;
  const int64_t cut = hits_total / 200;  // 0.5%
  for (int a = 0; a < 3; ++a) {
    const auto& h = histograms[static_cast<size_t>(a)];
    const int64_t n = static_cast<int64_t>(h.size());
    int64_t lo = 0, hi = n - 1, below = 0, above = 0;
    while (lo < n - 1 && below + h[static_cast<size_t>(lo)] <= cut) below += h[static_cast<size_t>(lo++)];
    while (hi > lo && above + h[static_cast<size_t>(hi)] <= cut) above += h[static_cast<size_t>(hi--)];
    box.lo[a] = std::max<int64_t>(0, lo - roi.margin);
    box.hi[a] = std::min<int64_t>(n - 1, hi + roi.margin);
  }
  return std::optional<RoiBox>(box);
}

// `release`: the CT's voxels, freed once preprocessing is done (null: the caller keeps them).
Result<Prediction> PredictOrThrow(const ModelInfo& info, const PatchNetwork& net, const CtVolume& ct, const PredictionOptions& options,
                                  std::vector<float>* release) {
  TS_RETURN_IF_ERROR(ValidateCt(ct, options.max_voxels));
  if (net.num_classes() > 256) return Unimplemented("label maps hold at most 256 classes; the model has " + std::to_string(net.num_classes()));
  if (net.num_classes() != static_cast<int64_t>(info.labels.size())) {
    return FailedPrecondition("the network has " + std::to_string(net.num_classes()) + " outputs, the model lists " +
                              std::to_string(info.labels.size()) + " labels");
  }
  for (size_t i = 0; i < info.labels.size(); ++i) {
    if (info.labels[i].first < 0 || info.labels[i].first > 255) return InvalidArgument("label ids must be 0..255 for a uint8 label map");
    if (i == 0 && info.labels[i].first != 0) return InvalidArgument("output 0 must be the background, label id 0");
  }
  torch::NoGradGuard no_grad;
  Prediction result;
  auto start = Clock::now();
  // Between steps: the caller's other work first, then whether this prediction is still wanted.
  double exported = 0;         // share of the output slices labelled
  double between_seconds = 0;  // spent in options.between_steps (the caller's work): not this prediction's stages
  const auto between = [&options, &between_seconds](double share) {
    if (!options.between_steps) return;
    const auto t = Clock::now();
    options.between_steps(share);
    between_seconds += Since(t);
  };
  const std::function<Status()> checkpoint = [&options, &exported, &between]() -> Status {
    between(exported);
    return options.window.should_continue ? options.window.should_continue() : Status::Ok();
  };
  auto pre = Preprocess(info, ct, checkpoint);
  if (!pre.ok()) return pre.status();
  const Preprocessed& p = pre.value();
  if (release) std::vector<float>().swap(*release);
  for (int a = 0; a < 3; ++a) result.network_shape[a] = p.image.size(a + 1);
  Int3 pad{};
  const torch::Tensor padded = PadToTile(p.image, info.patch_size, &pad);
  result.timings.preprocess_seconds = Since(start) - between_seconds;

  // The exporter writes straight into the output's voxels, through a transposed, cropped view.
  result.labels.geometry = ct.geometry;
  result.labels.voxels.assign(static_cast<size_t>(ct.geometry.NumVoxels()), 0);
  const Int3 s = ToZyx(ct.geometry.size);
  auto cropped_labels = torch::from_blob(result.labels.voxels.data(), {s[0], s[1], s[2]}, torch::kUInt8)
                            .permute({p.axes[0], p.axes[1], p.axes[2]})
                            .narrow(0, p.crop_begin[0], p.crop_shape[0])
                            .narrow(1, p.crop_begin[1], p.crop_shape[1])
                            .narrow(2, p.crop_begin[2], p.crop_shape[2]);
  std::vector<uint8_t> label_ids;
  for (const auto& [id, name] : info.labels) label_ids.push_back(static_cast<uint8_t>(id));
  SlabExporter exporter(result.network_shape, p.crop_shape, p.separate_z_axis, label_ids, p.flip, &cropped_labels, options.cpu_export_kernel,
                        [&exported, &between](double share) {
                          exported = share;
                          between(share);
                        });
  double export_seconds = 0;
  const Int3 n = result.network_shape;
  auto on_rows = [&](int64_t first, const torch::Tensor& rows, const torch::Tensor& weights) {
    const auto t0 = Clock::now();
    const double between_before = between_seconds;
    // Padded rows -> network rows; drop the in-plane padding.
    const int64_t lo = std::max(first, pad[0]), hi = std::min(first + rows.size(1), pad[0] + n[0]);
    if (hi > lo) {
      exporter.Add(lo - pad[0], rows.narrow(1, lo - first, hi - lo).narrow(2, pad[1], n[1]).narrow(3, pad[2], n[2]),
                   weights.narrow(0, lo - first, hi - lo).narrow(1, pad[1], n[1]).narrow(2, pad[2], n[2]));
    }
    export_seconds += Since(t0) - (between_seconds - between_before);
  };
  SlidingWindowOptions window = options.window;
  window.should_continue = checkpoint;
  window.consumer_normalizes = true;  // the exporter divides each row as it first reads it
  const auto steps = ComputeSteps(Int3{{padded.size(1), padded.size(2), padded.size(3)}}, info.patch_size, window.step);
  result.full_tiles = static_cast<int64_t>(steps[0].size() * steps[1].size() * steps[2].size());
  if (options.roi) {
    TS_ASSIGN_OR_RETURN(const std::optional<RoiBox> box, FindRoi(padded, info.patch_size, net, *options.roi, window, &result));
    if (box) {
      window.include_tile = [box = *box, tile = info.patch_size](const Int3& start) {
        for (int a = 0; a < 3; ++a)
          if (start[a] > box.hi[a] || start[a] + tile[a] <= box.lo[a]) return false;
        return true;
      };
    }
  }
  SlidingWindowStats stats;
  TS_RETURN_IF_ERROR(SlidingWindow(padded, info.patch_size, net, window, on_rows, &stats));

  result.timings.export_seconds = export_seconds;
  result.timings.network_seconds += stats.network_seconds;
  result.timings.aggregation_seconds += stats.aggregation_seconds;
  result.tiles = stats.tiles;
  result.peak_logits_bytes = stats.peak_buffer_bytes;
  result.exported_voxels = exporter.labelled();
  result.interpolated_voxels = exporter.interpolated();
  result.label_table = info.labels;
  return result;
}

}  // namespace

Result<Prediction> Predict(const ModelInfo& info, const PatchNetwork& net, const CtVolume& ct, const PredictionOptions& options) {
  return StatusFromExceptions("prediction", [&] { return PredictOrThrow(info, net, ct, options, nullptr); });
}

Result<Prediction> Predict(const ModelInfo& info, const PatchNetwork& net, CtVolume&& ct, const PredictionOptions& options) {
  return StatusFromExceptions("prediction", [&] { return PredictOrThrow(info, net, ct, options, &ct.voxels); });
}

std::vector<int64_t> OutputsNamed(const ModelInfo& info, const std::set<std::string>& names) {
  std::vector<int64_t> outputs;
  for (size_t i = 1; i < info.labels.size(); ++i)
    if (names.count(info.labels[i].second)) outputs.push_back(static_cast<int64_t>(i));
  return outputs;
}

Status AddPartPrediction(const CompositeModel& model, size_t part, const Prediction& p, Prediction* combined) {
  TS_RETURN_IF_ERROR(MergePartLabels(model, part, p.labels, &combined->labels));
  combined->label_table = model.labels;
  combined->network_shape = p.network_shape;
  combined->tiles += p.tiles;
  combined->coarse_tiles += p.coarse_tiles;
  combined->full_tiles += p.full_tiles;
  auto& t = combined->timings;
  t.preprocess_seconds += p.timings.preprocess_seconds;
  t.network_seconds += p.timings.network_seconds;
  t.aggregation_seconds += p.timings.aggregation_seconds;
  t.export_seconds += p.timings.export_seconds;
  return Status::Ok();
}

}  // namespace tucker_seg
