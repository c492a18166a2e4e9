// `tucker-seg dicom-node`: the DICOM node a PACS or a modality sends studies to. A C-ECHO and
// C-STORE SCP (DCMTK) spools CT instances per series; a series is complete after a quiet time
// without new instances; each complete series is segmented (through the server, by the caller's
// function) and its DICOM SEG sent to a destination by C-STORE, with retries. The spool survives
// a restart: what was not delivered is picked up again.
//
// Spool layout (one folder, private to the node):
//   incoming/<series key>/<instance key>.dcm   instances of series still arriving (written to tmp/, then renamed)
//   ready/<series key>-<n>/                    complete series, waiting to be segmented and sent
//   ready/<series key>-<n>.seg.dcm             its DICOM SEG once segmented
//   failed/<series key>-<n>/                   series the server refused for good (kept for an operator)
// Keys are hashes of the UIDs: no UID and no patient data in file names or log lines.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "vocabulary/status.h"

namespace tucker_seg::client {

struct DicomNodeOptions {
  std::string aet = "TUCKERSEG";
  uint16_t port = 11112;
  std::string spool;
  double series_timeout_seconds = 5;
  int max_associations = 4;
  int64_t min_free_disk_mb = 1024;  // below it, C-STORE is answered with Out of Resources (0xA700)
  // Where the SEGs go: AET@HOST:PORT.
  std::string destination;
  // Delay before the first retry of a series that could not be segmented or sent; doubles per
  // failure up to max_retry_seconds.
  double retry_seconds = 5;
  double max_retry_seconds = 300;
};

// What the node counted since it started.
struct DicomNodeCounts {
  int64_t instances_received = 0, instances_ignored = 0, instances_refused = 0;
  int64_t series_complete = 0, series_segmented = 0, series_sent = 0, series_failed = 0, attempts_failed = 0;
};

// Segments the CT series in `series_folder` and writes its DICOM SEG to `seg_path`. A status of
// UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED or INTERNAL is retried later;
// any other failure moves the series to failed/.
using SegmentSeriesFunction = std::function<Status(const std::string& series_folder, const std::string& seg_path)>;

class DicomNode {
 public:
  // Validates the options, recovers the spool and starts listening. One node per process.
  static Result<std::unique_ptr<DicomNode>> Start(const DicomNodeOptions& options, SegmentSeriesFunction segment);
  ~DicomNode();  // Stop()
  DicomNode(const DicomNode&) = delete;
  DicomNode& operator=(const DicomNode&) = delete;

  // Stops accepting associations (after the current ones) and stops the series worker; waits for both.
  void Stop();
  DicomNodeCounts counts() const;

  class Impl;

 private:
  explicit DicomNode(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "AET@HOST:PORT" -> its parts; the error names --destination.
struct DicomAddress {
  std::string aet, host;
  uint16_t port = 0;
};
Result<DicomAddress> ParseDicomAddress(const std::string& text);

}  // namespace tucker_seg::client
