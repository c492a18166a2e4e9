// tucker-seg-server's flags, each with an environment variable for containers (the flag wins).
#pragma once

#include "command_line/command_line.h"
#include "server/server.h"

namespace tucker_seg::server {

void AddServerFlags(CLI::App& app, ServerOptions* options);

}  // namespace tucker_seg::server
