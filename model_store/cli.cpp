#include "model_store/cli.h"

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "client/image_io.h"
#include "model_store/compress.h"
#include "model_store/model.h"
#include "model_store/network.h"
#include "model_store/nnunet_import.h"
#include "model_store/predictor.h"
#include "model_store/raw_tensor.h"

namespace tucker_seg {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kUsage = R"(usage: tucker-seg-models <command> [options]

commands:
  import-nnunet --results <trainer folder> --out <store>/<model-name>
                [--fold 0|..|all] [--checkpoint final|best] [--configuration <name>]
      Import a trained nnU-Net v2 model (plans.json, dataset.json, fold_N/checkpoint_*.pth).
  inspect <model folder | architecture.json> [--patch Z,Y,X] [--json]
      Parameters and multiply-accumulates (MACs) per layer and in total for one patch.
  compress <model folder> (--df 0.5,0.3,0.1 | --energy 0.95,0.9) [--rank-min 8] [--factorize-all]
           [--max-iterations 100]
      Tucker-2 factorize every convolution; one variant per setting, written to
      <model folder>/variants/<variant>/ with a manifest (ranks, errors, parameters, MACs).
  predict <model folder | variant folder> -i <ct.nii.gz | DICOM folder> -o <labels.nii.gz>
          [--step 0.5] [--batch 1] [--mirror]
      Segment a whole CT in-process (nnU-Net preprocessing, sliding window, export on the
      input's grid); --step 0.8 reproduces TotalSegmentator.
  forward <model folder> --input <x.f32> --output <y.f32> [--patch Z,Y,X] [--reference <ref.f32>]
      Run the network on one raw float32 patch (1, C, Z, Y, X), write the logits; with
      --reference, print the maximum absolute difference to it.

common options:
  --threads N   LibTorch intra-op threads (default: all cores)
)";

// Options after the command: "--key value" pairs, "--flag" switches and positional arguments.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;
  std::string error;

  std::string Get(const std::string& key, const std::string& fallback = "") const {
    auto it = options.find(key);
    return it == options.end() ? fallback : it->second;
  }
  bool Has(const std::string& key) const { return options.count(key) > 0; }
};

Args Parse(const std::vector<std::string>& argv, const std::vector<std::string>& switches) {
  Args a;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& s = argv[i];
    if (s.size() < 2 || s[0] != '-') {
      a.positional.push_back(s);
      continue;
    }
    std::string key = s.substr(s.rfind("--", 0) == 0 ? 2 : 1);
    if (key == "i") key = "input";
    if (key == "o") key = "output";
    if (std::find(switches.begin(), switches.end(), key) != switches.end()) {
      a.options[key] = "1";
    } else if (i + 1 < argv.size()) {
      a.options[key] = argv[++i];
    } else {
      a.error = "option " + s + " needs a value";
    }
  }
  return a;
}

bool ParsePatch(const std::string& text, Int3* out) {
  Int3 v{};
  char c1 = 0, c2 = 0;
  std::istringstream in(text);
  if (!(in >> v[0] >> c1 >> v[1] >> c2 >> v[2]) || c1 != ',' || c2 != ',' || !in.eof()) return false;
  *out = v;
  return true;
}

int Fail(std::ostream& err, const Status& st) {
  err << "error: " << st.message() << "\n";
  return st.code() == StatusCode::kInvalidArgument ? 2 : 1;
}

void SetThreads(const Args& a) {
  const int threads = a.Has("threads") ? std::stoi(a.Get("threads")) : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(std::max(1, threads));
}

