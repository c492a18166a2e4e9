#include "client/dicomweb.h"

#include <curl/curl.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

namespace tucker_seg {
namespace {

constexpr size_t kMaxResponseBytes = size_t{4} << 30;  // a whole CT series fits; a runaway server does not

struct Response {
  long status = 0;
  std::string content_type;
  std::string body;
};

size_t Append(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  if (body->size() + size * n > kMaxResponseBytes) return 0;  // aborts the transfer
  body->append(data, size * n);
  return size * n;
}

Result<Response> Request(const std::string& url, const std::vector<std::string>& headers, const std::string* post_body, double timeout) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* curl = curl_easy_init();
  if (!curl) return Internal("DICOMweb: cannot create a curl handle");
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  Response r;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, static_cast<long>(timeout));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (post_body) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post_body->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(post_body->size()));
  }
  const CURLcode code = curl_easy_perform(curl);
  char* type = nullptr;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &type);
  if (type) r.content_type = type;
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  if (code != CURLE_OK) return Unavailable("DICOMweb: " + url + ": " + curl_easy_strerror(code));
  if (r.status < 200 || r.status >= 300) {
    return Status(r.status == 404 ? StatusCode::kNotFound : StatusCode::kFailedPrecondition,
                  "DICOMweb: " + url + " answered HTTP " + std::to_string(r.status) + ": " + r.body.substr(0, 200));
  }
  return r;
}

std::string Value(const nlohmann::json& item, const char* tag) {
  if (!item.contains(tag) || !item[tag].contains("Value") || item[tag]["Value"].empty()) return "";
  const auto& v = item[tag]["Value"][0];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

}  // namespace

DicomWebClient::DicomWebClient(std::string root, double timeout_seconds) : root_(std::move(root)), timeout_seconds_(timeout_seconds) {
  while (!root_.empty() && root_.back() == '/') root_.pop_back();
}

Result<std::vector<SeriesSummary>> DicomWebClient::FindSeries(const std::string& study_uid) const {
  auto r = Request(root_ + "/studies/" + study_uid + "/series", {"Accept: application/dicom+json"}, nullptr, timeout_seconds_);
  if (!r.ok()) return r.status();
  const auto j = nlohmann::json::parse(r.value().body, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return DataLoss("DICOMweb: the series query did not answer a JSON array");
  std::vector<SeriesSummary> series;
  for (const auto& item : j) {
    SeriesSummary s;
    s.series_instance_uid = Value(item, "0020000E");
    s.modality = Value(item, "00080060");
    const std::string n = Value(item, "00201209");
    s.instances = n.empty() ? 0 : std::stoll(n);
    series.push_back(s);
  }
  return series;
}

Status DicomWebClient::RetrieveSeries(const std::string& study_uid, const std::string& series_uid, const std::string& dir) const {
  auto r = Request(root_ + "/studies/" + study_uid + "/series/" + series_uid,
                   {"Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=*"}, nullptr, timeout_seconds_);
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
  if (parts == 0) return NotFound("DICOMweb: series " + series_uid + " has no instances");
  return Status::Ok();
}

Status DicomWebClient::Store(const std::string& dicom_file) const {
  std::ifstream in(dicom_file, std::ios::binary);
  if (!in) return NotFound("cannot read '" + dicom_file + "'");
  std::ostringstream content;
  content << in.rdbuf();
  const std::string boundary = "tucker-seg-7d1c9b";
  const std::string body = "--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n" + content.str() + "\r\n--" + boundary + "--\r\n";
  auto r = Request(root_ + "/studies",
                   {"Content-Type: multipart/related; type=\"application/dicom\"; boundary=" + boundary, "Accept: application/dicom+json"},
                   &body, timeout_seconds_);
  return r.ok() ? Status::Ok() : r.status();
}

}  // namespace tucker_seg
