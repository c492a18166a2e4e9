// PEM files (TLS certificates, keys, CA bundles) as the server and the client read them.
#pragma once

#include <string>

#include "vocabulary/status.h"

namespace tucker_seg {

// The file's text; INVALID_ARGUMENT "<what> '<path>' is not a readable PEM file" when it cannot be
// read or holds no "-----BEGIN" line.
Result<std::string> ReadPemFile(const std::string& path, const std::string& what);

}  // namespace tucker_seg