int ImportCommand(const Args& a, std::ostream& out, std::ostream& err) {
  if (!a.Has("results") || !a.Has("out")) {
    err << "import-nnunet needs --results <trainer folder> and --out <store>/<model-name>\n";
    return 2;
  }
  NnUNetImportOptions opt;
  opt.results_dir = a.Get("results");
  opt.fold = a.Get("fold", "0");
  opt.checkpoint = a.Get("checkpoint", "final");
  opt.configuration = a.Get("configuration");
  const fs::path dest(a.Get("out"));
  opt.name = dest.filename().empty() ? dest.parent_path().filename().string() : dest.filename().string();
  auto model = ImportNnUNet(opt);
  if (!model.ok()) return Fail(err, model.status());
  const Status st = SaveModel(model.value(), dest.string());
  if (!st.ok()) return Fail(err, st);
  const auto& p = model.value().info.provenance;
  out << "imported " << p["dataset"].get<std::string>() << " (" << p["configuration"].get<std::string>() << ", fold "
      << opt.fold << ", " << p["checkpoint"].get<std::string>() << ") -> " << dest.string() << "\n"
      << "  " << model.value().weights.size() << " tensors kept, " << p["aliases"].get<int>() << " aliases recognised, "
      << model.value().info.labels.size() << " labels, patch " << ToString(model.value().info.patch_size) << "\n";
  return 0;
}

// A model folder (its own weights, dense or factorized), or a JSON file
// {"architecture": {...}, "patch_size": [z, y, x]} (random weights: costs depend on shapes only).
Result<std::pair<PlainConvUNet, Int3>> NetworkOf(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    auto model = LoadModel(path);
    if (!model.ok()) return model.status();
    auto net = PlainConvUNet::Create(model.value().info.network, model.value().weights);
    if (!net.ok()) return net.status();
    return std::make_pair(std::move(net).value(), model.value().info.patch_size);
  }
  std::ifstream in(path);
  if (!in) return NotFound("'" + path + "' is neither a model folder nor a readable architecture file");
  try {
    const json j = json::parse(in);
    auto cfg = UNetConfigFromJson(j.at("architecture"));
    if (!cfg.ok()) return cfg.status();
    auto patch = ParseInt3(j.at("patch_size"), "patch_size");
    if (!patch.ok()) return patch.status();
    auto net = PlainConvUNet::Create(cfg.value(), PlainConvUNet::RandomWeights(cfg.value(), 0));
    if (!net.ok()) return net.status();
    return std::make_pair(std::move(net).value(), patch.value());
  } catch (const json::exception& e) {
    return InvalidArgument("'" + path + "': " + e.what());
  }
}

int InspectCommand(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.positional.size() != 1) {
    err << "inspect needs one model folder or architecture file\n";
    return 2;
  }
  auto loaded = NetworkOf(a.positional[0]);
  if (!loaded.ok()) return Fail(err, loaded.status());
  const PlainConvUNet& net = loaded.value().first;
  Int3 patch = loaded.value().second;
  if (a.Has("patch") && !ParsePatch(a.Get("patch"), &patch)) {
    err << "--patch must be Z,Y,X (got '" << a.Get("patch") << "')\n";
    return 2;
  }
  const Status patch_ok = net.config().ValidatePatch(patch);
  if (!patch_ok.ok()) return Fail(err, patch_ok);
  const auto layers = net.Cost(patch);
  int64_t params = 0, macs = 0;
  for (const auto& l : layers) {
    params += l.parameters;
    macs += l.macs;
  }
  if (a.Has("json")) {
    json jl = json::array();
    for (const auto& l : layers) {
      jl.push_back({{"name", l.name}, {"op", l.op}, {"in_channels", l.in_channels}, {"out_channels", l.out_channels},
                    {"kernel", l.kernel}, {"stride", l.stride}, {"output_size", l.output_size},
                    {"parameters", l.parameters}, {"macs", l.macs}, {"applied", l.applied}});
      if (l.rank_in > 0) jl.back()["ranks"] = {l.rank_in, l.rank_out};
    }
    out << json{{"patch_size", patch}, {"parameters", params}, {"macs", macs}, {"layers", jl}}.dump(2) << "\n";
    return 0;
  }
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
  out << "total: " << params << " parameters, " << macs << " MACs (" << std::fixed << std::setprecision(2) << macs / 1e9
      << " GMACs) per patch " << ToString(patch) << "\n";
  return 0;
}

bool ParseList(const std::string& text, std::vector<double>* out) {
  std::istringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      out->push_back(std::stod(item, &used));
      if (used != item.size()) return false;
    } catch (const std::exception&) {
      return false;
    }
  }
  return !out->empty();
}

