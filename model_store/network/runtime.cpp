#include "model_store/network/runtime.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <thread>

namespace tucker_seg {
namespace {

std::optional<double> Ratio(double quota, double period) {
  if (!(quota > 0) || !(period > 0)) return std::nullopt;
  return quota / period;
}

}  // namespace

std::optional<double> CgroupCpuQuota(const std::string& cgroup_root) {
  std::ifstream v2(cgroup_root + "/cpu.max");  // "max 100000" or "200000 100000"
  std::string quota;
  double period = 0;
  if (v2 >> quota >> period) return quota == "max" ? std::nullopt : Ratio(std::atof(quota.c_str()), period);
  std::ifstream v1_quota(cgroup_root + "/cpu/cpu.cfs_quota_us"), v1_period(cgroup_root + "/cpu/cpu.cfs_period_us");
  double q = 0;
  if (v1_quota >> q && v1_period >> period) return Ratio(q, period);  // quota -1 = unlimited
  return std::nullopt;
}

int UsableCpus(const std::string& cgroup_root) {
  int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = std::max(1, CPU_COUNT(&set));
  if (const auto quota = CgroupCpuQuota(cgroup_root)) cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(*quota - 1e-9))));
  return cpus;
}

}  // namespace tucker_seg
