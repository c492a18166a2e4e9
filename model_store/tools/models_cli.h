// The `tucker-seg-models` command line: import-nnunet, inspect, compress, predict, train,
// finetune, distill, evaluate, forward. `tucker-seg-models <command> --help` lists each one's flags.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace tucker_seg {

// Runs one command (args without the program name); returns the process exit code
// (command_line/command_line.h). Messages go to `out` and `err`.
int RunModelsCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace tucker_seg
