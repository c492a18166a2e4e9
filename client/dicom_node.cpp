#include "client/dicom_node.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <dcmtk/config/osconfig.h>  // first among DCMTK's headers
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/oflog/oflog.h>
#include <dcmtk/dcmnet/scppool.h>
#include <dcmtk/dcmnet/scpthrd.h>
#include <dcmtk/dcmnet/scu.h>

#include "vocabulary/log.h"

namespace tucker_seg::client {
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

namespace {

// What the node accepts: common storage SOP classes in every transfer syntax the client's reader
// (ITK with GDCM) decodes, so that a sender never has to transcode. The order is the node's
// preference where a sender offers several in one context: a sender that offers a compressed
// syntax holds its images that way (a sender without a JPEG 2000 codec cannot decode them to
// send them uncompressed), so the compressed syntaxes come first.
const char* const kAcceptedTransferSyntaxes[] = {
    UID_JPEG2000LosslessOnlyTransferSyntax, UID_JPEGProcess14SV1TransferSyntax, UID_JPEGProcess14TransferSyntax,
    UID_JPEGLSLosslessTransferSyntax,       UID_RLELosslessTransferSyntax,      UID_JPEG2000TransferSyntax,
    UID_JPEGLSLossyTransferSyntax,          UID_JPEGProcess1TransferSyntax,     UID_JPEGProcess2_4TransferSyntax,
    UID_DeflatedExplicitVRLittleEndianTransferSyntax, UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};

// A UID's key in file and log names: FNV-1a, 64 bits, as 16 hex digits.
std::string Key(const std::string& uid) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : uid) h = (h ^ c) * 1099511628211ull;
  char text[17];
  std::snprintf(text, sizeof text, "%016" PRIx64, h);
  return text;
}

std::string Short(std::string text) {  // a peer's free text in a log line
  if (text.size() > 16) text.resize(16);
  return text;
}

Status CheckPortFree(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Internal(std::string("dicom-node: socket: ") + std::strerror(errno));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  const bool bound = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  const int error = errno;
  close(fd);
  if (!bound) return FailedPrecondition("--port " + std::to_string(port) + ": " + std::strerror(error));
  return Status::Ok();
}

// An AE title: 1 to 16 characters (DICOM's AE value representation).
bool ValidAeTitle(const std::string& aet) { return !aet.empty() && aet.size() <= 16; }

bool Retryable(const Status& status) {
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kUnimplemented:
    case StatusCode::kDataLoss:
      return false;
    default:
      return true;
  }
}

}  // namespace

Result<DicomAddress> ParseDicomAddress(const std::string& text) {
  const size_t at = text.find('@'), colon = text.rfind(':');
  DicomAddress a;
  if (at == std::string::npos || colon == std::string::npos || colon < at) {
    return InvalidArgument("--destination must be AET@HOST:PORT, got '" + text.substr(0, 64) + "'");
  }
  a.aet = text.substr(0, at);
  a.host = text.substr(at + 1, colon - at - 1);
  const std::string port = text.substr(colon + 1);
  if (!ValidAeTitle(a.aet)) return InvalidArgument("--destination: the AE title must have 1 to 16 characters");
  if (a.host.empty()) return InvalidArgument("--destination: no host in '" + text.substr(0, 64) + "'");
  const int number = !port.empty() && port.size() <= 5 && std::all_of(port.begin(), port.end(), ::isdigit) ? std::stoi(port) : 0;
  if (number < 1 || number > 65535) return InvalidArgument("--destination: the port must be 1 to 65535, got '" + port.substr(0, 16) + "'");
  a.port = static_cast<uint16_t>(number);
  return a;
}

