// Process-wide settings for running LibTorch on CPU.
#pragma once

#include <malloc.h>

#include <optional>
#include <string>

namespace tucker_seg {

// Keeps LibTorch's large, short-lived tensors (up to 32 MiB) in glibc's heap instead of a fresh
// mmap per allocation, which the kernel must zero page by page (training steps: figures in
// docs/performance.md). Call once at the start of main.
inline void TuneAllocatorForTensors() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 256 << 20);
}

// CPUs this process may use: the CPUs it may run on (sched_getaffinity), capped by a cgroup CPU
// quota (v2 cpu.max, or v1 cpu.cfs_quota_us / cpu.cfs_period_us) rounded up, so that
// `--threads 0` inside a container with `--cpus 2` means 2, not the host's core count.
int UsableCpus(const std::string& cgroup_root = "/sys/fs/cgroup");
// The quota in CPUs under `cgroup_root`; nullopt when unlimited or unreadable.
std::optional<double> CgroupCpuQuota(const std::string& cgroup_root);

}  // namespace tucker_seg
