// Replacing a file so that readers see the old or the new contents, never half of either.
#pragma once

#include <string>

#include "vocabulary/status.h"

namespace tucker_seg {

// Writes `contents` to a temporary file beside `path`, flushes and fsyncs it, then renames it
// over `path`. On failure `path` is untouched and the temporary file is removed.
Status WriteFileAtomically(const std::string& path, const std::string& contents);

}  // namespace tucker_seg
