#include "client/dicomweb.h"

#include <cstdlib>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace tucker_seg {
namespace {

std::string Value(const nlohmann::json& item, const char* tag) {
  if (!item.contains(tag) || !item[tag].contains("Value") || item[tag]["Value"].empty()) return "";
  const auto& v = item[tag]["Value"][0];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

}  // namespace

DicomWebClient::DicomWebClient(std::string root, HttpOptions options) : root_(std::move(root)), options_(std::move(options)) {
  while (!root_.empty() && root_.back() == '/') root_.pop_back();
}

Result<std::vector<SeriesSummary>> DicomWebClient::FindSeries(const std::string& study_uid) const {
  auto r = HttpRequest("DICOMweb", root_ + "/studies/" + study_uid + "/series", {"Accept: application/dicom+json"}, nullptr, options_);
  if (!r.ok()) return r.status();
  const auto j = nlohmann::json::parse(r.value().body, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return DataLoss("DICOMweb: the series query did not answer a JSON array");
  std::vector<SeriesSummary> series;
  for (const auto& item : j) {
    if (!item.is_object()) return DataLoss("DICOMweb: the series query answered an array of something other than DICOM JSON objects");
    SeriesSummary s;
    s.series_instance_uid = Value(item, "0020000E");
    s.modality = Value(item, "00080060");
    const std::string n = Value(item, "00201209");
    char* end = nullptr;
    s.instances = n.empty() ? 0 : std::strtoll(n.c_str(), &end, 10);
    if (!n.empty() && *end != '\0') return DataLoss("DICOMweb: NumberOfSeriesRelatedInstances (0020,1209) is not a number");
    series.push_back(s);
  }
  return series;
}

Status DicomWebClient::RetrieveSeries(const std::string& study_uid, const std::string& series_uid, const std::string& dir) const {
  auto r = HttpRequest("DICOMweb", root_ + "/studies/" + study_uid + "/series/" + series_uid,
                       {"Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=*"}, nullptr, options_);
  if (!r.ok()) return r.status();
  const auto& type = r.value().content_type;
  const auto b = type.find("boundary=");
  if (b == std::string::npos) return DataLoss("DICOMweb: the series answer is not multipart (Content-Type: " + type + ")");
  std::string boundary = type.substr(b + 9);
  boundary = boundary.substr(0, boundary.find(';'));
  if (!boundary.empty() && boundary.front() == '"') boundary = boundary.substr(1, boundary.size() - 2);
  const std::string delimiter = "--" + boundary;
  const std::string& body = r.value().body;
  std::filesystem::create_directories(dir);
  int parts = 0;
  for (size_t pos = body.find(delimiter); pos != std::string::npos;) {
    const size_t headers_start = pos + delimiter.size();
    if (body.compare(headers_start, 2, "--") == 0) break;  // closing delimiter
    const size_t content_start = body.find("\r\n\r\n", headers_start);
    const size_t next = content_start == std::string::npos ? std::string::npos : body.find("\r\n" + delimiter, content_start + 4);
    if (next == std::string::npos) return DataLoss("DICOMweb: a multipart part is not terminated");
    std::ofstream(std::filesystem::path(dir) / (std::to_string(parts++) + ".dcm"), std::ios::binary)
        .write(body.data() + content_start + 4, static_cast<std::streamsize>(next - content_start - 4));
    pos = next + 2;
  }
  if (parts == 0) return NotFound("DICOMweb: the CT series has no instances");
  return Status::Ok();
}

Status DicomWebClient::Store(const std::string& dicom_file) const {
  std::ifstream in(dicom_file, std::ios::binary);
  if (!in) return NotFound("cannot read '" + dicom_file + "'");
  std::ostringstream content;
  content << in.rdbuf();
  const std::string boundary = "tucker-seg-7d1c9b";
  const std::string body = "--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n" + content.str() + "\r\n--" + boundary + "--\r\n";
  auto r = HttpRequest("DICOMweb", root_ + "/studies",
                       {"Content-Type: multipart/related; type=\"application/dicom\"; boundary=" + boundary, "Accept: application/dicom+json"},
                       &body, options_);
  return r.ok() ? Status::Ok() : r.status();
}

}  // namespace tucker_seg
