// One HTTP(S) request with libcurl, for DICOMweb and the readiness probe. Messages name the
// server (scheme, host, port) and the HTTP status, never the path or the body: DICOMweb paths
// carry study and series UIDs, and bodies may carry patient data.
#pragma once

#include <string>
#include <vector>

#include "vocabulary/status.h"

namespace tucker_seg {

struct HttpOptions {
  double timeout_seconds = 300;
  std::string ca_file;       // PEM bundle to verify an https server with; empty: the system's roots
  std::string bearer_token;  // "Authorization: Bearer <token>"
  std::string basic_auth;    // "user:password" for HTTP basic authentication
};

struct HttpResponse {
  long status = 0;
  std::string content_type;
  std::string body;
};

// `what` starts every message ("DICOMweb", "readiness probe"). Any status outside 2xx is an
// error (NOT_FOUND for 404, UNAUTHENTICATED for 401/403, FAILED_PRECONDITION otherwise).
Result<HttpResponse> HttpRequest(const std::string& what, const std::string& url, const std::vector<std::string>& headers,
                                 const std::string* post_body, const HttpOptions& options);

// "https://host:8042/dicom-web/studies/1.2.3" -> "https://host:8042".
std::string UrlServer(const std::string& url);

}  // namespace tucker_seg
