#include "client/cli.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/dicom_node.h"
#include "client/dicom_seg.h"
#include "image_io/segmentation_files.h"
#include "vocabulary/atomic_file.h"
#include "vocabulary/pem_file.h"
#include "client/dicomweb.h"
#include "client/http_request.h"
#include "image_io/image_io.h"
#include "client/preview.h"
#include "client/segmentation_client.h"
#include "command_line/command_line.h"
#include "vocabulary/log.h"

namespace tucker_seg::client {
namespace {

// How to reach the server: flags of every command that talks to it.
struct Connection {
  std::string server = "localhost:50051";
  std::string tls_ca, tls_cert, tls_key;
  bool tls = false;
  std::string token;
};


// A one-line progress bar on a terminal; nothing when stderr is piped or --quiet.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}
  ~ProgressBar() { Finish(); }
  void Update(const SegmentProgress& p) {
    if (!enabled_) return;
    const char* stage = "sending";
    double done = 0;
    std::string detail;
    switch (p.stage) {
      case SegmentProgress::Stage::kSending: done = p.bytes_to_send ? double(p.bytes_sent) / p.bytes_to_send : 0; break;
      case SegmentProgress::Stage::kHeaderAccepted: stage = "sending"; done = 0; break;
      case SegmentProgress::Stage::kQueued:
        stage = "queued";
        detail = "position " + std::to_string(p.queue_position) + ", about " + std::to_string(std::lround(p.estimated_wait_seconds)) + " s";
        break;
      case SegmentProgress::Stage::kRunning:
        stage = "segmenting";
        done = p.tiles_total ? double(p.tiles_done) / p.tiles_total : 0;
        if (p.tiles_total) detail = std::to_string(p.tiles_done) + "/" + std::to_string(p.tiles_total) + " tiles";
        break;
      case SegmentProgress::Stage::kReceiving: stage = "receiving"; done = p.bytes_to_receive ? double(p.bytes_received) / p.bytes_to_receive : 0; break;
      case SegmentProgress::Stage::kDone: stage = "done"; done = 1; break;
    }
    const int filled = static_cast<int>(done * 30);
    std::fprintf(stderr, "\r%-11s [%s%s] %3.0f%% %s %s   ", stage, std::string(filled, '#').c_str(), std::string(30 - filled, ' ').c_str(),
                 100 * done, p.variant.c_str(), detail.c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void Finish() {
    if (shown_) std::fprintf(stderr, "\n");
    shown_ = false;
  }

 private:
  bool enabled_;
  bool shown_ = false;
};

// What `segment` and `pacs` were asked for. `statistics`/`preview` hold a file name, or "auto"
// (the flag without a value): beside the output.
struct SegmentJob {
  std::vector<std::string> inputs;
  std::string series, output, output_type, dicom_seg, statistics, preview;
  std::string seg_type = "binary";  // --seg-type
  std::vector<std::string> roi_subset;  // names, each value may hold several separated by commas
  bool include_masks_at_border = false;
  bool fast = false;
  bool continue_on_error = false, skip_existing = false;
  SegmentOptions options;
  bool quiet = false;
};

// One CT of a job and where its outputs go.
struct SegmentCase {
  std::string input, output, statistics, preview;
  OutputType type = OutputType::kMultilabel;
};

// Where a side output goes: the given file, or (for "auto") `<folder>/<name>.<ext>` for per-class
// output and `<stem>_<name>.<ext>` beside a multilabel file.
std::string SideOutput(const std::string& flag, const SegmentCase& c, const std::string& name, const std::string& extension) {
  if (flag.empty() || flag != "auto") return flag;
  if (c.type == OutputType::kPerClass) return (std::filesystem::path(c.output) / (name + extension)).string();
  return WithoutImageExtension(c.output) + "_" + name + extension;
}

// Each CT's name for its outputs: its file or folder name without the image extension and
// without nnU-Net's channel suffix `_0000`; where two CTs share a name (`a/ct.nii.gz`,
// `b/ct.nii.gz`), their folders' names go in front (`a_ct`, `b_ct`). Names that still clash are
// refused before any CT is segmented.
Result<std::vector<std::string>> CaseNames(const std::vector<std::string>& inputs) {
  std::vector<std::string> names;
  std::map<std::string, int> count;
  for (const auto& input : inputs) {
    std::string name = CaseName(input);
    if (name.size() > 5 && name.compare(name.size() - 5, 5, "_0000") == 0) name.resize(name.size() - 5);
    names.push_back(name);
    ++count[name];
  }
  std::map<std::string, std::string> taken;  // final name -> its input
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (count[names[i]] > 1) {
      const std::string folder = std::filesystem::path(inputs[i]).lexically_normal().parent_path().filename().string();
      names[i] = (folder.empty() ? "" : folder + "_") + names[i];
    }
    const auto [it, added] = taken.emplace(names[i], inputs[i]);
    if (!added) return InvalidArgument("-i: '" + it->second + "' and '" + inputs[i] + "' would both write the case '" + names[i] + "'; rename one");
  }
  return names;
}

// One case per CT: a single input writes to -o as given; several write under the -o folder, each
// to `<o>/<case>/` (per-class, the default as for one CT written to a folder) or `<o>/<case>.nii.gz`
// (multilabel).
Result<std::vector<SegmentCase>> PlanCases(const SegmentJob& job) {
  TS_ASSIGN_OR_RETURN(const std::vector<std::string> inputs, ExpandCtInputs(job.inputs));
  TS_ASSIGN_OR_RETURN(const std::vector<std::string> names, CaseNames(inputs));
  std::optional<OutputType> type;
  if (!job.output_type.empty()) {
    TS_ASSIGN_OR_RETURN(type, ParseOutputType(job.output_type));
  }
  std::vector<SegmentCase> cases;
  if (inputs.size() > 1) {
    if (job.output.empty() || HasImageExtension(job.output)) {
      return InvalidArgument("-o: " + std::to_string(inputs.size()) + " CTs need an output folder, not '" + job.output + "'");
    }
    for (const std::string* flag : {&job.statistics, &job.preview, &job.dicom_seg}) {
      if (!flag->empty() && *flag != "auto") return InvalidArgument("with several CTs, --statistics/--preview take no file name and --dicom-seg is not available");
    }
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    SegmentCase c;
    c.input = inputs[i];
    c.type = type.value_or(DefaultOutputType(job.output));
    if (inputs.size() == 1) c.output = job.output;
    else c.output = (std::filesystem::path(job.output) / (names[i] + (c.type == OutputType::kPerClass ? "" : ".nii.gz"))).string();
    if (c.output.empty() && (job.statistics == "auto" || job.preview == "auto")) {
      return InvalidArgument("--statistics/--preview without a file name need -o");
    }
    c.statistics = SideOutput(job.statistics, c, "statistics", ".json");
    c.preview = SideOutput(job.preview, c, "preview", ".png");
    cases.push_back(c);
  }
  return cases;
}

// --skip-existing: the case's label map (file, or per-class folder with files) is already there.
bool OutputExists(const SegmentCase& c) {
  std::error_code ignored;
  if (c.output.empty()) return false;
  if (c.type == OutputType::kMultilabel) return std::filesystem::exists(c.output, ignored);
  return std::filesystem::is_directory(c.output, ignored) && !std::filesystem::is_empty(c.output, ignored);
}

Result<std::unique_ptr<SegmentationClient>> ConnectTo(const Connection& connection) {
  ConnectionOptions c;
  c.target = connection.server;
  c.tls = connection.tls || !connection.tls_ca.empty();
  if (!connection.tls_ca.empty()) {
    TS_ASSIGN_OR_RETURN(c.tls_root_certificates, ReadPemFile(connection.tls_ca, "--tls-ca"));
  }
  if (!connection.tls_cert.empty()) {
    TS_ASSIGN_OR_RETURN(c.tls_certificate_chain, ReadPemFile(connection.tls_cert, "--tls-cert"));
  }
  if (!connection.tls_key.empty()) {
    TS_ASSIGN_OR_RETURN(c.tls_private_key, ReadPemFile(connection.tls_key, "--tls-key"));
  }
  c.bearer_token = connection.token;
  return SegmentationClient::Connect(c);
}

// --fast: the selectable variant with the fewest calibrated seconds per tile on the server's
// first device.
Result<std::string> FastestVariant(const SegmentationClient& client, const std::string& model) {
  TS_ASSIGN_OR_RETURN(const auto description, client.DescribeModel(model));
  const tuckerseg::v1::VariantInfo* fastest = nullptr;
  for (const auto& v : description.variants())
    if (v.selectable() && (!fastest || v.calibrated_seconds_per_tile() < fastest->calibrated_seconds_per_tile())) fastest = &v;
  if (!fastest) return FailedPrecondition("--fast: model '" + description.name() + "' has no selectable variant");
  return fastest->name();
}

Status RunCase(const SegmentationClient& client, const SegmentJob& job, const SegmentCase& c) {
  auto input = ReadCtInput(c.input, job.series);
  if (!input.ok()) return input.status();
  if (!job.dicom_seg.empty() && !input.value().dicom) return InvalidArgument("--dicom-seg needs a DICOM series folder as input (-i)");
  ProgressBar bar(!job.quiet && isatty(STDERR_FILENO));
  SegmentOptions options = job.options;
  options.on_progress = [&](const SegmentProgress& p) { bar.Update(p); };
  for (const std::string& value : job.roi_subset) {  // TotalSegmentator's "liver spleen" and our "liver,spleen"
    std::stringstream names(value);
    for (std::string name; std::getline(names, name, ',');)
      if (!name.empty()) options.roi_subset.push_back(name);
  }
  auto result = client.Segment(input.value().ct, options);
  bar.Finish();
  if (!result.ok()) return result.status();
  SegmentResult& r = result.value();
  if (!options.roi_subset.empty()) TS_RETURN_IF_ERROR(KeepOnlyClasses(options.roi_subset, &r.label_table, &r.labels));
  const Provenance provenance{r.model, r.variant, r.variant_quality, command_line::ProjectVersion(),
                              r.step > 0 ? std::optional<double>(r.step) : std::nullopt};
  if (!c.output.empty()) {
    TS_RETURN_IF_ERROR(WriteSegmentationFiles(c.output, r.labels, r.label_table, {c.type, input.value().nifti_codes, provenance}));
  }
  if (!job.dicom_seg.empty()) {
    TS_RETURN_IF_ERROR(WriteDicomSeg(job.dicom_seg, r.labels, *input.value().dicom, r.label_table, provenance,
                                     job.seg_type == "labelmap" ? DicomSegType::kLabelMap : DicomSegType::kBinary));
  }
  if (!c.statistics.empty()) {
    TS_ASSIGN_OR_RETURN(const auto stats,
                        SegmentationStatistics(input.value().ct, r.labels, r.label_table, provenance, !job.include_masks_at_border));
    TS_RETURN_IF_ERROR(WriteStatisticsFiles(c.statistics, stats));
  }
  if (!c.preview.empty()) TS_RETURN_IF_ERROR(WritePreview(c.preview, input.value().ct, r.labels, r.label_table));
  std::printf("%s: model %s, variant %s (%s), %.1f s on %s%s%s\n", c.input.c_str(), r.model.c_str(), r.variant.c_str(),
              r.selection_reason.c_str(), r.timings.total_seconds(), r.device.c_str(), c.output.empty() ? "" : " -> ", c.output.c_str());
  return Status::Ok();
}

Status RunSegment(const SegmentationClient& client, SegmentJob job) {
  TS_ASSIGN_OR_RETURN(const auto cases, PlanCases(job));
  if (job.fast) {
    TS_ASSIGN_OR_RETURN(job.options.variant, FastestVariant(client, job.options.model));
  }
  std::vector<std::string> failed;
  for (const auto& c : cases) {
    if (job.skip_existing && OutputExists(c)) {
      std::printf("%s: skipped, %s exists (--skip-existing)\n", c.input.c_str(), c.output.c_str());
      continue;
    }
    const Status status = RunCase(client, job, c);
    if (status.ok()) continue;
    if (!job.continue_on_error) return status;
    std::fprintf(stderr, "%s: failed: %s\n", c.input.c_str(), status.message().c_str());
    failed.push_back(c.input);
  }
  if (failed.empty()) return Status::Ok();
  std::string list;
  for (const auto& input : failed) list += (list.empty() ? "" : ", ") + input;
  return Internal(std::to_string(failed.size()) + " of " + std::to_string(cases.size()) + " CTs failed (--continue-on-error): " + list);
}

Status Segment(const Connection& connection, const SegmentJob& job) {
  TS_ASSIGN_OR_RETURN(auto client, ConnectTo(connection));
  return RunSegment(*client, job);
}

Status Models(const Connection& connection) {
  auto client = ConnectTo(connection);
  if (!client.ok()) return client.status();
  auto models = client.value()->ListModels();
  if (!models.ok()) return models.status();
  for (const auto& m : models.value().models()) {
    auto d = client.value()->DescribeModel(m.name());
    if (!d.ok()) return d.status();
    std::printf("%s (%d classes) on %s %s\n  version %s\n", m.name().c_str(), m.labels_size() - 1, d.value().device().kind().c_str(),
                d.value().device().name().c_str(), d.value().model_version().c_str());
    std::printf("  %-14s %12s %10s %9s %12s  %s\n", "variant", "parameters", "GMACs/tile", "quality", "s/tile here", "auto");
    for (const auto& v : d.value().variants()) {
      std::printf("  %-14s %12lld %10.2f %9s %12.4f  %s\n", v.name().c_str(), static_cast<long long>(v.parameters()), v.macs_per_tile() / 1e9,
                  v.quality_known() ? std::to_string(v.quality()).substr(0, 5).c_str() : "-", v.calibrated_seconds_per_tile(),
                  v.selectable() ? "yes" : ("no: " + v.not_selectable_reason()).c_str());
    }
    std::string classes;
    for (const auto& l : m.labels())
      if (l.id()) classes += (classes.empty() ? "" : ", ") + l.name();
    std::printf("  classes: %s\n", classes.c_str());
  }
  return Status::Ok();
}

Status Health(const Connection& connection, double wait_seconds, const std::string& readyz_url) {
  if (!readyz_url.empty()) {  // the HTTP probe: works whatever TLS or tokens the gRPC port needs
    HttpOptions probe;
    probe.timeout_seconds = std::max(1.0, wait_seconds);
    TS_RETURN_IF_ERROR(HttpRequest("readiness probe", readyz_url, {}, nullptr, probe).status());
    std::printf("READY\n");
    return Status::Ok();
  }
  auto client = ConnectTo(connection);
  if (!client.ok()) return client.status();
  auto serving = client.value()->WaitUntilServing("", wait_seconds);
  if (!serving.ok()) return serving.status();
  if (!serving.value()) return Unavailable("server " + connection.server + " is not SERVING (calibrating, shutting down or unreachable)");
  std::printf("SERVING\n");
  return Status::Ok();
}

// Study in Orthanc -> its CT series over DICOMweb -> segment -> DICOM SEG stored back.
struct PacsFlags {
  std::string orthanc, study, dicomweb_root = "/dicom-web";
  HttpOptions http;
};

// The series and its SEG wait in a folder only this user can read (mkdtemp: 0700, an
// unpredictable name), removed however the command ends short of a crash.
class PrivateSpool {
 public:
  static Result<std::unique_ptr<PrivateSpool>> Create() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tucker-seg-pacs-XXXXXX").string();
    if (!mkdtemp(pattern.data())) return Internal(std::string("pacs: cannot create a private spool folder: ") + std::strerror(errno));
    return std::unique_ptr<PrivateSpool>(new PrivateSpool(pattern));
  }
  ~PrivateSpool() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  explicit PrivateSpool(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::filesystem::path dir_;
};

Status Pacs(const Connection& connection, const PacsFlags& flags, SegmentJob job) {
  DicomWebClient pacs(flags.orthanc + flags.dicomweb_root, flags.http);
  const std::string& study = flags.study;
  auto series = pacs.FindSeries(study);
  if (!series.ok()) return series.status();
  const SeriesSummary* ct = nullptr;
  for (const auto& s : series.value())
    if (s.modality == "CT" && (!ct || s.instances > ct->instances)) ct = &s;
  if (!ct) return NotFound("pacs: the study has no CT series in " + UrlServer(flags.orthanc));  // no UIDs in messages
  TS_ASSIGN_OR_RETURN(const auto spool, PrivateSpool::Create());
  const std::filesystem::path& dir = spool->dir();
  TS_RETURN_IF_ERROR(pacs.RetrieveSeries(study, ct->series_instance_uid, (dir / "series").string()));
  job.inputs = {(dir / "series").string()};
  job.dicom_seg = (dir / "seg.dcm").string();
  auto client = ConnectTo(connection);
  if (!client.ok()) return client.status();
  TS_RETURN_IF_ERROR(RunSegment(*client.value(), job));
  TS_RETURN_IF_ERROR(pacs.Store(job.dicom_seg));
  std::printf("stored the DICOM SEG of the study's CT series (%lld instances) in %s\n", static_cast<long long>(ct->instances),
              UrlServer(flags.orthanc).c_str());
  return Status::Ok();
}

// Segments every CT series a PACS sends to the node (client/dicom_node.h) the way `segment
// --dicom-seg` does, until SIGINT or SIGTERM.
Status RunDicomNode(const Connection& connection, const DicomNodeOptions& options, const SegmentJob& job) {
  // Blocked before the node's threads start (they inherit the mask), so that only sigwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  auto segment = [&connection, &job](const std::string& folder, const std::string& seg_path) -> Status {
    SegmentJob series = job;
    series.inputs = {folder};
    series.dicom_seg = seg_path;
    series.quiet = true;
    TS_ASSIGN_OR_RETURN(auto client, ConnectTo(connection));
    return RunSegment(*client, series);
  };
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each segmented series' line as it happens, also into a log file
  TS_ASSIGN_OR_RETURN(auto node, DicomNode::Start(options, segment));
  int signal = 0;
  sigwait(&stop_signals, &signal);
  Log("dicom-node: signal %d: stopping after the current associations", signal);
  node->Stop();
  const DicomNodeCounts n = node->counts();
  Log("dicom-node: stopped; instances received %lld, ignored %lld, refused %lld; series complete %lld, segmented %lld, sent %lld, "
      "failed %lld; failed attempts %lld",
      static_cast<long long>(n.instances_received), static_cast<long long>(n.instances_ignored), static_cast<long long>(n.instances_refused),
      static_cast<long long>(n.series_complete), static_cast<long long>(n.series_segmented), static_cast<long long>(n.series_sent),
      static_cast<long long>(n.series_failed), static_cast<long long>(n.attempts_failed));
  return Status::Ok();
}

// The flags `segment`, `pacs` and `dicom-node` share: which model and variant, how long to wait, how to report.
void AddSelectionFlags(CLI::App* app, SegmentJob* job) {
  app->add_option("--model", job->options.model, "Model name (default: the server's only model)");
  app->add_option("--variant", job->options.variant, "auto, or a variant name (see `tucker-seg models`)")->capture_default_str();
  app->add_option("--min-quality", job->options.min_quality, "auto only: lowest agreement Dice acceptable")->check(CLI::Range(0.0, 1.0));
  app->add_option("--step", job->options.step, "Sliding-window step as a fraction of the patch, 0.1-1 (TotalSegmentator: 0.8; 0: the server's 0.5)")
      ->check(CLI::Range(0.0, 1.0));
  app->add_option("--timeout", job->options.timeout_seconds, "Seconds the whole request may take (0: no deadline)")
      ->check(CLI::NonNegativeNumber);
  app->add_flag("--quiet", job->quiet, "No progress bar");
}

// --seg-type for the commands that write a DICOM SEG.
void AddSegTypeFlag(CLI::App* app, SegmentJob* job) {
  app->add_option("--seg-type", job->seg_type,
                  "DICOM SEG type: binary (one frame per segment and slice; every viewer) or labelmap (DICOM 2024c: one frame per "
                  "slice holding segment numbers)")
      ->check(CLI::IsMember({"binary", "labelmap"}))
      ->capture_default_str();
}

}  // namespace

int RunCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"Segments CTs with a tucker-seg server: NIfTI/NRRD/MHA or DICOM in, label maps and DICOM SEG out."};
  command_line::Configure(app, "tucker-seg");
  app.require_subcommand(1);
  Connection connection;

  SegmentJob job;
  job.options.variant = "auto";
  CLI::App* segment = app.add_subcommand("segment", "Segment CTs and write their label maps in each CT's own geometry.");
  segment->add_option("-i,--input", job.inputs,
                      "CTs: .nii/.nii.gz/.nrrd/.mha files, DICOM series folders (recognised by content) or folders of NIfTI files")
      ->required();
  segment->add_option("-o,--output", job.output,
                      "A .nii.gz file (multilabel map), or a folder (one <class>.nii.gz per class; with several CTs, one entry per CT)");
  segment->add_option("--output-type", job.output_type, "per-class or multilabel (default: multilabel for an image file name, else per-class)")
      ->check(CLI::IsMember({"per-class", "multilabel"}));
  bool multilabel = false;
  segment->add_flag("--ml", multilabel, "TotalSegmentator's spelling of --output-type multilabel");
  segment->add_option("--dicom-seg", job.dicom_seg, "DICOM SEG to write (DICOM input only)");
  AddSegTypeFlag(segment, &job);
  segment->add_option("--series", job.series, "SeriesInstanceUID, when the folder holds several series");
  segment->add_option("--roi-subset,--roi_subset", job.roi_subset,
                      "Only these classes, names separated by spaces (TotalSegmentator) or commas: the server runs only the tiles they "
                      "need, the outputs keep only them")
      ->expected(1, -1);
  segment->add_option("--statistics", job.statistics, "statistics.json in TotalSegmentator's format (volume mm3, intensity HU), what "
                                                      "made it in <name>_provenance.json; without a file name: beside the output")
      ->expected(0, 1)->default_str("auto");
  segment->add_flag("--statistics-include-masks-at-border,--stats_include_incomplete", job.include_masks_at_border,
                    "Statistics also for classes within 3 voxels of the volume's border (default, as TotalSegmentator: 0 for them, likely cut off)");
  segment->add_flag("--continue-on-error", job.continue_on_error,
                    "With several CTs, go on after a CT fails; a summary and a non-zero exit at the end if any did");
  segment->add_flag("--skip-existing", job.skip_existing, "Skip a CT whose label map is already there");
  segment->add_option("--preview", job.preview, "PNG preview (axial, coronal, sagittal; legend); without a file name: beside the output")
      ->expected(0, 1)->default_str("auto");
  segment->add_flag("--fast", job.fast, "Use the fastest selectable variant on the server's device (instead of --variant)");
  AddSelectionFlags(segment, &job);

  CLI::App* models = app.add_subcommand("models", "List the server's models, variants, their cost, quality and speed on its device.");

  double wait_seconds = 0;
  std::string readyz_url;
  CLI::App* health = app.add_subcommand("health", "Exit 0 once the server is SERVING.");
  health->add_option("--wait", wait_seconds, "Seconds to wait for SERVING")->check(CLI::NonNegativeNumber)->capture_default_str();
  health->add_option("--readyz", readyz_url, "Ask the server's HTTP /readyz instead of gRPC health, e.g. http://127.0.0.1:9180/readyz "
                                             "(what the container HEALTHCHECK does: it needs no TLS or token)");

  PacsFlags pacs_flags;
  CLI::App* pacs = app.add_subcommand("pacs", "Segment a study's CT series from Orthanc over DICOMweb and store the DICOM SEG back.");
  pacs->add_option("--orthanc", pacs_flags.orthanc, "Orthanc base URL, e.g. http://host:8042")->required();
  pacs->add_option("--study", pacs_flags.study, "StudyInstanceUID")->required();
  pacs->add_option("--dicomweb-root", pacs_flags.dicomweb_root, "DICOMweb path under the base URL")->capture_default_str();
  pacs->add_option("--dicomweb-ca", pacs_flags.http.ca_file, "PEM CA bundle to verify an https PACS with")->envname("TUCKER_SEG_DICOMWEB_CA");
  pacs->add_option("--dicomweb-token", pacs_flags.http.bearer_token, "Bearer token for the PACS (prefer TUCKER_SEG_DICOMWEB_TOKEN)")
      ->envname("TUCKER_SEG_DICOMWEB_TOKEN");
  pacs->add_option("--dicomweb-user", pacs_flags.http.basic_auth, "user:password for HTTP basic authentication (prefer TUCKER_SEG_DICOMWEB_USER)")
      ->envname("TUCKER_SEG_DICOMWEB_USER");
  AddSelectionFlags(pacs, &job);
  AddSegTypeFlag(pacs, &job);

  DicomNodeOptions node;
  node.spool = "tucker-seg-spool";
  CLI::App* dicom_node = app.add_subcommand("dicom-node", "Listen for CT series by DICOM C-STORE, segment each complete series and "
                                                          "send its DICOM SEG to a destination by C-STORE.");
  dicom_node->add_option("--aet", node.aet, "This node's AE title")->capture_default_str();
  dicom_node->add_option("--port", node.port, "DICOM port to listen on")->check(CLI::Range(1, 65535))->capture_default_str();
  dicom_node->add_option("--destination", node.destination, "Where the SEGs go: AET@HOST:PORT (a PACS or a storescp)")
      ->envname("TUCKER_SEG_DICOM_DESTINATION")
      ->required();
  dicom_node->add_option("--spool", node.spool, "Folder for received series and SEGs not yet delivered (kept across restarts)")
      ->envname("TUCKER_SEG_SPOOL")
      ->capture_default_str();
  dicom_node->add_option("--series-timeout", node.series_timeout_seconds, "Seconds without a new instance after which a series is complete")
      ->capture_default_str();
  dicom_node->add_option("--max-associations", node.max_associations, "Associations served at the same time")->capture_default_str();
  dicom_node->add_option("--min-free-disk-mb", node.min_free_disk_mb, "Below this free space in the spool, C-STORE is refused (Out of Resources)")
      ->capture_default_str();
  dicom_node->add_option("--retry", node.retry_seconds, "Seconds before the first retry of a series not segmented or not delivered (doubles)")
      ->capture_default_str();
  AddSelectionFlags(dicom_node, &job);
  AddSegTypeFlag(dicom_node, &job);
  for (CLI::App* command : {segment, models, health, pacs, dicom_node}) {
    command->add_option("--server", connection.server, "Server address host:port")->envname("TUCKER_SEG_SERVER")->capture_default_str();
    command->add_option("--tls-ca", connection.tls_ca, "PEM file of the CA to trust: connect over TLS")->envname("TUCKER_SEG_TLS_CA");
    command->add_flag("--tls", connection.tls, "Connect over TLS, trusting the system's roots");
    command->add_option("--tls-cert", connection.tls_cert, "PEM certificate chain of this client, for a server that requires one (mutual TLS)")
        ->envname("TUCKER_SEG_CLIENT_CERT");  // not TUCKER_SEG_TLS_CERT: that is the server's own
    command->add_option("--tls-key", connection.tls_key, "PEM private key for --tls-cert")->envname("TUCKER_SEG_CLIENT_KEY");
    // No --token on the command line in scripts: it shows in `ps`; the variable does not.
    command->add_option("--token", connection.token, "Bearer token for a server started with --auth-tokens (prefer TUCKER_SEG_TOKEN)")
        ->envname("TUCKER_SEG_TOKEN");
  }

  if (auto exit_code = command_line::Parse(app, args, out, err)) return *exit_code;
  if (segment->parsed() && job.output.empty() && job.dicom_seg.empty()) {
    err << "error: segment needs -o <labels> and/or --dicom-seg <file>\n";
    return command_line::kExitUsage;
  }
  if (multilabel) {
    if (!job.output_type.empty() && job.output_type != "multilabel") {
      err << "error: --ml and --output-type " << job.output_type << " contradict each other\n";
      return command_line::kExitUsage;
    }
    job.output_type = "multilabel";
  }
  if (job.fast && job.options.variant != "auto") {
    err << "error: --fast and --variant " << job.options.variant << " contradict each other\n";
    return command_line::kExitUsage;
  }
  Status status;
  if (segment->parsed()) status = Segment(connection, job);
  if (models->parsed()) status = Models(connection);
  if (health->parsed()) status = Health(connection, wait_seconds, readyz_url);
  if (pacs->parsed()) status = Pacs(connection, pacs_flags, job);
  if (dicom_node->parsed()) status = RunDicomNode(connection, node, job);
  if (status.ok()) return command_line::kExitOk;
  return command_line::Fail(err, status);
}

}  // namespace tucker_seg::client
