#include "client/http_request.h"

#include <curl/curl.h>

#include <mutex>

namespace tucker_seg {
namespace {

constexpr size_t kMaxResponseBytes = size_t{4} << 30;  // a whole CT series fits; a runaway server does not

size_t Append(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  if (body->size() + size * n > kMaxResponseBytes) return 0;  // aborts the transfer
  body->append(data, size * n);
  return size * n;
}

}  // namespace

std::string UrlServer(const std::string& url) {
  const size_t scheme = url.find("://");
  const size_t host = scheme == std::string::npos ? 0 : scheme + 3;
  std::string server = url.substr(0, url.find('/', host));
  const size_t at = server.find('@', host);  // credentials in the URL stay out of messages
  if (at != std::string::npos) server = server.substr(0, host) + server.substr(at + 1);
  return server;
}

Result<HttpResponse> HttpRequest(const std::string& what, const std::string& url, const std::vector<std::string>& headers,
                                 const std::string* post_body, const HttpOptions& options) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* curl = curl_easy_init();
  if (!curl) return Internal(what + ": cannot create a curl handle");
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  if (!options.bearer_token.empty()) list = curl_slist_append(list, ("Authorization: Bearer " + options.bearer_token).c_str());
  HttpResponse r;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, static_cast<long>(options.timeout_seconds));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (!options.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options.ca_file.c_str());
  if (!options.basic_auth.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERPWD, options.basic_auth.c_str());
  }
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
  const std::string server = UrlServer(url);
  if (code != CURLE_OK) return Unavailable(what + ": " + server + ": " + curl_easy_strerror(code));
  if (r.status < 200 || r.status >= 300) {
    const StatusCode status = r.status == 404                     ? StatusCode::kNotFound
                              : r.status == 401 || r.status == 403 ? StatusCode::kUnauthenticated
                                                                   : StatusCode::kFailedPrecondition;
    return Status(status, what + ": " + server + " answered HTTP " + std::to_string(r.status));
  }
  return r;
}

}  // namespace tucker_seg
