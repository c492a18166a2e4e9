#include "model_store/format/bounded_json.h"

#include <cmath>

namespace tucker_seg {
namespace {

struct TooDeep {};
struct HugeFloat {};

template <typename Input>
Result<nlohmann::json> Parse(Input&& input, const std::string& what) {
  const auto check = [](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth > kMaxJsonDepth) throw TooDeep{};
    // Readers take integer fields with get<int64_t>(); nlohmann converts a float there, which is
    // undefined behaviour beyond the integer's range (found by fuzz/model_json: 2e+83).
    if (event == nlohmann::json::parse_event_t::value && parsed.is_number_float() && !(std::abs(parsed.get<double>()) < 2147483648.0)) {
      throw HugeFloat{};
    }
    return true;
  };
  try {
    return nlohmann::json::parse(std::forward<Input>(input), check);
  } catch (const TooDeep&) {
    return InvalidArgument(what + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  } catch (const HugeFloat&) {
    return InvalidArgument(what + ": a floating-point number of magnitude 2^31 or more (write large values as integers)");
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument(what + " is not valid JSON: " + e.what());
  }
}

}  // namespace

Result<nlohmann::json> ParseBoundedJson(std::istream& in, const std::string& what) { return Parse(in, what); }
Result<nlohmann::json> ParseBoundedJson(const std::string& text, const std::string& what) { return Parse(text, what); }

}  // namespace tucker_seg
