// The label map's export on the CPU: the argmax over classes of logits resized trilinearly
// (nnU-Net's grid mapping: source = (i + 0.5) * in / out - 0.5, edges clamped), one output slice
// at a time, without writing the resized logits.
//
// Every interpolated value is a convex combination of the 8 network voxels around it. Where one
// class is the strict best at all 8 corners, it is the best of every combination inside the cell:
// the label needs no interpolation at all (decided per cell once per pair of network rows, shared
// by the output slices between them). Elsewhere (class boundaries), each row of cells has its two
// network rows interpolated along z into a small per-thread buffer; then, 16 output columns at a
// time, every class is interpolated along x and y and argmaxed, for the (up to 4) output rows
// between the same two network rows at once (on AVX-512 two loads and four permutes per class for
// all of them, no gathers). A trained model's peaked logits leave interpolation to the boundaries
// only; random logits, boundaries everywhere, cost every class at every voxel.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace tucker_seg {

// One network row (axis 0) of logits: (classes, h, w) float32, columns contiguous.
struct LogitPlane {
  const float* data = nullptr;
  int64_t class_stride = 0, row_stride = 0;
};

class TrilinearArgmax {
 public:
  static constexpr uint8_t kNoTop = 255;  // no class is the best by more than rounding

  // classes <= 255; (h, w) the network rows' size, (out_h, out_w) the output slices'.
  TrilinearArgmax(int64_t classes, int64_t h, int64_t w, int64_t out_h, int64_t out_w);

  // Each voxel's strict best class, or kNoTop: (h, w) bytes. Once per network row.
  std::vector<uint8_t> TopClasses(const LogitPlane& plane) const;
  // The same for a row of the sliding window's weighted sums, which are first divided in place by
  // the sums of the Gaussian (weights: (h, w), rows weight_row_stride apart), in the same pass.
  std::vector<uint8_t> NormalizedTopClasses(float* data, int64_t class_stride, int64_t row_stride, const float* weights,
                                            int64_t weight_row_stride) const;

  // Class indices (out_h, out_w) of the output slice at weight wz (of r1) between network rows r0
  // and r1 (r1 == r0 for a nearest-neighbour slice), with their TopClasses. Ties between
  // interpolated values go to the lowest class, as argmax's first maximum does.
  void Slice(int64_t r0, const LogitPlane& a, const uint8_t* top_a, int64_t r1, const LogitPlane& b, const uint8_t* top_b, float wz,
             uint8_t* out);

  // Output voxels labelled so far, and those of them whose label needed interpolation.
  int64_t labelled() const { return labelled_; }
  int64_t interpolated() const { return interpolated_; }

 private:
  struct Tap {
    int64_t i0, i1;
    float w1;
  };
  static constexpr int64_t kLanes = 16;
  // Output columns first .. first + lanes - 1. in_register: with AVX-512, its taps lie in
  // base .. base + 15 (BlockArgmax16); with AVX2, each half's within 8 columns of its first left tap
  // (BlockArgmax8x2); otherwise the scalar loop.
  struct Block {
    int64_t first = 0, base = 0;
    int lanes = 0;
    bool in_register = false;
  };
  // divide: null, or p.data itself, divided by weights row by row before it is read.
  std::vector<uint8_t> TopClasses(const LogitPlane& p, float* divide, const float* weights, int64_t weight_row_stride) const;
  // Which cells between rows r0 and r1 have one class at all 8 corners.
  void UniformCells(const uint8_t* top_a, const uint8_t* top_b);

  int64_t k_, h_, w_, out_h_, out_w_;
  std::vector<Tap> ty_, tx_;
  // Runs of consecutive output rows that interpolate between the same two network rows (first, count).
  std::vector<std::pair<int64_t, int64_t>> row_groups_;
  std::vector<Block> blocks_;
  std::vector<int32_t> lane0_, lane1_;  // per block, 16 lanes: the x taps relative to its base
  std::vector<float> lane_weight_;
  int64_t r0_ = -1, r1_ = -1;      // the row pair uniform_ is for
  std::vector<uint8_t> uniform_;   // per cell (h x w, by its low corner): its class, or kNoTop
  std::vector<int64_t> first_, last_;  // per row of cells: the first and last cell that is not uniform (last < 0: none)
  int64_t labelled_ = 0, interpolated_ = 0;
};

}  // namespace tucker_seg