class DicomNode::Impl {
 public:
  Impl(DicomNodeOptions options, DicomAddress destination, SegmentSeriesFunction segment)
      : options_(std::move(options)),
        destination_(std::move(destination)),
        segment_(std::move(segment)),
        spool_(options_.spool),
        quiet_(std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(options_.series_timeout_seconds))) {}

  Status Recover();
  Status Listen();
  void StartWorker() { worker_ = std::thread([this] { Work(); }); }
  void Stop();
  DicomNodeCounts counts() const {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_;
  }
  // One received C-STORE data set: its DIMSE status.
  Uint16 Store(DcmDataset& dataset);

 private:
  // A complete series in ready/.
  struct Ready {
    std::string name;  // <series key>-<n>
    int failures = 0;
    SteadyClock::time_point next_attempt;
  };
  void Work();
  void CompleteQuietSeries();
  void Process(Ready& series);
  Status Send(const std::string& seg_path) const;
  std::string NextReadyName(const std::string& key);

  const DicomNodeOptions options_;
  const DicomAddress destination_;
  const SegmentSeriesFunction segment_;
  const fs::path spool_;
  const SteadyClock::duration quiet_;  // --series-timeout: without a new instance this long, a series is complete

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::map<std::string, SteadyClock::time_point> arriving_;  // series key -> its last instance
  std::vector<Ready> ready_;
  int64_t ready_counter_ = 0;
  DicomNodeCounts counts_;

  std::thread listener_, worker_;
  std::unique_ptr<DcmBaseSCPPool> pool_;
};

namespace {

// The C-STORE SCP worker: DcmSCPPool constructs its workers itself, so they find the node here.
std::atomic<DicomNode::Impl*> g_node{nullptr};

class StoreScp : public DcmThreadSCP {
 protected:
  OFCondition handleIncomingCommand(T_DIMSE_Message* message, const DcmPresentationContextInfo& context) override {
    if (message->CommandField != DIMSE_C_STORE_RQ) return DcmThreadSCP::handleIncomingCommand(message, context);  // C-ECHO and refusals
    T_DIMSE_C_StoreRQ& request = message->msg.CStoreRQ;
    DcmDataset* dataset = nullptr;
    OFCondition received = receiveSTORERequest(request, context.presentationContextID, dataset);
    std::unique_ptr<DcmDataset> owned(dataset);
    if (received.bad()) return received;
    DicomNode::Impl* node = g_node.load();
    const Uint16 status = node ? node->Store(*owned) : Uint16(STATUS_STORE_Refused_OutOfResources);
    return sendSTOREResponse(context.presentationContextID, request, status);
  }
};

}  // namespace

Uint16 DicomNode::Impl::Store(DcmDataset& dataset) {
  OFString modality, series_uid, sop_uid;
  dataset.findAndGetOFString(DCM_Modality, modality);
  dataset.findAndGetOFString(DCM_SeriesInstanceUID, series_uid);
  dataset.findAndGetOFString(DCM_SOPInstanceUID, sop_uid);
  if (modality != "CT") {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++counts_.instances_ignored;
    }
    Log("dicom-node: ignored an instance of modality '%s' (only CT series are segmented)", Short(modality.c_str()).c_str());
    return STATUS_Success;
  }
  if (series_uid.empty() || sop_uid.empty()) {
    Log(LogLevel::kWarning, "dicom-node: refused a CT instance without SeriesInstanceUID or SOPInstanceUID");
    return STATUS_STORE_Error_DataSetDoesNotMatchSOPClass;
  }
  std::error_code error;
  const auto space = fs::space(spool_, error);
  const long long free_mb = error ? -1 : static_cast<long long>(space.available / (1024 * 1024));
  if (free_mb < options_.min_free_disk_mb) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++counts_.instances_refused;
    }
    Log(LogLevel::kWarning, "dicom-node: refused an instance: %lld MiB free in the spool, --min-free-disk-mb is %lld", free_mb,
        static_cast<long long>(options_.min_free_disk_mb));
    return STATUS_STORE_Refused_OutOfResources;
  }
  const std::string series = Key(series_uid.c_str()), instance = Key(sop_uid.c_str());
  // Written under tmp/ and renamed into its series folder: a series never holds half a file.
  const fs::path partial = spool_ / "tmp" / (series + "-" + instance + "-" + std::to_string(std::hash<std::thread::id>()(std::this_thread::get_id())) + ".part");
  DcmFileFormat file(&dataset);
  const OFCondition saved = file.saveFile(partial.c_str(), dataset.getOriginalXfer());
  if (saved.bad()) {
    fs::remove(partial, error);
    Log(LogLevel::kError, "dicom-node: cannot write an instance of series %s to the spool: %s", series.c_str(), saved.text());
    return STATUS_STORE_Refused_OutOfResources;
  }
  std::lock_guard<std::mutex> lock(mu_);
  fs::create_directories(spool_ / "incoming" / series, error);
  fs::rename(partial, spool_ / "incoming" / series / (instance + ".dcm"), error);
  if (error) {
    Log(LogLevel::kError, "dicom-node: cannot move an instance of series %s into the spool: %s", series.c_str(), error.message().c_str());
    return STATUS_STORE_Refused_OutOfResources;
  }
  if (!arriving_.count(series)) Log("dicom-node: series %s: receiving", series.c_str());
  arriving_[series] = SteadyClock::now();
  ++counts_.instances_received;
  wake_.notify_all();
  return STATUS_Success;
}

