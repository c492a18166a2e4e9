// `tucker-seg`: the command line a radiology IT team runs (segment, models, health, pacs).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace tucker_seg::client {

// Runs one command (args without the program name); returns the process exit code
// (command_line/command_line.h: 0 success, 1 failure, 2 usage). Help and version go to `out`,
// errors to `err`; results are printed on stdout.
int RunCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace tucker_seg::client
