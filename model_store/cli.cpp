#include "model_store/cli.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <optional>
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
#include "model_store/trainer.h"
#include "model_store/training_data.h"
#include "model_store/raw_tensor.h"

namespace tucker_seg {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kUsage = R"(usage: tucker-seg-models <command> [options]

commands:
  import-nnunet --results <trainer folder> --out <store>/<model-name>
                [--fold 0|..|all] [--checkpoint final|best] [--configuration <name>] [--orientation as-is|RAS|LPS]
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
  train --architecture <arch.json> --images a.nii.gz[,...] --labels a_seg.nii.gz[,...]
        --classes <id->name json> --class-ids 1,2,3 --spacing Z,Y,X --out <model folder>
        [--steps 1000] [--batch 2] [--lr 1e-3] [--optimizer adamw|sgd] [--schedule poly|constant]
        [--seed N] [--checkpoint-every 100] [--resume] [--orientation RAS|LPS|as-is]
        [--spatial-augmentation 0.2] [--foreground-oversampling 0.33]
      Train a PlainConvUNet from scratch on labeled CTs (Dice + cross-entropy).
  finetune <variant folder> --images ... --labels ... [--steps 200] [--lr 1e-5] [--schedule constant]
      Fine-tune a (compressed) model with labels; the paper's setting is AdamW, constant lr 1e-5.
  distill <variant folder> --teacher <model folder> --images <a.nii.gz | folder of NIfTI | DICOM folder>[,...] [--steps 300]
          [--lr 1e-4] [--temperature 2] [--pseudo-label-weight 1] [--foreground-oversampling 0.33]
      Label-free: the variant learns the teacher's softened outputs on unlabeled CTs, plus
      Dice + cross-entropy against the teacher's argmax; patches are centred on what the teacher
      segments.
  evaluate <model folder> --images ... --labels ... [--reference <model folder>] [--step 0.5] [--tag name]
      Per-class and mean Dice against the labels (and agreement Dice with the reference model's
      predictions); written to <model folder>/<tag>.json and, for a variant, into its manifest.
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

bool ValidOrientation(const std::string& o, std::ostream& err) {
  if (o == "as-is" || o == "RAS" || o == "LPS") return true;
  err << "--orientation must be as-is, RAS or LPS (got '" << o << "')\n";
  return false;
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
  model.value().info.orientation = a.Get("orientation", "as-is");  // TotalSegmentator's models: RAS
  if (!ValidOrientation(model.value().info.orientation, err)) return 2;
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
    auto loaded = LoadNetwork(path);
    if (!loaded.ok()) return loaded.status();
    return std::make_pair(std::move(loaded.value().network), loaded.value().info.patch_size);
  }
  if (!fs::is_regular_file(path, ec)) return NotFound("'" + path + "' is neither a model folder nor a readable architecture file");
  auto arch = ReadArchitectureFile(path);
  if (!arch.ok()) return arch.status();
  auto net = PlainConvUNet::Create(arch.value().network, PlainConvUNet::RandomWeights(arch.value().network, 0));
  if (!net.ok()) return net.status();
  return std::make_pair(std::move(net).value(), arch.value().patch_size);
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
  auto model = LoadNetwork(a.positional[0]);
  if (!model.ok()) return Fail(err, model.status());
  auto ct = ReadCt(a.Get("input"));
  if (!ct.ok()) return Fail(err, ct.status());
  UNetPatchNetwork patch_net(model.value().network);
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

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

bool IsNifti(const fs::path& p) {
  const std::string name = p.filename().string();
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with(".nii") || ends_with(".nii.gz");
}

// Unlabeled images: a folder holding NIfTI files stands for those files (sorted by name); any
// other folder is read as one DICOM series.
std::vector<std::string> ExpandNiftiFolders(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const auto& item : items) {
    std::vector<std::string> files;
    std::error_code ec;
    if (fs::is_directory(item, ec)) {
      for (const auto& entry : fs::directory_iterator(item, ec))
        if (entry.is_regular_file() && IsNifti(entry.path())) files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) files.push_back(item);
    out.insert(out.end(), files.begin(), files.end());
  }
  return out;
}