std::string DicomNode::Impl::NextReadyName(const std::string& key) {
  std::string name;
  do name = key + "-" + std::to_string(++ready_counter_);
  while (fs::exists(spool_ / "ready" / name) || fs::exists(spool_ / "failed" / name));
  return name;
}

Status DicomNode::Impl::Recover() {
  std::error_code error;
  for (const char* folder : {"tmp", "incoming", "ready", "failed"}) {
    fs::create_directories(spool_ / folder, error);
    if (error) return FailedPrecondition("--spool: cannot create " + (spool_ / folder).string() + ": " + error.message());
  }
  fs::permissions(spool_, fs::perms::owner_all, fs::perm_options::replace, error);  // patient data: this user only
  for (const auto& entry : fs::directory_iterator(spool_ / "tmp")) fs::remove(entry.path(), error);
  // Series that were arriving when the node stopped are complete: their senders have long gone.
  std::vector<fs::path> arriving;
  for (const auto& entry : fs::directory_iterator(spool_ / "incoming")) arriving.push_back(entry.path());
  for (const auto& path : arriving) {
    fs::rename(path, spool_ / "ready" / NextReadyName(path.filename().string()), error);
    if (error) return FailedPrecondition("--spool: cannot move " + path.string() + " to ready/: " + error.message());
  }
  for (const auto& entry : fs::directory_iterator(spool_ / "ready")) {
    if (entry.is_directory()) ready_.push_back({entry.path().filename().string(), 0, SteadyClock::now()});
  }
  std::sort(ready_.begin(), ready_.end(), [](const Ready& a, const Ready& b) { return a.name < b.name; });
  if (!ready_.empty()) Log("dicom-node: %zu series in the spool from before, to segment and send", ready_.size());
  return Status::Ok();
}

Status DicomNode::Impl::Listen() {
  auto pool = std::make_unique<DcmSCPPool<StoreScp>>();
  DcmSCPConfig& config = pool->getConfig();
  config.setAETitle(options_.aet.c_str());
  config.setPort(options_.port);
  config.setHostLookupEnabled(OFFalse);
  config.setConnectionBlockingMode(DUL_NOBLOCK);  // listen() looks up from accept() each second, to stop
  config.setConnectionTimeout(1);
  config.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
  config.setDIMSETimeout(60);
  config.setACSETimeout(30);
  OFList<OFString> syntaxes;
  for (const char* uid : kAcceptedTransferSyntaxes) syntaxes.push_back(uid);
  OFList<OFString> uncompressed;
  uncompressed.push_back(UID_LittleEndianExplicitTransferSyntax);
  uncompressed.push_back(UID_LittleEndianImplicitTransferSyntax);
  OFCondition added = config.addPresentationContext(UID_VerificationSOPClass, uncompressed);
  // DCMTK's list of the storage SOP classes a sender may propose at most (association negotiation
  // takes 128 contexts); CT Image Storage is among them. Other modalities are accepted and ignored.
  for (int i = 0; added.good() && i < numberOfDcmLongSCUStorageSOPClassUIDs; ++i) {
    added = config.addPresentationContext(dcmLongSCUStorageSOPClassUIDs[i], syntaxes);
  }
  if (added.bad()) return Internal(std::string("dicom-node: presentation contexts: ") + added.text());
  pool->setMaxThreads(static_cast<Uint16>(options_.max_associations));
  // listen() opens the port inside its thread and reports a failure only by returning: the port
  // is tried here first, so that a port in use is the caller's error.
  TS_RETURN_IF_ERROR(CheckPortFree(options_.port));
  pool_ = std::move(pool);
  listener_ = std::thread([this] {
    const OFCondition result = pool_->listen();
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping = stopping_;
    }
    if (result.bad() && !stopping) Log(LogLevel::kError, "dicom-node: stopped listening on port %u: %s", unsigned(options_.port), result.text());
  });
  Log("dicom-node: AE title %s listening on port %u (C-ECHO, C-STORE; at most %d associations); SEGs go to %s@%s:%u",
      options_.aet.c_str(), unsigned(options_.port), options_.max_associations, destination_.aet.c_str(), destination_.host.c_str(),
      unsigned(destination_.port));
  return Status::Ok();
}

