// `--threads 0` follows the container's CPU quota (cgroup v2 cpu.max, v1 cfs quota/period).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "model_store/network/runtime.h"
#include "test_paths.h"

namespace tucker_seg {
namespace {

TEST(Runtime, CgroupQuotaCapsTheThreadCount) {
  const auto v2 = testing::TempDir("cgroup-v2");
  std::ofstream(v2 / "cpu.max") << "150000 100000\n";
  EXPECT_DOUBLE_EQ(CgroupCpuQuota(v2.string()).value(), 1.5);
  EXPECT_EQ(UsableCpus(v2.string()), std::min(2, UsableCpus("/nonexistent")));  // ceil(1.5), unless fewer CPUs exist

  std::ofstream(v2 / "cpu.max") << "max 100000\n";
  EXPECT_FALSE(CgroupCpuQuota(v2.string()).has_value());

  const auto v1 = testing::TempDir("cgroup-v1");
  std::filesystem::create_directories(v1 / "cpu");
  std::ofstream(v1 / "cpu/cpu.cfs_quota_us") << "50000\n";
  std::ofstream(v1 / "cpu/cpu.cfs_period_us") << "100000\n";
  EXPECT_DOUBLE_EQ(CgroupCpuQuota(v1.string()).value(), 0.5);
  EXPECT_EQ(UsableCpus(v1.string()), 1);
  std::ofstream(v1 / "cpu/cpu.cfs_quota_us") << "-1\n";
  EXPECT_FALSE(CgroupCpuQuota(v1.string()).has_value());
  EXPECT_GE(UsableCpus("/nonexistent"), 1);
}

}  // namespace
}  // namespace tucker_seg
