// A DICOMweb client (libcurl) for the PACS round trip: QIDO-RS to find a study's series, WADO-RS to
// fetch one series' instances, STOW-RS to store a DICOM SEG. Tested against Orthanc's plugin.
#pragma once

#include <string>
#include <vector>

#include "client/http_request.h"
#include "vocabulary/status.h"

namespace tucker_seg {

struct SeriesSummary {
  std::string series_instance_uid;
  std::string modality;
  int64_t instances = 0;
};

class DicomWebClient {
 public:
  // `root`: the DICOMweb root, e.g. http://localhost:8042/dicom-web; `options`: timeout, CA
  // bundle, bearer token or basic authentication.
  explicit DicomWebClient(std::string root, HttpOptions options = {});

  Result<std::vector<SeriesSummary>> FindSeries(const std::string& study_uid) const;
  // Writes every instance of the series as <dir>/<n>.dcm (as stored: no transcoding).
  Status RetrieveSeries(const std::string& study_uid, const std::string& series_uid, const std::string& dir) const;
  Status Store(const std::string& dicom_file) const;

 private:
  std::string root_;
  HttpOptions options_;
};

}  // namespace tucker_seg
