// Replacing a file so that readers see the old or the new contents, never half of either, and a
// crash right after leaves the new contents on disk (file and folder fsynced).
#pragma once

#include <string>
#include <string_view>

#include "vocabulary/status.h"

namespace tucker_seg {

// Writes to a temporary file beside `path`; Commit() checks every write, fsyncs, renames it over
// `path` and fsyncs the folder. Destroyed without a successful Commit(), it removes the
// temporary file and `path` is untouched.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void Write(std::string_view bytes);
  Status Commit();

 private:
  std::string path_, temporary_;
  int fd_ = -1;
  int error_ = 0;  // the first failure's errno
  bool committed_ = false;
};

Status WriteFileAtomically(const std::string& path, const std::string& contents);

// For files a library writes itself (DCMTK's saveFile): fsyncs `temporary`, renames it over
// `path` and fsyncs the folder; removes `temporary` on failure.
Status CommitWrittenFile(const std::string& temporary, const std::string& path);

}  // namespace tucker_seg
