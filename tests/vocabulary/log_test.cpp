// Log lines: a level after the timestamp, JSON on request, one line per event whatever the text.
#include <gtest/gtest.h>

#include <algorithm>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "vocabulary/log.h"

namespace tucker_seg {
namespace {

TEST(Log, TextLinesCarryTimeAndLevel) {
  ::testing::internal::CaptureStderr();
  Log("calibrated %s", "df0.3");
  Log(LogLevel::kError, "failed: %s", "two\nlines");
  const std::string text = ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(std::regex_match(text, std::regex("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z INFO calibrated df0.3\n"
                                                "\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z ERROR failed: two_lines\n")))
      << text;
}

TEST(Log, JsonLinesParse) {
  SetLogFormat(LogFormat::kJson);
  ::testing::internal::CaptureStderr();
  Log(LogLevel::kWarning, "request id=%s status=%s", "a\"b\\c", "NOT_FOUND");
  const std::string text = ::testing::internal::GetCapturedStderr();
  SetLogFormat(LogFormat::kText);
  ASSERT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  const auto j = nlohmann::json::parse(text, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << text;
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["message"], "request id=a\"b\\c status=NOT_FOUND");
  EXPECT_TRUE(std::regex_match(j["time"].get<std::string>(), std::regex("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z")));
  EXPECT_EQ(ParseLogFormat("xml").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tucker_seg
