// The server's log lines on stderr: "2026-12-01T19:30:00.123Z <message>", UTC, one line each.
// Never patient data: request ids, model and variant names, sizes and timings only.
#pragma once

namespace tucker_seg::server {

void Log(const char* format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace tucker_seg::server
