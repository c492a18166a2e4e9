#include "model_store/format/bounded_json.h"

namespace tucker_seg {
namespace {

struct TooDeep {};

template <typename Input>
Result<nlohmann::json> Parse(Input&& input, const std::string& what) {
  const auto limit_depth = [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > kMaxJsonDepth) throw TooDeep{};
    return true;
  };
  try {
    return nlohmann::json::parse(std::forward<Input>(input), limit_depth);
  } catch (const TooDeep&) {
    return InvalidArgument(what + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument(what + " is not valid JSON: " + e.what());
  }
}

}  // namespace

Result<nlohmann::json> ParseBoundedJson(std::istream& in, const std::string& what) { return Parse(in, what); }
Result<nlohmann::json> ParseBoundedJson(const std::string& text, const std::string& what) { return Parse(text, what); }

}  // namespace tucker_seg