// Reads the CTs (and, when given, their label maps) into training cases in the model's space.
Result<std::vector<TrainingCase>> LoadCases(const ModelInfo& info, const std::vector<std::string>& images,
                                            const std::vector<std::string>& labels, bool with_labels) {
  if (images.empty()) return InvalidArgument("--images needs at least one CT");
  if (with_labels && labels.size() != images.size()) return InvalidArgument("--labels must name one label map per image");
  std::vector<TrainingCase> cases;
  for (size_t i = 0; i < images.size(); ++i) {
    auto ct = ReadCt(images[i]);
    if (!ct.ok()) return ct.status();
    std::optional<LabelValues> seg;
    if (with_labels) {
      auto read = ReadCt(labels[i]);
      if (!read.ok()) return read.status();
      seg = std::move(read).value();
    }
    auto c = MakeTrainingCase(info, ct.value(), seg ? &*seg : nullptr);
    if (!c.ok()) return Status(c.status().code(), images[i] + ": " + c.status().message());
    cases.push_back(c.value());
  }
  return cases;
}

TrainerOptions TrainerOptionsFrom(const Args& a, TrainerOptions o, std::ostream& out) {
  o.steps = std::stoll(a.Get("steps", std::to_string(o.steps)));
  o.batch = std::stoll(a.Get("batch", std::to_string(o.batch)));
  if (a.Has("lr")) o.learning_rate = std::stod(a.Get("lr"));
  o.optimizer = a.Get("optimizer", o.optimizer);
  o.schedule = a.Get("schedule", o.schedule);
  o.seed = std::stoull(a.Get("seed", std::to_string(o.seed)));
  o.checkpoint_every = std::stoll(a.Get("checkpoint-every", std::to_string(o.checkpoint_every)));
  o.resume = a.Has("resume");
  if (a.Has("temperature")) o.temperature = std::stod(a.Get("temperature"));
  if (a.Has("pseudo-label-weight")) o.pseudo_label_weight = std::stod(a.Get("pseudo-label-weight"));
  if (a.Has("spatial-augmentation")) o.spatial_augmentation = std::stod(a.Get("spatial-augmentation"));
  if (a.Has("foreground-oversampling")) o.foreground_oversampling = std::stod(a.Get("foreground-oversampling"));
  o.progress = &out;
  return o;
}

json OptionsJson(const TrainerOptions& o, const TrainingLog& log) {
  return {{"steps", o.steps}, {"batch", o.batch}, {"optimizer", o.optimizer}, {"learning_rate", o.learning_rate},
          {"schedule", o.schedule}, {"seed", o.seed}, {"seconds", log.seconds},
          {"final_loss", log.losses.empty() ? 0.0 : log.losses.back()}};
}

// Records `key` in a variant's manifest (no-op for an original).
void NoteInManifest(const std::string& dir, const std::string& key, const json& value) {
  const fs::path path = fs::path(dir) / "manifest.json";
  std::ifstream in(path);
  if (!in) return;
  json manifest = json::parse(in, nullptr, false);
  in.close();
  if (manifest.is_discarded()) return;
  manifest[key] = value;
  std::ofstream(path) << manifest.dump(2) << "\n";
}