void DicomNode::Impl::CompleteQuietSeries() {  // under mu_
  const auto now = SteadyClock::now();
  for (auto it = arriving_.begin(); it != arriving_.end();) {
    if (now - it->second < quiet_) {
      ++it;
      continue;
    }
    const std::string name = NextReadyName(it->first);
    std::error_code error;
    fs::rename(spool_ / "incoming" / it->first, spool_ / "ready" / name, error);
    if (error) {
      Log(LogLevel::kError, "dicom-node: series %s: cannot move it to ready/: %s", it->first.c_str(), error.message().c_str());
    } else {
      size_t instances = 0;
      for (const auto& entry : fs::directory_iterator(spool_ / "ready" / name)) instances += entry.is_regular_file();
      Log("dicom-node: series %s complete: %zu instances, %.0f s without a new one", name.c_str(), instances, options_.series_timeout_seconds);
      ready_.push_back({name, 0, now});
      ++counts_.series_complete;
    }
    it = arriving_.erase(it);
  }
}

void DicomNode::Impl::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    CompleteQuietSeries();
    const auto now = SteadyClock::now();
    auto due = std::find_if(ready_.begin(), ready_.end(), [&](const Ready& r) { return r.next_attempt <= now; });
    if (due != ready_.end()) {
      Ready series = *due;
      ready_.erase(due);
      lock.unlock();
      Process(series);
      lock.lock();
      if (series.failures > 0) ready_.push_back(series);  // not delivered: retried at its time
      continue;
    }
    // Sleep until the next series falls quiet, the next retry is due, a new instance, or Stop().
    auto wake_at = now + std::chrono::seconds(60);
    for (const auto& [key, last] : arriving_) wake_at = std::min(wake_at, last + quiet_);
    for (const auto& r : ready_) wake_at = std::min(wake_at, r.next_attempt);
    wake_.wait_until(lock, wake_at);
  }
}

void DicomNode::Impl::Process(Ready& series) {
  const fs::path folder = spool_ / "ready" / series.name, seg = spool_ / "ready" / (series.name + ".seg.dcm");
  auto fail = [&](const std::string& what, const Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_.attempts_failed;
    if (!Retryable(status)) {
      std::error_code error;
      fs::rename(folder, spool_ / "failed" / series.name, error);
      fs::remove(seg, error);
      ++counts_.series_failed;
      series.failures = 0;
      Log(LogLevel::kError, "dicom-node: series %s: %s failed for good, moved to failed/: %s", series.name.c_str(), what.c_str(),
          status.message().c_str());
      return;
    }
    ++series.failures;
    const double delay = std::min(options_.max_retry_seconds, options_.retry_seconds * std::pow(2.0, series.failures - 1));
    series.next_attempt = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(delay));
    Log(LogLevel::kWarning, "dicom-node: series %s: %s failed (attempt %d), retrying in %.0f s: %s", series.name.c_str(), what.c_str(),
        series.failures, delay, status.message().c_str());
  };
  if (!fs::exists(seg)) {
    const auto start = SteadyClock::now();
    const Status segmented = segment_(folder.string(), seg.string());
    if (!segmented.ok()) return fail("segmentation", segmented);
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_.series_segmented;
    Log("dicom-node: series %s segmented in %.1f s", series.name.c_str(), std::chrono::duration<double>(SteadyClock::now() - start).count());
  }
  const Status sent = Send(seg.string());
  if (!sent.ok()) return fail("sending the SEG to " + destination_.aet, sent);
  std::error_code error;
  fs::remove_all(folder, error);
  fs::remove(seg, error);
  std::lock_guard<std::mutex> lock(mu_);
  series.failures = 0;
  ++counts_.series_sent;
  Log("dicom-node: series %s: SEG accepted by %s", series.name.c_str(), destination_.aet.c_str());
}

