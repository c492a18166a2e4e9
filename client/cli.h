// `tucker-seg`: the command line a radiology IT team runs (segment, models, pacs).
#pragma once

namespace tucker_seg::client {

// Returns the process exit code: 0 success, 1 failure (message on stderr), 2 usage error.
int RunCli(int argc, char** argv);

}  // namespace tucker_seg::client
