// inspect: parameters and MACs per layer of a model folder or an architecture file.
#include <filesystem>
#include <iomanip>
#include <memory>
#include <utility>

#include <nlohmann/json.hpp>

#include "model_store/network/loaded_model.h"
#include "model_store/tools/command.h"

namespace tucker_seg::tools {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// A model folder (its own weights, dense or factorized), or a JSON file
// {"architecture": {...}, "patch_size": [z, y, x]} (random weights: costs depend on shapes only).
Result<std::pair<PlainConvUNet, Int3>> NetworkOf(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    TS_ASSIGN_OR_RETURN(LoadedModel loaded, LoadNetwork(path));
    return std::make_pair(std::move(loaded.network), loaded.info.patch_size);
  }
  if (!fs::is_regular_file(path, ec)) return NotFound("'" + path + "' is neither a model folder nor a readable architecture file");
  TS_ASSIGN_OR_RETURN(ArchitectureFile arch, ReadArchitectureFile(path));
  TS_ASSIGN_OR_RETURN(PlainConvUNet net, PlainConvUNet::Create(arch.network, PlainConvUNet::RandomWeights(arch.network, 0)));
  return std::make_pair(std::move(net), arch.patch_size);
}

void PrintTable(const std::vector<LayerCost>& layers, std::ostream& out) {
  out << std::left << std::setw(48) << "layer" << std::setw(24) << "op" << std::setw(12) << "in->out" << std::setw(8)
      << "kernel" << std::setw(8) << "stride" << std::setw(14) << "output" << std::right << std::setw(12) << "params"
      << std::setw(16) << "MACs" << "\n";
  for (const auto& l : layers) {
    const std::string op = l.rank_in > 0 ? l.op + " " + std::to_string(l.rank_in) + "/" + std::to_string(l.rank_out) : l.op;
    out << std::left << std::setw(48) << l.name << std::setw(24) << op << std::setw(12)
        << (std::to_string(l.in_channels) + "->" + std::to_string(l.out_channels)) << std::setw(8) << ToString(l.kernel)
        << std::setw(8) << ToString(l.stride) << std::setw(14) << ToString(l.output_size) << std::right << std::setw(12)
        << l.parameters << std::setw(16) << l.macs << (l.applied ? "" : "  (unused at inference)") << "\n";
  }
}

json LayersJson(const std::vector<LayerCost>& layers) {
  json jl = json::array();
  for (const auto& l : layers) {
    jl.push_back({{"name", l.name}, {"op", l.op}, {"in_channels", l.in_channels}, {"out_channels", l.out_channels},
                  {"kernel", l.kernel}, {"stride", l.stride}, {"output_size", l.output_size},
                  {"parameters", l.parameters}, {"macs", l.macs}, {"applied", l.applied}});
    if (l.rank_in > 0) jl.back()["ranks"] = {l.rank_in, l.rank_out};
  }
  return jl;
}

}  // namespace

Command AddInspectCommand(CLI::App& parent) {
  struct Flags {
    std::string path;
    std::optional<Int3> patch;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = parent.add_subcommand("inspect", "Parameters and multiply-accumulates (MACs) per layer and in total for one patch.");
  app->add_option("model", f->path, "Model folder, variant folder or architecture JSON file")->required();
  AddPatchOption(app, &f->patch, "Patch size (default: the model's)");
  app->add_flag("--json", f->json, "Print JSON instead of a table");

  return {app, [f](std::ostream& out, std::ostream& err) {
            auto loaded = NetworkOf(f->path);
            if (!loaded.ok()) return command_line::Fail(err, loaded.status());
            const PlainConvUNet& net = loaded.value().first;
            const Int3 patch = f->patch.value_or(loaded.value().second);
            const Status patch_ok = net.config().ValidatePatch(patch);
            if (!patch_ok.ok()) {
              command_line::Fail(err, patch_ok);
              return f->patch ? command_line::kExitUsage : command_line::kExitFailure;
            }
            const auto layers = net.Cost(patch);
            int64_t params = 0, macs = 0;
            for (const auto& l : layers) params += l.parameters, macs += l.macs;
            if (f->json) {
              out << json{{"patch_size", patch}, {"parameters", params}, {"macs", macs}, {"layers", LayersJson(layers)}}.dump(2) << "\n";
              return command_line::kExitOk;
            }
            PrintTable(layers, out);
            out << "total: " << params << " parameters, " << macs << " MACs (" << std::fixed << std::setprecision(2) << macs / 1e9
                << " GMACs) per patch " << ToString(patch) << "\n";
            return command_line::kExitOk;
          }};
}

}  // namespace tucker_seg::tools