int TrainCommand(const Args& a, std::ostream& out, std::ostream& err) {
  for (const char* k : {"architecture", "images", "labels", "classes", "class-ids", "spacing", "out"}) {
    if (!a.Has(k)) {
      err << "train needs --" << k << " (see --help)\n";
      return 2;
    }
  }
  SetThreads(a);
  auto arch = ReadArchitectureFile(a.Get("architecture"));
  if (!arch.ok()) return Fail(err, arch.status());
  std::ifstream classes_in(a.Get("classes"));
  if (!classes_in) {
    err << "error: cannot read --classes\n";
    return 1;
  }
  const json classes = json::parse(classes_in, nullptr, false);
  if (classes.is_discarded()) {
    err << "error: --classes must be a JSON file\n";
    return 2;
  }
  ModelInfo info;
  const fs::path out_dir(a.Get("out"));
  info.name = out_dir.filename().string();
  info.orientation = a.Get("orientation", "RAS");
  if (!ValidOrientation(info.orientation, err)) return 2;
  info.labels = {{0, "background"}};
  std::vector<int64_t> ids;
  for (const auto& id : SplitList(a.Get("class-ids"))) {
    ids.push_back(std::stoll(id));
    if (!classes.contains(id)) {
      err << "error: class id " << id << " is not in " << a.Get("classes") << "\n";
      return 2;
    }
    info.labels.emplace_back(ids.back(), classes[id].get<std::string>());
  }
  info.network = arch.value().network;
  info.network.num_classes = static_cast<int64_t>(info.labels.size());
  const Status network_ok = info.network.Validate();
  if (!network_ok.ok()) return Fail(err, network_ok);
  info.patch_size = arch.value().patch_size;
  const auto spacing = SplitList(a.Get("spacing"));
  if (spacing.size() != 3) {
    err << "--spacing must be Z,Y,X\n";
    return 2;
  }
  for (int i = 0; i < 3; ++i) info.spacing[i] = std::stod(spacing[i]);
  // Normalisation statistics from the first training CT's labelled voxels, as nnU-Net's fingerprint.
  auto first_ct = ReadCt(SplitList(a.Get("images"))[0]);
  auto first_seg = ReadCt(SplitList(a.Get("labels"))[0]);
  if (!first_ct.ok()) return Fail(err, first_ct.status());
  if (!first_seg.ok()) return Fail(err, first_seg.status());
  auto intensity = ForegroundIntensity(first_ct.value(), first_seg.value(), ids);
  if (!intensity.ok()) return Fail(err, intensity.status());
  info.channels = {{"CT", "CTNormalization", false, intensity.value()}};

  auto cases = LoadCases(info, SplitList(a.Get("images")), SplitList(a.Get("labels")), true);
  if (!cases.ok()) return Fail(err, cases.status());
  TrainerOptions defaults;
  auto options = TrainerOptionsFrom(a, defaults, out);
  options.checkpoint = (out_dir / "training-checkpoint.safetensors").string();
  fs::create_directories(out_dir);
  auto net = PlainConvUNet::Create(info.network, PlainConvUNet::RandomWeights(info.network, options.seed));
  if (!net.ok()) return Fail(err, net.status());
  auto log = Train(net.value(), info.patch_size, cases.value(), options);
  if (!log.ok()) return Fail(err, log.status());
  info.provenance = {{"source", "trained by tucker-seg-models train"}, {"images", SplitList(a.Get("images"))},
                     {"training", OptionsJson(options, log.value())}};
  Model model{info, net.value().Weights()};
  const Status st = SaveModel(model, out_dir.string());
  if (!st.ok()) return Fail(err, st);
  out << "trained " << info.name << ": " << info.labels.size() - 1 << " classes, " << net.value().NumParameters()
      << " parameters, " << options.steps << " steps in " << std::fixed << std::setprecision(0) << log.value().seconds
      << " s, final loss " << std::setprecision(4) << log.value().losses.back() << " -> " << out_dir.string() << "\n";
  return 0;
}

