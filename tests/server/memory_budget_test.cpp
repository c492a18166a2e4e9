// The memory budget's accounting (reservations give their bytes back however they end) and
// --memory-budget's sizes.
#include <gtest/gtest.h>

#include "server/serving/memory_budget.h"

namespace tucker_seg::server {
namespace {

TEST(MemoryBudget, ReservationsHoldBytesUntilTheyEnd) {
  MemoryBudget budget(1000);
  auto a = budget.Reserve(600);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(budget.reserved(), 600);
  auto b = budget.Reserve(500);
  EXPECT_EQ(b.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(b.status().message().find("memory_budget"), std::string::npos) << b.status().message();
  EXPECT_EQ(budget.Reserve(1001).status().code(), StatusCode::kInvalidArgument);  // never fits
  {
    auto c = budget.Reserve(400);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(budget.reserved(), 1000);
    MemoryBudget::Reservation moved = std::move(c.value());
    EXPECT_EQ(budget.reserved(), 1000);  // moving does not release twice
  }
  EXPECT_EQ(budget.reserved(), 600);
  a = budget.Reserve(100);  // assigning releases the old reservation
  EXPECT_EQ(budget.reserved(), 100);
}

TEST(MemoryBudget, DefaultIsAShareOfTheMachine) {
  EXPECT_GT(DefaultMemoryBudget(), int64_t{256} << 20);
}

TEST(MemoryBudget, ParsesSizes) {
  EXPECT_EQ(ParseByteSize("8G", "f").value(), int64_t{8} << 30);
  EXPECT_EQ(ParseByteSize("512Mi", "f").value(), int64_t{512} << 20);
  EXPECT_EQ(ParseByteSize("1.5K", "f").value(), 1536);
  EXPECT_EQ(ParseByteSize("3000", "f").value(), 3000);
  for (const char* bad : {"", "G", "8X", "-1G", "1e30", "nan"}) {
    const auto parsed = ParseByteSize(bad, "--memory-budget");
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_NE(parsed.status().message().find("--memory-budget"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace tucker_seg::server
