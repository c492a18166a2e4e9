#include "client/cli.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/dicom_seg.h"
#include "client/dicomweb.h"
#include "image_io/image_io.h"
#include "client/preview.h"
#include "client/segmentation_client.h"
#include "command_line/command_line.h"

namespace tucker_seg::client {
namespace {

// How to reach the server: flags of every command that talks to it.
struct Connection {
  std::string server = "localhost:50051";
  std::string tls_ca;
  bool tls = false;
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
    switch (p.stage) {
      case SegmentProgress::Stage::kSending: done = p.bytes_to_send ? double(p.bytes_sent) / p.bytes_to_send : 0; break;
      case SegmentProgress::Stage::kHeaderAccepted: stage = "sending"; done = 0; break;
      case SegmentProgress::Stage::kQueued: stage = "queued"; done = 1; break;
      case SegmentProgress::Stage::kRunning: stage = "segmenting"; done = 1; break;
      case SegmentProgress::Stage::kReceiving: stage = "receiving"; done = p.bytes_to_receive ? double(p.bytes_received) / p.bytes_to_receive : 0; break;
      case SegmentProgress::Stage::kDone: stage = "done"; done = 1; break;
    }
    const int filled = static_cast<int>(done * 30);
    std::fprintf(stderr, "\r%-11s [%s%s] %3.0f%% %s   ", stage, std::string(filled, '#').c_str(), std::string(30 - filled, ' ').c_str(),
                 100 * done, p.variant.c_str());
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

// Per-class voxels, volume (ml) and mean HU.
nlohmann::json Statistics(const CtVolume& ct, const LabelMap& labels, const std::vector<std::pair<int64_t, std::string>>& table) {
  std::map<int64_t, std::pair<int64_t, double>> sums;
  for (size_t i = 0; i < labels.voxels.size(); ++i) {
    if (!labels.voxels[i]) continue;
    auto& s = sums[labels.voxels[i]];
    ++s.first;
    s.second += ct.voxels[i];
  }
  const double voxel_ml = ct.geometry.spacing[0] * ct.geometry.spacing[1] * ct.geometry.spacing[2] / 1000.0;
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [id, name] : table) {
    if (id == 0) continue;
    const auto it = sums.find(id);
    const int64_t n = it == sums.end() ? 0 : it->second.first;
    j[name] = {{"id", id}, {"voxels", n}, {"volume_ml", n * voxel_ml}, {"mean_hu", n ? it->second.second / n : 0.0}};
  }
  return j;
}

// Keeps only the named classes (names from the server's label table).
Status ApplyRoiSubset(const std::string& subset, const std::vector<std::pair<int64_t, std::string>>& table, LabelMap* labels) {
  std::set<int64_t> keep;
  std::stringstream names(subset);
  for (std::string name; std::getline(names, name, ',');) {
    bool found = false;
    for (const auto& [id, n] : table)
      if (n == name) keep.insert(id), found = true;
    if (!found) return InvalidArgument("--roi-subset: '" + name + "' is not a class of this model (see `tucker-seg models`)");
  }
  for (auto& v : labels->voxels)
    if (v && !keep.count(v)) v = 0;
  return Status::Ok();
}

struct SegmentJob {
  std::string input, series, output, dicom_seg, statistics, preview, roi_subset;
  SegmentOptions options;
  bool quiet = false;
};

Result<std::unique_ptr<SegmentationClient>> ConnectTo(const Connection& connection) {
  ConnectionOptions c;
  c.target = connection.server;
  const std::string& ca = connection.tls_ca;
  c.tls = connection.tls || !ca.empty();
  if (!ca.empty()) {
    std::ifstream in(ca);
    std::stringstream pem;
    pem << in.rdbuf();
    if (!in || pem.str().find("-----BEGIN") == std::string::npos) return InvalidArgument("--tls-ca '" + ca + "' is not a readable PEM file");
    c.tls_root_certificates = pem.str();
  }
  return SegmentationClient::Connect(c);
}

Status RunSegment(const SegmentationClient& client, const SegmentJob& job) {
  auto input = ReadCtInput(job.input, job.series);
  if (!input.ok()) return input.status();
  if (!job.dicom_seg.empty() && !input.value().dicom) return InvalidArgument("--dicom-seg needs a DICOM series folder as input (-i)");
  ProgressBar bar(!job.quiet && isatty(STDERR_FILENO));
  SegmentOptions options = job.options;
  options.on_progress = [&](const SegmentProgress& p) { bar.Update(p); };
  auto result = client.Segment(input.value().ct, options);
  bar.Finish();
  if (!result.ok()) return result.status();
  SegmentResult& r = result.value();
  if (!job.roi_subset.empty()) TS_RETURN_IF_ERROR(ApplyRoiSubset(job.roi_subset, r.label_table, &r.labels));
  if (!job.output.empty()) TS_RETURN_IF_ERROR(WriteLabelMap(job.output, r.labels));
  if (!job.dicom_seg.empty()) TS_RETURN_IF_ERROR(WriteDicomSeg(job.dicom_seg, r.labels, *input.value().dicom, r.label_table));
  if (!job.statistics.empty()) {
    std::ofstream out(job.statistics);
    out << Statistics(input.value().ct, r.labels, r.label_table).dump(2) << "\n";
    if (!out) return Internal("cannot write '" + job.statistics + "'");
  }
  if (!job.preview.empty()) TS_RETURN_IF_ERROR(WritePreview(job.preview, input.value().ct, r.labels));
  std::printf("%s: model %s, variant %s (%s), %.1f s on %s%s%s\n", job.input.c_str(), r.model.c_str(), r.variant.c_str(),
              r.selection_reason.c_str(), r.timings.total_seconds(), r.device.c_str(), job.output.empty() ? "" : " -> ",
              job.output.c_str());
  return Status::Ok();
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
    std::printf("%s (%d classes) on %s %s\n", m.name().c_str(), m.labels_size() - 1, d.value().device().kind().c_str(),
                d.value().device().name().c_str());
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

Status Health(const Connection& connection, double wait_seconds) {
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
};

Status Pacs(const Connection& connection, const PacsFlags& flags, SegmentJob job) {
  DicomWebClient pacs(flags.orthanc + flags.dicomweb_root);
  const std::string& study = flags.study;
  auto series = pacs.FindSeries(study);
  if (!series.ok()) return series.status();
  const SeriesSummary* ct = nullptr;
  for (const auto& s : series.value())
    if (s.modality == "CT" && (!ct || s.instances > ct->instances)) ct = &s;
  if (!ct) return NotFound("study " + study + " has no CT series in " + flags.orthanc);
  const auto dir = std::filesystem::temp_directory_path() / ("tucker-seg-pacs-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  struct Cleanup {
    std::filesystem::path dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  TS_RETURN_IF_ERROR(pacs.RetrieveSeries(study, ct->series_instance_uid, (dir / "series").string()));
  job.input = (dir / "series").string();
  job.dicom_seg = (dir / "seg.dcm").string();
  auto client = ConnectTo(connection);
  if (!client.ok()) return client.status();
  TS_RETURN_IF_ERROR(RunSegment(*client.value(), job));
  TS_RETURN_IF_ERROR(pacs.Store(job.dicom_seg));
  std::printf("stored the DICOM SEG of series %s in %s\n", ct->series_instance_uid.c_str(), flags.orthanc.c_str());
  return Status::Ok();
}

// The flags `segment` and `pacs` share: which model and variant, how long to wait, how to report.
void AddSelectionFlags(CLI::App* app, SegmentJob* job) {
  app->add_option("--model", job->options.model, "Model name (default: the server's only model)");
  app->add_option("--variant", job->options.variant, "auto, or a variant name (see `tucker-seg models`)")->capture_default_str();
  app->add_option("--min-quality", job->options.min_quality, "auto only: lowest agreement Dice acceptable")->check(CLI::Range(0.0, 1.0));
  app->add_option("--timeout", job->options.timeout_seconds, "Seconds the whole request may take (0: no deadline)")
      ->check(CLI::NonNegativeNumber);
  app->add_flag("--quiet", job->quiet, "No progress bar");
}

}  // namespace

int RunCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"Segments CTs with a tucker-seg server: NIfTI/NRRD/MHA or DICOM in, label maps and DICOM SEG out."};
  command_line::Configure(app, "tucker-seg");
  app.require_subcommand(1);
  Connection connection;

