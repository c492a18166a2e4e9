// JSON from files we did not write (model.json, manifests, safetensors headers, nnU-Net plans):
// parsed without exceptions escaping and with at most kMaxJsonDepth levels of nesting. A deeper
// document would be copied and destroyed recursively later, and a few MB of '[' exhaust the stack.
#pragma once

#include <istream>
#include <string>

#include <nlohmann/json.hpp>

#include "vocabulary/status.h"

namespace tucker_seg {

constexpr int kMaxJsonDepth = 64;

// INVALID_ARGUMENT "<what>: ..." for malformed or too deeply nested JSON.
Result<nlohmann::json> ParseBoundedJson(std::istream& in, const std::string& what);
Result<nlohmann::json> ParseBoundedJson(const std::string& text, const std::string& what);

}  // namespace tucker_seg
