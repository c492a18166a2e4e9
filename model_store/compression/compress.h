// Variants of a model: every convolution Tucker-2 factorized at one strength.
// A variant is a complete model folder under <model>/variants/<variant>/ plus manifest.json.
#pragma once

#include <optional>
#include <string>

#include "model_store/format/model.h"
#include "model_store/network/network.h"
#include "model_store/format/variant_manifest.h"
#include "vocabulary/status.h"
#include "model_store/compression/tucker.h"

namespace tucker_seg {

struct CompressionOptions {
  std::optional<double> df;      // the paper's rank rule: r = min(C, max(rank_min, ceil(df*C)))
  int64_t rank_min = 8;
  std::optional<double> energy;  // or: keep this fraction of each unfolding's squared singular values
  // Factorize even where the factorized layer would cost at least as many MACs as the dense one
  // (the paper's setting). By default such layers stay dense and the manifest says why.
  bool factorize_all = false;
  Tucker2Options tucker;

  std::string VariantName() const;  // "df0.3", "df0.3-all", "energy0.95"
};

struct Variant {
  Model model;
  VariantManifest manifest;
};

Result<Variant> CompressModel(const Model& original, const CompressionOptions& options);

// Writes <model_dir>/variants/<name>/{model.json, weights.safetensors, manifest.json}.
Result<std::string> SaveVariant(const Variant& variant, const std::string& model_dir);

}  // namespace tucker_seg
