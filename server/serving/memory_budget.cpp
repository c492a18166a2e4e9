#include "server/serving/memory_budget.h"

#include <unistd.h>

#include <cctype>
#include <cmath>
#include <fstream>

namespace tucker_seg::server {

MemoryBudget::Reservation& MemoryBudget::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = other.budget_;
    bytes_ = other.bytes_;
    other.budget_ = nullptr;
  }
  return *this;
}

void MemoryBudget::Reservation::Release() {
  if (!budget_) return;
  absl::MutexLock lock(&budget_->mutex_);
  budget_->reserved_ -= bytes_;
  budget_ = nullptr;
}

Result<MemoryBudget::Reservation> MemoryBudget::Reserve(int64_t bytes) {
  constexpr int64_t kMiB = 1 << 20;
  if (bytes > total_) {
    return InvalidArgument("header.volume: the request needs an estimated " + std::to_string(bytes / kMiB) + " MiB, more than the server's whole memory_budget of " +
                           std::to_string(total_ / kMiB) + " MiB");
  }
  absl::MutexLock lock(&mutex_);
  if (bytes > total_ - reserved_) {
    return ResourceExhausted("memory_budget: the request needs an estimated " + std::to_string(bytes / kMiB) + " MiB, " + std::to_string((total_ - reserved_) / kMiB) +
                             " MiB of " + std::to_string(total_ / kMiB) + " MiB are free now; retry later");
  }
  reserved_ += bytes;
  return Reservation(this, bytes);
}

int64_t MemoryBudget::reserved() const {
  absl::MutexLock lock(&mutex_);
  return reserved_;
}

namespace {

// cgroup v2 memory.max, or v1 memory.limit_in_bytes; 0 when unlimited or unknown.
int64_t CgroupMemoryLimit() {
  for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    std::string text;
    if (!(in >> text) || text == "max") continue;
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (end != text.c_str() && value > 0 && value < 9e18) return static_cast<int64_t>(value);
  }
  return 0;
}

}  // namespace

int64_t DefaultMemoryBudget() {
  const int64_t physical = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
  const int64_t cgroup = CgroupMemoryLimit();
  const int64_t usable = cgroup > 0 && cgroup < physical ? cgroup : physical;
  return usable / 10 * 6;
}

Result<int64_t> ParseByteSize(const std::string& text, const std::string& field) {
  size_t end = 0;
  double value = 0;
  try {
    value = std::stod(text, &end);
  } catch (const std::exception&) {
    return InvalidArgument(field + ": '" + text.substr(0, 32) + "' is not a size (bytes, or a number with K, M, G or T)");
  }
  std::string unit = text.substr(end);
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (!unit.empty() && (unit.back() == 'i')) unit.pop_back();
  double scale = 1;
  if (unit.size() == 1) {
    switch (std::toupper(static_cast<unsigned char>(unit[0]))) {
      case 'K': scale = 1024.0; break;
      case 'M': scale = 1024.0 * 1024; break;
      case 'G': scale = 1024.0 * 1024 * 1024; break;
      case 'T': scale = 1024.0 * 1024 * 1024 * 1024; break;
      default: scale = 0;
    }
  } else if (!unit.empty()) {
    scale = 0;
  }
  const double bytes = value * scale;
  if (scale == 0 || !std::isfinite(bytes) || bytes < 0 || bytes > 9e18) {
    return InvalidArgument(field + ": '" + text.substr(0, 32) + "' is not a size (bytes, or a number with K, M, G or T)");
  }
  return static_cast<int64_t>(bytes);
}

}  // namespace tucker_seg::server
