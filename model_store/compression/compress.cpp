#include "model_store/compression/compress.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

namespace tucker_seg {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string Number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

int64_t Prod(const Int3& v) { return v[0] * v[1] * v[2]; }

// MACs per output-side unit of a dense and of a factorized layer; their ratio does not depend on
// the patch. Conv: per output voxel, the first 1x1x1 conv runs on prod(stride) input voxels.
// Transposed conv: per input voxel, the last 1x1x1 conv runs on prod(stride) output voxels.
std::pair<int64_t, int64_t> DenseAndFactorizedMacs(const ConvLayer& c, int64_t r_in, int64_t r_out) {
  const int64_t k = Prod(c.kernel), s = Prod(c.stride);
  const int64_t dense = c.in_channels * c.out_channels * k;
  const int64_t factorized = c.transposed ? c.in_channels * r_in + r_in * r_out * k + s * r_out * c.out_channels
                                          : s * c.in_channels * r_in + r_in * r_out * k + r_out * c.out_channels;
  return {dense, factorized};
}

}  // namespace

std::string CompressionOptions::VariantName() const {
  std::string name = df ? "df" + Number(*df) : "energy" + Number(energy.value_or(0));
  if (df && rank_min != 8) name += "-rmin" + std::to_string(rank_min);
  return factorize_all ? name + "-all" : name;
}

namespace {

Result<Variant> CompressOrThrow(const Model& original, const CompressionOptions& opt) {
  if (opt.df.has_value() == opt.energy.has_value()) return InvalidArgument("give exactly one of df and energy");
  if (opt.df && !(*opt.df > 0.0 && *opt.df <= 1.0)) return InvalidArgument("df must be in (0, 1], got " + Number(*opt.df));
  if (opt.energy && !(*opt.energy > 0.0 && *opt.energy <= 1.0)) return InvalidArgument("energy must be in (0, 1], got " + Number(*opt.energy));
  if (opt.rank_min < 1) return InvalidArgument("rank_min must be >= 1");
  if (opt.tucker.max_iterations < 0 || opt.tucker.max_iterations > 1000) return InvalidArgument("tucker.max_iterations must be 0..1000");

  auto dense = PlainConvUNet::Create(original.info.network, original.weights);
  if (!dense.ok()) return dense.status();
  auto net = PlainConvUNet::Create(original.info.network, original.weights);
  if (!net.ok()) return net.status();

  std::vector<LayerCompression> layers;
  for (ConvLayer* c : net.value().MutableConvs()) {
    if (c->factorized()) return FailedPrecondition("layer '" + c->name + "' is already factorized; compress the original model");
    int64_t r0, r1;  // ranks of modes 0 and 1 of the weight tensor
    if (opt.df) {
      r0 = RankByFactor(c->weight.size(0), *opt.df, opt.rank_min);
      r1 = RankByFactor(c->weight.size(1), *opt.df, opt.rank_min);
    } else {
      auto [s0, s1] = UnfoldingSpectra(c->weight);
      r0 = RankByEnergy(s0, *opt.energy);
      r1 = RankByEnergy(s1, *opt.energy);
    }
    LayerCompression entry;
    entry.name = c->name;
    entry.op = c->transposed ? "ConvTranspose3d" : "Conv3d";
    entry.in_channels = c->in_channels;
    entry.out_channels = c->out_channels;
    entry.kernel = c->kernel;
    entry.rank_in = c->transposed ? r0 : r1;
    entry.rank_out = c->transposed ? r1 : r0;
    const auto [dense_macs, factorized_macs] = DenseAndFactorizedMacs(*c, entry.rank_in, entry.rank_out);
    if (!opt.factorize_all && factorized_macs >= dense_macs) {
      entry.skipped_reason = "factorized MACs would be " + Number(static_cast<double>(factorized_macs) / dense_macs) +
                             "x the dense layer's (ranks " + std::to_string(entry.rank_in) + "/" + std::to_string(entry.rank_out) + ")";
      layers.push_back(entry);
      continue;
    }
    const Tucker2 t = DecomposeTucker2(c->weight, r0, r1, opt.tucker);
    c->SetTucker(t.core, t.u0, t.u1);
    entry.factorized = true;
    entry.relative_error = t.relative_error;
    entry.hosvd_relative_error = t.hosvd_relative_error;
    entry.hooi_iterations = t.iterations;
    layers.push_back(entry);
  }

  // Costs per patch, original and variant, layer by layer.
  const Int3 patch = original.info.patch_size;
  std::map<std::string, LayerCost> cost;
  int64_t params = 0, macs = 0, params0 = 0, macs0 = 0;
  for (const auto& l : net.value().Cost(patch)) {
    cost[l.name] = l;
    params += l.parameters;
    macs += l.macs;
  }
  for (const auto& l : dense.value().Cost(patch)) {
    params0 += l.parameters;
    macs0 += l.macs;
  }
  for (auto& entry : layers) {
    const auto& l = cost.at(entry.name);
    entry.parameters = l.parameters;
    entry.macs = l.macs;
  }

  Variant v;
  v.model.info = original.info;
  v.model.info.name = original.info.name + "/" + opt.VariantName();
  v.model.weights = net.value().Weights();
  json method = {{"algorithm", "Tucker-2 over the channel modes, HOSVD initialisation then HOOI (float64)"},
                 {"max_iterations", opt.tucker.max_iterations}, {"tolerance", opt.tucker.tolerance},
                 {"factorize_all", opt.factorize_all}};
  if (opt.df) method["df"] = *opt.df, method["rank_min"] = opt.rank_min;
  if (opt.energy) method["energy"] = *opt.energy;
  v.model.info.provenance["variant_of"] = original.info.name;
  v.model.info.provenance["compression"] = method;
  v.manifest.variant = opt.VariantName();
  v.manifest.model = original.info.name;
  v.manifest.method = method;
  v.manifest.patch_size = patch;
  v.manifest.parameters = params;
  v.manifest.macs = macs;
  v.manifest.original_parameters = params0;
  v.manifest.original_macs = macs0;
  v.manifest.parameters_removed_fraction = 1.0 - static_cast<double>(params) / static_cast<double>(params0);
  v.manifest.mac_ratio = static_cast<double>(macs0) / static_cast<double>(macs);
  v.manifest.layers = std::move(layers);
  return v;
}

}  // namespace

Result<Variant> CompressModel(const Model& original, const CompressionOptions& options) {
  return StatusFromExceptions("compression", [&] { return CompressOrThrow(original, options); });
}

Result<std::string> SaveVariant(const Variant& variant, const std::string& model_dir) {
  const fs::path dir = fs::path(model_dir) / "variants" / variant.manifest.variant;
  TS_RETURN_IF_ERROR(SaveModel(variant.model, dir.string()));
  TS_RETURN_IF_ERROR(WriteVariantManifest(variant.manifest, dir.string()));
  return dir.string();
}

}  // namespace tucker_seg
