#include "vocabulary/pem_file.h"

#include <fstream>
#include <sstream>

namespace tucker_seg {

Result<std::string> ReadPemFile(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || text.str().find("-----BEGIN") == std::string::npos) return InvalidArgument(what + " '" + path + "' is not a readable PEM file");
  return text.str();
}

}  // namespace tucker_seg
