// Log lines on stderr (the server's and the DICOM node's), one event per line, UTC timestamps, a level:
//   text (default): "2026-12-01T19:30:00.123Z INFO <message>"
//   json:           {"time":"2026-12-01T19:30:00.123Z","level":"info","message":"<message>"}
// Control characters in a message become '_' (a client's text cannot start a line). Never
// patient data: request ids, model and variant names, sizes and timings only.
#pragma once

#include <string>

#include "vocabulary/status.h"

namespace tucker_seg {

enum class LogLevel { kInfo, kWarning, kError };
enum class LogFormat { kText, kJson };

// For the whole process; set once at start (--log-format).
void SetLogFormat(LogFormat format);
Result<LogFormat> ParseLogFormat(const std::string& name);

void Log(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));
void Log(const char* format, ...) __attribute__((format(printf, 1, 2)));  // kInfo

// A status code's name in log lines and as a metric label: "OK", "INVALID_ARGUMENT", ...
inline std::string StatusName(StatusCode code) {
  switch (static_cast<int>(code)) {
    case 0: return "OK";
    case 1: return "CANCELLED";
    case 2: return "UNKNOWN";
    case 3: return "INVALID_ARGUMENT";
    case 4: return "DEADLINE_EXCEEDED";
    case 5: return "NOT_FOUND";
    case 8: return "RESOURCE_EXHAUSTED";
    case 9: return "FAILED_PRECONDITION";
    case 12: return "UNIMPLEMENTED";
    case 13: return "INTERNAL";
    case 14: return "UNAVAILABLE";
    case 15: return "DATA_LOSS";
    case 16: return "UNAUTHENTICATED";
    default: return "CODE_" + std::to_string(static_cast<int>(code));
  }
}

}  // namespace tucker_seg
