// compress: Tucker-2 variants of a model, one per --df or --energy value.
#include <iomanip>
#include <memory>

#include "model_store/compression/compress.h"
#include "model_store/format/composite.h"
#include "model_store/tools/command.h"

namespace tucker_seg::tools {

namespace {

struct CompressFlags {
  std::string model;
  std::vector<double> df, energy;
  int64_t rank_min = 8;
  bool factorize_all = false;
  int max_iterations = 100;
};

int CompressOne(const CompressFlags& f, const std::string& model_dir, std::ostream& out, std::ostream& err) {
  auto model = LoadModel(model_dir);
  if (!model.ok()) return command_line::Fail(err, model.status());
  out << std::left << std::setw(16) << "variant" << std::right << std::setw(12) << "parameters" << std::setw(10) << "removed"
      << std::setw(10) << "GMACs" << std::setw(11) << "MAC ratio" << std::setw(10) << "skipped" << std::setw(14)
      << "max rel.err" << "  folder\n";
  const bool by_df = !f.df.empty();
  for (double value : by_df ? f.df : f.energy) {
    CompressionOptions opt;
    (by_df ? opt.df : opt.energy) = value;
    opt.rank_min = f.rank_min;
    opt.factorize_all = f.factorize_all;
    opt.tucker.max_iterations = f.max_iterations;
    auto variant = CompressModel(model.value(), opt);
    if (!variant.ok()) return command_line::Fail(err, variant.status());
    auto dir = SaveVariant(variant.value(), model_dir);
    if (!dir.ok()) return command_line::Fail(err, dir.status());
    const VariantManifest& m = variant.value().manifest;
    int skipped = 0;
    double max_error = 0;
    for (const auto& l : m.layers) {
      skipped += l.factorized ? 0 : 1;
      max_error = std::max(max_error, l.relative_error);
    }
    out << std::left << std::setw(16) << m.variant << std::right << std::setw(12) << m.parameters << std::setw(9)
        << std::fixed << std::setprecision(1) << 100.0 * m.parameters_removed_fraction << "%" << std::setw(10)
        << std::setprecision(2) << static_cast<double>(m.macs) / 1e9 << std::setw(10) << m.mac_ratio << "x" << std::setw(10)
        << skipped << std::setw(14) << std::setprecision(4) << max_error << "  " << dir.value() << "\n";
  }
  return command_line::kExitOk;
}

}  // namespace

Command AddCompressCommand(CLI::App& parent) {
  auto f = std::make_shared<CompressFlags>();
  CLI::App* app = parent.add_subcommand(
      "compress",
      "Tucker-2 factorize every convolution; one variant per setting, written to <model>/variants/<variant>/ with a manifest "
      "(ranks, errors, parameters, MACs).");
  app->add_option("model", f->model, "Model folder (a composite model: every part)")->required()->check(CLI::ExistingDirectory);
  auto* df = app->add_option("--df", f->df, "Downsampling factors: r = min(C, max(rank-min, ceil(df * C)))")
                 ->delimiter(',')->check(CLI::Range(0.0, 1.0));
  auto* energy = app->add_option("--energy", f->energy, "Or: keep this fraction of each unfolding's squared singular values")
                     ->delimiter(',')->check(CLI::Range(0.0, 1.0));
  df->excludes(energy);
  app->add_option("--rank-min", f->rank_min, "Smallest rank of the df rule")->check(CLI::Range(int64_t{1}, int64_t{1} << 20))->capture_default_str();
  app->add_flag("--factorize-all", f->factorize_all, "Factorize even layers where that costs more MACs (the paper's setting)");
  app->add_option("--max-iterations", f->max_iterations, "HOOI iterations at most (0: HOSVD only)")->check(CLI::Range(0, 1000))->capture_default_str();

  return {app, [f](std::ostream& out, std::ostream& err) {
            if (f->df.empty() == f->energy.empty()) {
              err << "error: compress needs one of --df F[,F...] or --energy E[,E...]\n";
              return command_line::kExitUsage;
            }
            // A composite model is compressed part by part, each into its own variants/.
            std::vector<std::string> models{f->model};
            if (IsCompositeModel(f->model)) {
              auto composite = ReadCompositeModel(f->model);
              if (!composite.ok()) return command_line::Fail(err, composite.status());
              models = composite.value().part_dirs;
            }
            for (const auto& dir : models)
              if (const int code = CompressOne(*f, dir, out, err)) return code;
            return command_line::kExitOk;
          }};
}

}  // namespace tucker_seg::tools
