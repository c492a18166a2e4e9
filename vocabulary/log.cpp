#include "vocabulary/log.h"

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <string>

namespace tucker_seg {
namespace {

std::atomic<LogFormat> g_format{LogFormat::kText};

void Emit(LogLevel level, const char* format, va_list args) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[40];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  char message[2048];
  std::vsnprintf(message, sizeof message, format, args);
  // One event, one line: a control character from a client's text cannot start a forged line.
  for (char* c = message; *c; ++c)
    if (static_cast<unsigned char>(*c) < 0x20 || *c == 0x7f) *c = '_';
  const char* name = level == LogLevel::kError ? "ERROR" : level == LogLevel::kWarning ? "WARNING" : "INFO";
  // One fprintf per line, so that lines from different threads do not interleave.
  if (g_format.load() == LogFormat::kText) {
    std::fprintf(stderr, "%s.%03dZ %s %s\n", stamp, static_cast<int>(millis), name, message);
    return;
  }
  std::string escaped;
  for (const char* c = message; *c; ++c) {
    if (*c == '"' || *c == '\\') escaped += '\\';
    escaped += *c;
  }
  const char* lower = level == LogLevel::kError ? "error" : level == LogLevel::kWarning ? "warning" : "info";
  std::fprintf(stderr, "{\"time\":\"%s.%03dZ\",\"level\":\"%s\",\"message\":\"%s\"}\n", stamp, static_cast<int>(millis), lower, escaped.c_str());
}

}  // namespace

void SetLogFormat(LogFormat format) { g_format.store(format); }

Result<LogFormat> ParseLogFormat(const std::string& name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return InvalidArgument("log_format must be text or json, not '" + name.substr(0, 32) + "'");
}

void Log(LogLevel level, const char* format, ...) {
  va_list args;
  va_start(args, format);
  Emit(level, format, args);
  va_end(args);
}

void Log(const char* format, ...) {
  va_list args;
  va_start(args, format);
  Emit(LogLevel::kInfo, format, args);
  va_end(args);
}

}  // namespace tucker_seg
