#include "server/serving/dispatch_policy.h"

#include <algorithm>
#include <cmath>

namespace tucker_seg::server {
namespace {

// Which requests behind meet their budget when this worker is free again in `this_worker_free_in`
// seconds and every one of them runs its fastest variant on the first free worker, in order, none
// before it arrives.
std::vector<bool> BehindWithinBudget(double this_worker_free_in, const DispatchView& view, const std::vector<WaitingRequest>& behind) {
  std::vector<double> free_in = view.other_workers_free_in;
  free_in.push_back(this_worker_free_in);
  std::vector<bool> within;
  within.reserve(behind.size());
  for (const WaitingRequest& r : behind) {
    auto worker = std::min_element(free_in.begin(), free_in.end());
    *worker = std::max(*worker, r.arrives_in) + r.fastest_run_seconds;
    within.push_back(*worker <= r.seconds_left);
  }
  return within;
}

constexpr int kMaxExpected = 64;

// For k = 1..kMaxExpected: the mean count m at which a Poisson count reaches k with probability
// 5% (P(Poisson(m) <= k - 1) = 0.95). The k-th arrival of a Poisson stream comes before
// m / rate once in 20 times.
const std::vector<double>& EarlyArrivalCounts() {
  static const std::vector<double> counts = [] {
    std::vector<double> m(kMaxExpected + 1, 0.0);
    for (int k = 1; k <= kMaxExpected; ++k) {
      double lo = 0, hi = 4.0 * k + 10;
      for (int i = 0; i < 60; ++i) {
        const double mid = 0.5 * (lo + hi);
        double term = std::exp(-mid), cdf = term;  // P(N <= k - 1)
        for (int j = 1; j < k; ++j) term *= mid / j, cdf += term;
        (cdf > 0.95 ? lo : hi) = mid;
      }
      m[static_cast<size_t>(k)] = 0.5 * (lo + hi);
    }
    return m;
  }();
  return counts;
}

}  // namespace

std::vector<WaitingRequest> ExpectedArrivals(const DispatchView& view, double horizon) {
  std::vector<WaitingRequest> expected;
  if (!(view.arrivals_per_second > 0) || !(horizon > 0)) return expected;
  for (int k = 1; k <= kMaxExpected; ++k) {
    const double at = EarlyArrivalCounts()[static_cast<size_t>(k)] / view.arrivals_per_second;
    if (at > horizon) break;
    expected.push_back({at + view.budget_seconds, view.fastest_run_seconds, at});
  }
  return expected;
}

DispatchChoice ChooseAtDispatch(const std::vector<double>& candidate_run_seconds, const DispatchView& view) {
  if (candidate_run_seconds.empty()) return {};
  const size_t fastest = static_cast<size_t>(
      std::min_element(candidate_run_seconds.begin(), candidate_run_seconds.end()) - candidate_run_seconds.begin());
  if (candidate_run_seconds[fastest] > view.seconds_left) return {fastest, false};  // late whatever it runs
  // Behind it: the queue, then the arrivals expected while it and the queue run (the horizon: its
  // slowest candidate and the queue at its fastest, or its budget when that is longer).
  std::vector<WaitingRequest> behind = view.behind;
  double horizon = *std::max_element(candidate_run_seconds.begin(), candidate_run_seconds.end());
  for (const WaitingRequest& r : view.behind) horizon += r.fastest_run_seconds;
  if (view.budget_seconds < kNoBudget) horizon = std::max(horizon, view.budget_seconds);
  for (const WaitingRequest& r : ExpectedArrivals(view, horizon)) behind.push_back(r);
  // The requests behind that can make their budget at all: with this one at its fastest.
  const std::vector<bool> savable = BehindWithinBudget(candidate_run_seconds[fastest], view, behind);
  // The most accurate candidate that keeps them all; the fastest always does.
  for (size_t i = 0; i < candidate_run_seconds.size(); ++i) {
    if (candidate_run_seconds[i] > view.seconds_left) continue;
    if (i != fastest && candidate_run_seconds[i] > view.spare_seconds) continue;  // beyond the headroom
    const std::vector<bool> within = BehindWithinBudget(candidate_run_seconds[i], view, behind);
    bool kept = true;
    for (size_t j = 0; j < within.size() && kept; ++j) kept = within[j] || !savable[j];
    if (kept) return {i, true};
  }
  return {fastest, true};
}

bool InterleaveNow(const RunningWork& running, const WaitingRequest& waiting, const std::vector<double>& other_workers_free_in) {
  if (!(waiting.fastest_run_seconds <= waiting.seconds_left)) return false;  // late whatever happens
  if (running.remaining_seconds < kInterleaveLongerBy * waiting.fastest_run_seconds) return false;  // not long work
  if (running.interleaved_seconds >= 2 * running.own_seconds) return false;  // its third of the worker is used up
  double first_free = running.remaining_seconds;
  for (double f : other_workers_free_in) first_free = std::min(first_free, f);
  if (first_free + waiting.fastest_run_seconds <= waiting.seconds_left) return false;  // in time by waiting
  const bool running_in_time = running.remaining_seconds <= running.seconds_left;
  return !running_in_time || running.remaining_seconds + waiting.fastest_run_seconds <= running.seconds_left;
}

}  // namespace tucker_seg::server