  SegmentJob job;
  job.options.variant = "auto";
  CLI::App* segment = app.add_subcommand("segment", "Segment one CT and write its label map in the CT's own geometry.");
  segment->add_option("-i,--input", job.input, "CT: .nii/.nii.gz/.nrrd/.mha file or DICOM series folder")->required();
  segment->add_option("-o,--output", job.output, "Label map to write (.nii.gz)");
  segment->add_option("--dicom-seg", job.dicom_seg, "DICOM SEG to write (DICOM input only)");
  segment->add_option("--series", job.series, "SeriesInstanceUID, when the folder holds several series");
  segment->add_option("--roi-subset", job.roi_subset, "Keep only these classes, comma-separated names");
  segment->add_option("--statistics", job.statistics, "JSON file of per-class voxels, volume and mean HU");
  segment->add_option("--preview", job.preview, "PNG preview of the middle slices");
  AddSelectionFlags(segment, &job);

  CLI::App* models = app.add_subcommand("models", "List the server's models, variants, their cost, quality and speed on its device.");

  double wait_seconds = 0;
  CLI::App* health = app.add_subcommand("health", "Exit 0 once the server is SERVING.");
  health->add_option("--wait", wait_seconds, "Seconds to wait for SERVING")->check(CLI::NonNegativeNumber)->capture_default_str();

  PacsFlags pacs_flags;
  CLI::App* pacs = app.add_subcommand("pacs", "Segment a study's CT series from Orthanc over DICOMweb and store the DICOM SEG back.");
  pacs->add_option("--orthanc", pacs_flags.orthanc, "Orthanc base URL, e.g. http://host:8042")->required();
  pacs->add_option("--study", pacs_flags.study, "StudyInstanceUID")->required();
  pacs->add_option("--dicomweb-root", pacs_flags.dicomweb_root, "DICOMweb path under the base URL")->capture_default_str();
  AddSelectionFlags(pacs, &job);
  for (CLI::App* command : {segment, models, health, pacs}) {
    command->add_option("--server", connection.server, "Server address host:port")->envname("TUCKER_SEG_SERVER")->capture_default_str();
    command->add_option("--tls-ca", connection.tls_ca, "PEM file of the CA to trust: connect over TLS")->envname("TUCKER_SEG_TLS_CA");
    command->add_flag("--tls", connection.tls, "Connect over TLS, trusting the system's roots");
  }

  if (auto exit_code = command_line::Parse(app, args, out, err)) return *exit_code;
  if (segment->parsed() && job.output.empty() && job.dicom_seg.empty()) {
    err << "error: segment needs -o <labels> and/or --dicom-seg <file>\n";
    return command_line::kExitUsage;
  }
  Status status;
  if (segment->parsed()) status = Segment(connection, job);
  if (models->parsed()) status = Models(connection);
  if (health->parsed()) status = Health(connection, wait_seconds);
  if (pacs->parsed()) status = Pacs(connection, pacs_flags, job);
  if (status.ok()) return command_line::kExitOk;
  return command_line::Fail(err, status);
}

}  // namespace tucker_seg::client
