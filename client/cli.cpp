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
#include "client/image_io.h"
#include "client/preview.h"
#include "client/segmentation_client.h"

namespace tucker_seg::client {
namespace {

constexpr char kUsage[] = R"(usage:
  tucker-seg segment -i <ct.nii.gz | .nrrd | .mha | DICOM folder> [-o labels.nii.gz] [--dicom-seg seg.dcm]
                     [--server host:port] [--model NAME] [--variant auto|NAME] [--min-quality Q] [--timeout S]
                     [--series SERIES_UID] [--roi-subset liver,spleen,...] [--statistics stats.json]
                     [--preview preview.png] [--quiet]
  tucker-seg models [--server host:port]
  tucker-seg health [--server host:port] [--wait S]      (exit 0 once the server is SERVING)
  tucker-seg pacs --orthanc http://host:8042 --study STUDY_UID [--dicomweb-root /dicom-web]
                  [--server host:port] [--model NAME] [--variant auto|NAME] [--timeout S]
The server defaults to $TUCKER_SEG_SERVER or localhost:50051. --tls-ca <ca.pem> (or $TUCKER_SEG_TLS_CA)
connects over TLS and trusts that CA; --tls uses the system's roots.
)";

struct Args {
  std::string command;
  std::map<std::string, std::string> values;
  std::set<std::string> flags;
  std::string Get(const std::string& k, const std::string& fallback = "") const {
    const auto it = values.find(k);
    return it == values.end() ? fallback : it->second;
  }
  bool Has(const std::string& k) const { return values.count(k) > 0; }
};

Result<Args> Parse(int argc, char** argv) {
  if (argc < 2) return InvalidArgument("no command");
  Args a;
  a.command = argv[1];
  static const std::set<std::string> kFlags{"--quiet", "--tls"};
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "-i") k = "--input";
    if (k == "-o") k = "--output";
    if (kFlags.count(k)) {
      a.flags.insert(k);
    } else if (k.rfind("--", 0) == 0 && i + 1 < argc) {
      a.values[k.substr(2)] = argv[++i];
    } else {
      return InvalidArgument("unexpected argument '" + k + "'");
    }
  }
  return a;
}

std::string ServerTarget(const Args& a) {
  const char* env = std::getenv("TUCKER_SEG_SERVER");
  return a.Get("server", env && *env ? env : "localhost:50051");
}

Result<double> Number(const Args& a, const std::string& key, double fallback) {
  if (!a.Has(key)) return fallback;
  char* end = nullptr;
  const double v = std::strtod(a.Get(key).c_str(), &end);
  if (*end != '\0' || !std::isfinite(v) || v < 0) return InvalidArgument("--" + key + " must be a non-negative number, got '" + a.Get(key) + "'");
  return v;
}

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
  bool show_progress = false;
};