// finetune and distill: load, train in place, save, note in the manifest.
int AdaptCommand(const std::string& command, const Args& a, std::ostream& out, std::ostream& err) {
  const bool distill = command == "distill";
  if (a.positional.size() != 1 || !a.Has("images") || (distill ? !a.Has("teacher") : !a.Has("labels"))) {
    err << command << (distill ? " needs <variant folder> --teacher <model folder> --images ...\n"
                               : " needs <variant folder> --images ... --labels ...\n");
    return 2;
  }
  SetThreads(a);
  const std::string dir = a.positional[0];
  auto model = LoadNetwork(dir);
  if (!model.ok()) return Fail(err, model.status());
  PlainConvUNet& net = model.value().network;
  const auto images = distill ? ExpandNiftiFolders(SplitList(a.Get("images"))) : SplitList(a.Get("images"));
  auto cases = LoadCases(model.value().info, images, SplitList(a.Get("labels")), !distill);
  if (!cases.ok()) return Fail(err, cases.status());
  TrainerOptions defaults;
  defaults.steps = distill ? 300 : 200;
  defaults.learning_rate = distill ? 1e-4 : 1e-5;
  defaults.schedule = "constant";
  defaults.weight_decay = 1e-2;
  auto options = TrainerOptionsFrom(a, defaults, out);
  Result<TrainingLog> log = Status(StatusCode::kInternal, "not run");
  if (distill) {
    auto teacher = LoadNetwork(a.Get("teacher"));
    if (!teacher.ok()) return Fail(err, teacher.status());
    log = Distill(net, teacher.value().network, model.value().info.patch_size, cases.value(), options);
  } else {
    log = Train(net, model.value().info.patch_size, cases.value(), options);
  }
  if (!log.ok()) return Fail(err, log.status());
  Model updated{model.value().info, net.Weights()};
  json record = OptionsJson(options, log.value());
  record["images"] = images;
  if (distill) {
    record["teacher"] = a.Get("teacher");
    record["temperature"] = options.temperature;
    record["pseudo_label_weight"] = options.pseudo_label_weight;
    record["foreground_oversampling"] = options.foreground_oversampling;
  }
  updated.info.provenance[distill ? "distilled" : "finetuned"] = record;
  const Status st = SaveModel(updated, dir);
  if (!st.ok()) return Fail(err, st);
  NoteInManifest(dir, distill ? "distilled" : "finetuned", record);
  out << command << " " << model.value().info.name << ": " << options.steps << " steps in " << std::fixed << std::setprecision(0)
      << log.value().seconds << " s, loss " << std::setprecision(4) << log.value().losses.front() << " -> "
      << log.value().losses.back() << "\n";
  return 0;
}

// Dice per label id as {"<id>": dice}.
json PerClassJson(const std::map<int64_t, double>& dice) {
  json per_class = json::object();
  for (const auto& [id, d] : dice) per_class[std::to_string(id)] = d;
  return per_class;
}

// Mean over the classes scored (0 when none).
double MeanDice(const std::map<int64_t, double>& dice) {
  double sum = 0;
  for (const auto& [id, d] : dice) sum += d;
  return sum / static_cast<double>(std::max<size_t>(1, dice.size()));
}