Status DicomNode::Impl::Send(const std::string& seg_path) const {
  DcmFileFormat file;
  if (file.loadFile(seg_path.c_str()).bad()) return Internal("cannot read the SEG in the spool");
  OFString sop_class;
  file.getMetaInfo()->findAndGetOFString(DCM_MediaStorageSOPClassUID, sop_class);
  const char* own_syntax = DcmXfer(file.getDataset()->getOriginalXfer()).getXferID();
  DcmSCU scu;
  scu.setAETitle(options_.aet.c_str());
  scu.setPeerAETitle(destination_.aet.c_str());
  scu.setPeerHostName(destination_.host.c_str());
  scu.setPeerPort(destination_.port);
  scu.setACSETimeout(30);
  scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
  scu.setDIMSETimeout(120);
  // The SEG's own syntax (deflated), and explicit VR little endian for a destination without deflate.
  OFList<OFString> own, explicit_le;
  own.push_back(own_syntax);
  explicit_le.push_back(UID_LittleEndianExplicitTransferSyntax);
  if (std::string(own_syntax) != UID_LittleEndianExplicitTransferSyntax) scu.addPresentationContext(sop_class, own);
  scu.addPresentationContext(sop_class, explicit_le);
  OFCondition c = scu.initNetwork();
  if (c.good()) c = scu.negotiateAssociation();
  if (c.bad()) return Unavailable(std::string("association with ") + destination_.aet + ": " + c.text());
  T_ASC_PresentationContextID context = scu.findPresentationContextID(sop_class, own_syntax);
  if (context == 0) context = scu.findPresentationContextID(sop_class, UID_LittleEndianExplicitTransferSyntax);
  if (context == 0) {
    scu.releaseAssociation();
    return Unavailable(destination_.aet + " accepts no Segmentation Storage context");
  }
  Uint16 response = 0;
  c = scu.sendSTORERequest(context, OFFilename(seg_path.c_str()), nullptr, response);
  scu.releaseAssociation();
  if (c.bad()) return Unavailable(std::string("C-STORE to ") + destination_.aet + ": " + c.text());
  if (response != STATUS_Success && (response & 0xf000) != 0xb000) {  // Bxxx: warnings, stored
    char code[8];
    std::snprintf(code, sizeof code, "%04x", response);
    return Unavailable(destination_.aet + " answered C-STORE with status 0x" + code);
  }
  return Status::Ok();
}

void DicomNode::Impl::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    wake_.notify_all();
  }
  if (pool_) pool_->stopAfterCurrentAssociations();
  if (listener_.joinable()) listener_.join();
  if (worker_.joinable()) worker_.join();
  g_node.store(nullptr);
}

Result<std::unique_ptr<DicomNode>> DicomNode::Start(const DicomNodeOptions& options, SegmentSeriesFunction segment) {
  if (!ValidAeTitle(options.aet)) return InvalidArgument("--aet must have 1 to 16 characters");
  if (options.spool.empty()) return InvalidArgument("--spool: a folder is needed");
  if (!(options.series_timeout_seconds > 0 && options.series_timeout_seconds <= 3600)) {
    return InvalidArgument("--series-timeout must be in (0, 3600] seconds");
  }
  if (options.max_associations < 1 || options.max_associations > 64) return InvalidArgument("--max-associations must be 1 to 64");
  if (options.min_free_disk_mb < 0) return InvalidArgument("--min-free-disk-mb must not be negative");
  TS_ASSIGN_OR_RETURN(DicomAddress destination, ParseDicomAddress(options.destination));
  OFLog::configure(OFLogger::WARN_LOG_LEVEL);  // DCMTK's per-association lines would drown the node's own
  auto impl = std::make_unique<Impl>(options, destination, std::move(segment));
  Impl* expected = nullptr;
  if (!g_node.compare_exchange_strong(expected, impl.get())) return FailedPrecondition("dicom-node: one node per process");
  Status status = impl->Recover();
  if (status.ok()) status = impl->Listen();
  if (!status.ok()) {
    impl->Stop();
    return status;
  }
  impl->StartWorker();
  return std::unique_ptr<DicomNode>(new DicomNode(std::move(impl)));
}

DicomNode::DicomNode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DicomNode::~DicomNode() { Stop(); }
void DicomNode::Stop() { impl_->Stop(); }
DicomNodeCounts DicomNode::counts() const { return impl_->counts(); }

}  // namespace tucker_seg::client