Result<std::unique_ptr<SegmentationClient>> ConnectTo(const Args& a) {
  ConnectionOptions c;
  c.target = ServerTarget(a);
  const char* env_ca = std::getenv("TUCKER_SEG_TLS_CA");
  const std::string ca = a.Get("tls-ca", env_ca ? env_ca : "");
  c.tls = a.flags.count("--tls") > 0 || !ca.empty();
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
  ProgressBar bar(job.show_progress);
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

Result<SegmentJob> SegmentJobFrom(const Args& a) {
  SegmentJob job;
  job.input = a.Get("input");
  job.output = a.Get("output");
  job.dicom_seg = a.Get("dicom-seg");
  job.series = a.Get("series");
  job.statistics = a.Get("statistics");
  job.preview = a.Get("preview");
  job.roi_subset = a.Get("roi-subset");
  job.options.model = a.Get("model");
  job.options.variant = a.Get("variant", "auto");
  auto q = Number(a, "min-quality", 0);
  if (!q.ok()) return q.status();
  job.options.min_quality = q.value();
  auto t = Number(a, "timeout", 0);
  if (!t.ok()) return t.status();
  job.options.timeout_seconds = t.value();
  job.show_progress = !a.flags.count("--quiet") && isatty(STDERR_FILENO);
  return job;
}

Status Segment(const Args& a) {
  auto job = SegmentJobFrom(a);
  if (!job.ok()) return job.status();
  if (job.value().input.empty()) return InvalidArgument("segment needs -i <image file or DICOM folder>");
  if (job.value().output.empty() && job.value().dicom_seg.empty()) return InvalidArgument("segment needs -o <labels> and/or --dicom-seg <file>");
  auto client = ConnectTo(a);
  if (!client.ok()) return client.status();
  return RunSegment(*client.value(), job.value());
}

Status Models(const Args& a) {
  auto client = ConnectTo(a);
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

Status Health(const Args& a) {
  auto wait = Number(a, "wait", 0);
  if (!wait.ok()) return wait.status();
  auto client = ConnectTo(a);
  if (!client.ok()) return client.status();
  auto serving = client.value()->WaitUntilServing("", wait.value());
  if (!serving.ok()) return serving.status();
  if (!serving.value()) return Unavailable("server " + ServerTarget(a) + " is not SERVING (calibrating, shutting down or unreachable)");
  std::printf("SERVING\n");
  return Status::Ok();
}

// Study in Orthanc -> its CT series over DICOMweb -> segment -> DICOM SEG stored back.
Status Pacs(const Args& a) {
  if (!a.Has("orthanc") || !a.Has("study")) return InvalidArgument("pacs needs --orthanc <url> and --study <StudyInstanceUID>");
  DicomWebClient pacs(a.Get("orthanc") + a.Get("dicomweb-root", "/dicom-web"));
  const std::string study = a.Get("study");
  auto series = pacs.FindSeries(study);
  if (!series.ok()) return series.status();
  const SeriesSummary* ct = nullptr;
  for (const auto& s : series.value())
    if (s.modality == "CT" && (!ct || s.instances > ct->instances)) ct = &s;
  if (!ct) return NotFound("study " + study + " has no CT series in " + a.Get("orthanc"));
  const auto dir = std::filesystem::temp_directory_path() / ("tucker-seg-pacs-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  struct Cleanup {
    std::filesystem::path dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  TS_RETURN_IF_ERROR(pacs.RetrieveSeries(study, ct->series_instance_uid, (dir / "series").string()));
  auto job = SegmentJobFrom(a);
  if (!job.ok()) return job.status();
  job.value().input = (dir / "series").string();
  job.value().dicom_seg = (dir / "seg.dcm").string();
  auto client = ConnectTo(a);
  if (!client.ok()) return client.status();
  TS_RETURN_IF_ERROR(RunSegment(*client.value(), job.value()));
  TS_RETURN_IF_ERROR(pacs.Store(job.value().dicom_seg));
  std::printf("stored the DICOM SEG of series %s in %s\n", ct->series_instance_uid.c_str(), a.Get("orthanc").c_str());
  return Status::Ok();
}

}  // namespace

int RunCli(int argc, char** argv) {
  auto args = Parse(argc, argv);
  if (!args.ok() || args.value().command == "--help" || args.value().command == "-h") {
    if (!args.ok()) std::fprintf(stderr, "error: %s\n", args.status().message().c_str());
    std::fputs(kUsage, args.ok() ? stdout : stderr);
    return args.ok() ? 0 : 2;
  }
  const auto& a = args.value();
  Status status;
  if (a.command == "segment") status = Segment(a);
  else if (a.command == "models") status = Models(a);
  else if (a.command == "pacs") status = Pacs(a);
  else if (a.command == "health") status = Health(a);
  else {
    std::fprintf(stderr, "error: unknown command '%s'\n%s", a.command.c_str(), kUsage);
    return 2;
  }
  if (status.ok()) return 0;
  std::fprintf(stderr, "error: %s\n", status.message().c_str());
  return status.code() == StatusCode::kInvalidArgument && status.message().find("needs") != std::string::npos ? 2 : 1;
}

}  // namespace tucker_seg::client
