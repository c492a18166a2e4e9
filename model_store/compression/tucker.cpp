#include "model_store/compression/tucker.h"

#include <algorithm>
#include <cmath>

namespace tucker_seg {
namespace {

// (A, B, K) views of a kernel with its spatial modes flattened.
torch::Tensor As3d(const torch::Tensor& w) { return w.reshape({w.size(0), w.size(1), -1}); }

// The r leading left singular vectors of `unfolding` (rows x cols), through the eigenvectors of
// its Gram matrix (rows x rows: at most a few hundred here, far cheaper than an SVD of the unfolding).
torch::Tensor LeadingVectors(const torch::Tensor& unfolding, int64_t r) {
  auto gram = torch::mm(unfolding, unfolding.t());
  auto [values, vectors] = torch::linalg_eigh(gram);  // ascending
  return vectors.slice(1, vectors.size(1) - r).flip({1}).contiguous();
}

torch::Tensor Mode0(const torch::Tensor& w3) { return w3.reshape({w3.size(0), -1}); }
torch::Tensor Mode1(const torch::Tensor& w3) { return w3.transpose(0, 1).reshape({w3.size(1), -1}); }

}  // namespace

torch::Tensor ReconstructTucker2(const torch::Tensor& core, const torch::Tensor& u0, const torch::Tensor& u1) {
  auto c3 = As3d(core);
  auto out = torch::einsum("ijk,ai,bj->abk", {c3, u0, u1});
  std::vector<int64_t> shape{u0.size(0), u1.size(0)};
  for (int64_t d = 2; d < core.dim(); ++d) shape.push_back(core.size(d));
  return out.reshape(shape);
}

std::pair<torch::Tensor, torch::Tensor> UnfoldingSpectra(const torch::Tensor& w) {
  auto w3 = As3d(w.to(torch::kFloat64));
  auto s0 = torch::linalg_eigvalsh(torch::mm(Mode0(w3), Mode0(w3).t())).flip({0}).clamp_min(0);
  auto s1 = torch::linalg_eigvalsh(torch::mm(Mode1(w3), Mode1(w3).t())).flip({0}).clamp_min(0);
  return {s0, s1};
}

int64_t RankByFactor(int64_t channels, double df, int64_t rank_min) {
  const auto r = static_cast<int64_t>(std::ceil(df * static_cast<double>(channels)));
  return std::min(channels, std::max(rank_min, r));
}

int64_t RankByEnergy(const torch::Tensor& spectrum, double energy) {
  const auto cumulative = spectrum.cumsum(0);
  const double total = cumulative[-1].item<double>();
  const auto* c = cumulative.data_ptr<double>();
  for (int64_t r = 0; r < spectrum.size(0); ++r)
    if (c[r] >= energy * total) return r + 1;
  return spectrum.size(0);
}

Tucker2 DecomposeTucker2(const torch::Tensor& w, int64_t r0, int64_t r1, const Tucker2Options& options) {
  const auto w3 = As3d(w.to(torch::kFloat64).contiguous());
  const double norm = w3.norm().item<double>();
  const double norm_sq = norm * norm;
  auto error_of = [&](const torch::Tensor& core) {
    // With orthonormal factors, ||W - W_hat||^2 = ||W||^2 - ||G||^2.
    const double g = core.norm().item<double>();
    return norm > 0 ? std::sqrt(std::abs(norm_sq - g * g)) / norm : 0.0;
  };
  auto core_of = [&](const torch::Tensor& u0, const torch::Tensor& u1) {
    return torch::einsum("abk,ai,bj->ijk", {w3, u0, u1});
  };

  Tucker2 t;
  t.u0 = LeadingVectors(Mode0(w3), r0);
  t.u1 = LeadingVectors(Mode1(w3), r1);
  auto core = core_of(t.u0, t.u1);
  t.hosvd_relative_error = error_of(core);
  double error = t.hosvd_relative_error;
  for (int it = 0; it < options.max_iterations; ++it) {
    // Each factor: leading subspace of W projected on the other factor.
    t.u0 = LeadingVectors(Mode0(torch::einsum("abk,bj->ajk", {w3, t.u1})), r0);
    t.u1 = LeadingVectors(Mode1(torch::einsum("abk,ai->ibk", {w3, t.u0})), r1);
    core = core_of(t.u0, t.u1);
    const double next = error_of(core);
    t.iterations = it + 1;
    const bool converged = std::abs(error - next) < options.tolerance;
    error = next;
    if (converged) break;
  }
  std::vector<int64_t> shape{r0, r1};
  for (int64_t d = 2; d < w.dim(); ++d) shape.push_back(w.size(d));
  t.core = core.reshape(shape);
  const auto w64 = w.to(torch::kFloat64);
  t.relative_error = norm > 0 ? (w64 - ReconstructTucker2(t.core, t.u0, t.u1)).norm().item<double>() / norm : 0.0;
  return t;
}

}  // namespace tucker_seg
