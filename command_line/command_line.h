// The flags of tucker-seg, tucker-seg-models and tucker-seg-server, through one library (CLI11).
//
// Exit codes, the same for every program and command:
//   0  success (also --help and --version)
//   1  the command ran and failed (file not found, inference failed, server unreachable, ...)
//   2  usage: unknown command or option, missing or malformed value; the message names the option
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "vocabulary/status.h"

namespace tucker_seg::command_line {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

const char* ProjectVersion();  // CMake's project version
const char* GitCommit();       // the commit built, "-dirty" when the tree had changes; "unknown" outside git

// "<program> <version> (commit <hash>)"
std::string VersionLine(const std::string& program);

// An application with --version, the project's help layout, and no positional arguments or
// options that it does not declare.
void Configure(CLI::App& app, const std::string& program);

// Parses `args` (without the program name). Returns the exit code when the program must stop
// here: help or version printed to `out` (0), or a usage error printed to `err` (2). Returns
// nothing when the chosen command should run.
std::optional<int> Parse(CLI::App& app, const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// Prints "error: <message>" to `err` and returns 1: the command ran and failed. Usage errors are
// found by the parser (or by a command's own checks, which return kExitUsage themselves).
int Fail(std::ostream& err, const Status& status);

}  // namespace tucker_seg::command_line
