#include "vocabulary/class_codes.h"

#include <map>
#include <sstream>
#include <vector>

namespace tucker_seg {

extern const char* const kSnomedMappingCsv;  // generated from the CSV (vocabulary/CMakeLists.txt)

namespace {

// One CSV line's fields; double quotes protect commas ("241,172,34").
std::vector<std::string> SplitCsvLine(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (char c : line) {
    if (c == '"') quoted = !quoted;
    else if (c == ',' && !quoted) fields.emplace_back();
    else if (c != '\r') fields.back() += c;
  }
  return fields;
}

std::map<std::string, ClassCodes> ParseMapping() {
  std::map<std::string, ClassCodes> mapping;
  std::istringstream csv(kSnomedMappingCsv);
  std::string line;
  std::getline(csv, line);  // header: Structure, then scheme/value/meaning for each of five codes, then the colour
  while (std::getline(csv, line)) {
    const auto f = SplitCsvLine(line);
    if (f.size() < 16 || f[0].empty()) continue;
    const auto code = [&f](size_t first) { return Code{f[first], f[first + 1], f[first + 2]}; };
    mapping[f[0]] = {code(1), code(4), code(7), code(10), code(13)};
  }
  return mapping;
}

}  // namespace

std::optional<ClassCodes> FindClassCodes(const std::string& class_name) {
  static const std::map<std::string, ClassCodes> mapping = ParseMapping();
  const auto it = mapping.find(class_name);
  if (it == mapping.end()) return std::nullopt;
  return it->second;
}

ClassCodes CodesOf(const std::string& class_name) {
  if (auto codes = FindClassCodes(class_name)) return *codes;
  ClassCodes fallback;
  fallback.category = {"SCT", "123037004", "Anatomical Structure"};
  fallback.type = {"SCT", "85756007", "Tissue"};
  return fallback;
}

}  // namespace tucker_seg