int EvaluateCommand(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.positional.size() != 1 || !a.Has("images") || !a.Has("labels")) {
    err << "evaluate needs <model folder> --images ... --labels ...\n";
    return 2;
  }
  SetThreads(a);
  auto subject = LoadNetwork(a.positional[0]);
  if (!subject.ok()) return Fail(err, subject.status());
  std::optional<LoadedModel> reference;
  if (a.Has("reference")) {
    auto r = LoadNetwork(a.Get("reference"));
    if (!r.ok()) return Fail(err, r.status());
    reference.emplace(std::move(r).value());
  }
  const ModelInfo& info = subject.value().info;
  std::vector<int64_t> ids;
  for (size_t i = 1; i < info.labels.size(); ++i) ids.push_back(info.labels[i].first);
  PredictionOptions popt;
  popt.window.step = std::stod(a.Get("step", "0.5"));
  const auto images = SplitList(a.Get("images")), labels = SplitList(a.Get("labels"));
  if (images.size() != labels.size()) {
    err << "--labels must name one label map per image\n";
    return 2;
  }
  json results = json::array();
  for (size_t i = 0; i < images.size(); ++i) {
    auto ct = ReadCt(images[i]);
    auto seg = ReadCt(labels[i]);
    if (!ct.ok()) return Fail(err, ct.status());
    if (!seg.ok()) return Fail(err, seg.status());
    UNetPatchNetwork net(subject.value().network);
    auto pred = Predict(info, net, ct.value(), popt);
    if (!pred.ok()) return Fail(err, pred.status());
    if (!(seg.value().geometry == ct.value().geometry)) seg = ResampleLabelsNearest(seg.value(), ct.value().geometry);
    const auto dice = DicePerLabel(pred.value().labels, seg.value(), ids);
    const double mean = MeanDice(dice);
    json entry = {{"image", images[i]}, {"labels", labels[i]}, {"dice", PerClassJson(dice)}, {"mean_dice", mean}};
    out << images[i] << ": mean Dice " << std::fixed << std::setprecision(3) << mean << " over " << dice.size() << " classes";
    std::map<int64_t, double> agreement;
    if (reference) {
      UNetPatchNetwork ref_net(reference->network);
      auto ref = Predict(reference->info, ref_net, ct.value(), popt);
      if (!ref.ok()) return Fail(err, ref.status());
      LabelValues ref_values{ref.value().labels.geometry, {ref.value().labels.voxels.begin(), ref.value().labels.voxels.end()}};
      agreement = DicePerLabel(pred.value().labels, ref_values, ids);
      const double agree = MeanDice(agreement);
      entry["agreement_dice"] = agree;
      entry["agreement"] = PerClassJson(agreement);
      out << ", agreement Dice with " << reference->info.name << " " << agree;
    }
    out << "\n";
    if (reference) out << "  " << std::left << std::setw(28) << "class" << std::right << std::setw(8) << "Dice" << std::setw(11) << "agreement\n";
    for (const auto& [id, name] : info.labels) {
      if (id == 0 || (!dice.count(id) && !agreement.count(id))) continue;
      out << "  " << std::left << std::setw(28) << name << std::right << std::setw(8);
      if (dice.count(id)) out << dice.at(id); else out << "-";
      if (reference) {
        out << std::setw(10);
        if (agreement.count(id)) out << agreement.at(id); else out << "-";
      }
      out << "\n";
    }
    results.push_back(entry);
  }
  const json evaluation = {{"step", popt.window.step}, {"cases", results}};
  const std::string tag = a.Get("tag", "evaluation");
  std::ofstream(fs::path(a.positional[0]) / (tag + ".json")) << evaluation.dump(2) << "\n";
  NoteInManifest(a.positional[0], tag, evaluation);
  return 0;
}

int ForwardCommand(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.positional.size() != 1 || !a.Has("input") || !a.Has("output")) {
    err << "forward needs <model folder> --input <x.f32> --output <y.f32>\n";
    return 2;
  }
  SetThreads(a);
  auto model = LoadNetwork(a.positional[0]);
  if (!model.ok()) return Fail(err, model.status());
  const ModelInfo& info = model.value().info;
  const PlainConvUNet& net = model.value().network;
  Int3 patch = info.patch_size;
  if (a.Has("patch") && !ParsePatch(a.Get("patch"), &patch)) {
    err << "--patch must be Z,Y,X\n";
    return 2;
  }
  const std::vector<int64_t> shape{1, info.network.input_channels, patch[0], patch[1], patch[2]};
  auto x = ReadRawFloat32(a.Get("input"), shape);
  if (!x.ok()) return Fail(err, x.status());
  const Status input_ok = net.CheckInput(x.value());
  if (!input_ok.ok()) return Fail(err, input_ok);
  const auto start = std::chrono::steady_clock::now();
  torch::Tensor y = net.Forward(x.value());
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
  const Args a = Parse({argv.begin() + 1, argv.end()}, {"json", "factorize-all", "mirror", "resume"});
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
    if (command == "train") return TrainCommand(a, out, err);
    if (command == "finetune" || command == "distill") return AdaptCommand(command, a, out, err);
    if (command == "evaluate") return EvaluateCommand(a, out, err);
  } catch (const std::exception& e) {  // last line of defence: nothing escapes main as a crash
    err << "error: " << command << ": " << std::string(e.what()).substr(0, std::string(e.what()).find('\n')) << "\n";
    return 1;
  }
  err << "unknown command '" << command << "'\n" << kUsage;
  return 2;
}

}  // namespace tucker_seg