int CompressCommand(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.positional.size() != 1 || a.Has("df") == a.Has("energy")) {
    err << "compress needs <model folder> and one of --df F[,F...] or --energy E[,E...]\n";
    return 2;
  }
  SetThreads(a);
  std::vector<double> values;
  const std::string rule = a.Has("df") ? "df" : "energy";
  if (!ParseList(a.Get(rule), &values)) {
    err << "--" << rule << " must be a comma-separated list of numbers (got '" << a.Get(rule) << "')\n";
    return 2;
  }
  auto model = LoadModel(a.positional[0]);
  if (!model.ok()) return Fail(err, model.status());
  out << std::left << std::setw(16) << "variant" << std::right << std::setw(12) << "parameters" << std::setw(10) << "removed"
      << std::setw(10) << "GMACs" << std::setw(11) << "MAC ratio" << std::setw(10) << "skipped" << std::setw(14) << "max rel.err"
      << "  folder\n";
  for (double v : values) {
    CompressionOptions opt;
    (rule == "df" ? opt.df : opt.energy) = v;
    opt.rank_min = std::stoll(a.Get("rank-min", "8"));
    opt.factorize_all = a.Has("factorize-all");
    opt.tucker.max_iterations = std::stoi(a.Get("max-iterations", "100"));
    auto variant = CompressModel(model.value(), opt);
    if (!variant.ok()) return Fail(err, variant.status());
    auto dir = SaveVariant(variant.value(), a.positional[0]);
    if (!dir.ok()) return Fail(err, dir.status());
    const auto& m = variant.value().manifest;
    int skipped = 0;
    double max_error = 0;
    for (const auto& l : m["layers"]) {
      skipped += l["factorized"].get<bool>() ? 0 : 1;
      max_error = std::max(max_error, l["relative_error"].get<double>());
    }
    out << std::left << std::setw(16) << m["variant"].get<std::string>() << std::right << std::setw(12)
        << m["parameters"].get<int64_t>() << std::setw(9) << std::fixed << std::setprecision(1)
        << 100.0 * m["parameters_removed_fraction"].get<double>() << "%" << std::setw(10) << std::setprecision(2)
        << m["macs"].get<double>() / 1e9 << std::setw(10) << m["mac_ratio"].get<double>() << "x" << std::setw(10) << skipped
        << std::setw(14) << std::setprecision(4) << max_error << "  " << dir.value() << "\n";
  }
  return 0;
}

int PredictCommand(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.positional.size() != 1 || !a.Has("input") || !a.Has("output")) {
    err << "predict needs <model folder> -i <ct> -o <labels.nii.gz>\n";
    return 2;
  }
  SetThreads(a);
  PredictionOptions opt;
  try {
    opt.window.step = std::stod(a.Get("step", "0.5"));
    opt.window.batch = std::stoll(a.Get("batch", "1"));
  } catch (const std::exception&) {
    err << "--step and --batch must be numbers\n";
    return 2;
  }
  opt.window.mirror = a.Has("mirror");
  auto model = LoadModel(a.positional[0]);
  if (!model.ok()) return Fail(err, model.status());
  auto net = PlainConvUNet::Create(model.value().info.network, model.value().weights);
  if (!net.ok()) return Fail(err, net.status());
  auto ct = ReadCt(a.Get("input"));
  if (!ct.ok()) return Fail(err, ct.status());
  UNetPatchNetwork patch_net(net.value());
  auto p = Predict(model.value().info, patch_net, ct.value(), opt);
  if (!p.ok()) return Fail(err, p.status());
  const Status written = WriteLabelMap(a.Get("output"), p.value().labels);
  if (!written.ok()) return Fail(err, written);

  const auto& g = ct.value().geometry;
  const auto& t = p.value().timings;
  const Int3& n = p.value().network_shape;
  out << "predict " << model.value().info.name << ": " << g.size[0] << "x" << g.size[1] << "x" << g.size[2] << " voxels at "
      << std::fixed << std::setprecision(2) << g.spacing[0] << "x" << g.spacing[1] << "x" << g.spacing[2] << " mm -> network grid "
      << ToString(n) << ", " << p.value().tiles << " tiles (step " << opt.window.step << ", batch " << opt.window.batch
      << (opt.window.mirror ? ", mirrored" : "") << ", " << torch::get_num_threads() << " threads)\n"
      << "  preprocess " << t.preprocess_seconds << " s, network " << t.network_seconds << " s, aggregation "
      << t.aggregation_seconds << " s, export " << t.export_seconds << " s\n";
  std::vector<int64_t> counts(256, 0);  // by label id
  for (uint8_t v : p.value().labels.voxels) ++counts[v];
  out << "  labels present:";
  for (const auto& [id, name] : p.value().label_table)
    if (id > 0 && counts[static_cast<size_t>(id)] > 0) out << " " << name << " (" << counts[static_cast<size_t>(id)] << ")";
  out << "\n  wrote " << a.Get("output") << "\n";
  return 0;
}

