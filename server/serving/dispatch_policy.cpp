#include "server/serving/dispatch_policy.h"

#include <algorithm>

namespace tucker_seg::server {
namespace {

// Which requests behind meet their budget when this worker is free again in `this_worker_free_in`
// seconds and every one of them runs its fastest variant on the first free worker, in order.
std::vector<bool> BehindWithinBudget(double this_worker_free_in, const DispatchView& view) {
  std::vector<double> free_in = view.other_workers_free_in;
  free_in.push_back(this_worker_free_in);
  std::vector<bool> within;
  within.reserve(view.behind.size());
  for (const WaitingRequest& r : view.behind) {
    auto worker = std::min_element(free_in.begin(), free_in.end());
    *worker += r.fastest_run_seconds;
    within.push_back(*worker <= r.seconds_left);
  }
  return within;
}

}  // namespace

DispatchChoice ChooseAtDispatch(const std::vector<double>& candidate_run_seconds, const DispatchView& view) {
  if (candidate_run_seconds.empty()) return {};
  const size_t fastest = static_cast<size_t>(
      std::min_element(candidate_run_seconds.begin(), candidate_run_seconds.end()) - candidate_run_seconds.begin());
  if (candidate_run_seconds[fastest] > view.seconds_left) return {fastest, false};  // late whatever it runs
  // The requests behind that can make their budget at all: with this one at its fastest.
  const std::vector<bool> savable = BehindWithinBudget(candidate_run_seconds[fastest], view);
  // The most accurate candidate that keeps them all; the fastest always does.
  for (size_t i = 0; i < candidate_run_seconds.size(); ++i) {
    if (candidate_run_seconds[i] > view.seconds_left) continue;
    const std::vector<bool> within = BehindWithinBudget(candidate_run_seconds[i], view);
    bool kept = true;
    for (size_t j = 0; j < within.size() && kept; ++j) kept = within[j] || !savable[j];
    if (kept) return {i, true};
  }
  return {fastest, true};
}

}  // namespace tucker_seg::server
