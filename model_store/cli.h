// The `tucker-seg-models` command line: import-nnunet, inspect, forward.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace tucker_seg {

// Runs one command; returns the process exit code. Messages go to `out` and `err`.
int RunModelsCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace tucker_seg