int ForwardCommand(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.positional.size() != 1 || !a.Has("input") || !a.Has("output")) {
    err << "forward needs <model folder> --input <x.f32> --output <y.f32>\n";
    return 2;
  }
  SetThreads(a);
  auto model = LoadModel(a.positional[0]);
  if (!model.ok()) return Fail(err, model.status());
  const ModelInfo& info = model.value().info;
  Int3 patch = info.patch_size;
  if (a.Has("patch") && !ParsePatch(a.Get("patch"), &patch)) {
    err << "--patch must be Z,Y,X\n";
    return 2;
  }
  auto net = PlainConvUNet::Create(info.network, model.value().weights);
  if (!net.ok()) return Fail(err, net.status());
  const std::vector<int64_t> shape{1, info.network.input_channels, patch[0], patch[1], patch[2]};
  auto x = ReadRawFloat32(a.Get("input"), shape);
  if (!x.ok()) return Fail(err, x.status());
  const Status input_ok = net.value().CheckInput(x.value());
  if (!input_ok.ok()) return Fail(err, input_ok);
  const auto start = std::chrono::steady_clock::now();
  torch::Tensor y = net.value().Forward(x.value());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const Status written = WriteRawFloat32(a.Get("output"), y);
  if (!written.ok()) return Fail(err, written);
  out << "forward " << info.name << ": input " << ToString(patch) << " -> logits " << y.sizes() << " in " << std::fixed
      << std::setprecision(3) << seconds << " s (" << torch::get_num_threads() << " threads)\n";
  if (a.Has("reference")) {
    auto ref = ReadRawFloat32(a.Get("reference"), y.sizes().vec());
    if (!ref.ok()) return Fail(err, ref.status());
    const double max_abs = (y - ref.value()).abs().max().item<double>();
    out << "max |logits - reference| = " << std::scientific << std::setprecision(3) << max_abs << "\n";
  }
  return 0;
}

}  // namespace

int RunModelsCli(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
  if (argv.empty() || argv[0] == "--help" || argv[0] == "-h" || argv[0] == "help") {
    (argv.empty() ? err : out) << kUsage;
    return argv.empty() ? 2 : 0;
  }
  const std::string command = argv[0];
  const Args a = Parse({argv.begin() + 1, argv.end()}, {"json", "factorize-all", "mirror"});
  if (!a.error.empty()) {
    err << "error: " << a.error << "\n";
    return 2;
  }
  try {
    if (command == "import-nnunet") return ImportCommand(a, out, err);
    if (command == "inspect") return InspectCommand(a, out, err);
    if (command == "forward") return ForwardCommand(a, out, err);
    if (command == "compress") return CompressCommand(a, out, err);
    if (command == "predict") return PredictCommand(a, out, err);
  } catch (const std::exception& e) {  // last line of defence: nothing escapes main as a crash
    err << "error: " << command << ": " << std::string(e.what()).substr(0, std::string(e.what()).find('\n')) << "\n";
    return 1;
  }
  err << "unknown command '" << command << "'\n" << kUsage;
  return 2;
}

}  // namespace tucker_seg
