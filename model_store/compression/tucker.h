// Tucker-2 factorization of a convolution kernel over its two channel modes (Weber et al.,
// arXiv 2404.09683): W (A x B x k...) ~ G x_0 U0 x_1 U1, with the spatial modes kept in the core
// G (r0 x r1 x k...). HOSVD initialisation, then HOOI, in double precision.
#pragma once

#include <torch/types.h>

namespace tucker_seg {

struct Tucker2 {
  torch::Tensor core;  // (r0, r1, k...)
  torch::Tensor u0;    // (A, r0), orthonormal columns
  torch::Tensor u1;    // (B, r1), orthonormal columns
  double relative_error = 0;        // ||W - W_hat|| / ||W|| of the result
  double hosvd_relative_error = 0;  // the same, after HOSVD initialisation only
  int iterations = 0;               // HOOI iterations run
};

struct Tucker2Options {
  int max_iterations = 100;  // 0: HOSVD only
  double tolerance = 1e-4;   // stop when the relative error changes by less than this
};

// Factorizes `w` (at least 2-D) with ranks r0 <= A, r1 <= B. Computes in float64; returns float64.
Tucker2 DecomposeTucker2(const torch::Tensor& w, int64_t r0, int64_t r1, const Tucker2Options& options = {});

// G x_0 U0 x_1 U1.
torch::Tensor ReconstructTucker2(const torch::Tensor& core, const torch::Tensor& u0, const torch::Tensor& u1);

// Squared singular values of the mode-0 and mode-1 unfoldings, descending.
std::pair<torch::Tensor, torch::Tensor> UnfoldingSpectra(const torch::Tensor& w);

// The paper's rule: r = min(C, max(rank_min, ceil(df * C))).
int64_t RankByFactor(int64_t channels, double df, int64_t rank_min);
// Smallest r that keeps at least `energy` of the squared singular values (descending `spectrum`).
int64_t RankByEnergy(const torch::Tensor& spectrum, double energy);

}  // namespace tucker_seg
