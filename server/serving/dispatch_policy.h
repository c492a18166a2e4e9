// The variant choice at dispatch (late binding): when a worker takes a request, it runs the most
// accurate variant with which this request and every request queued behind it can still finish
// within their budgets, each of those at its own fastest variant. The requests expected to arrive
// meanwhile (a Poisson stream at the rate requests have been arriving, each with this request's
// budget and fastest run time) count as queued behind it from their arrival on, the k-th as early
// as it comes one time in 20: under open-loop load the queue is short when a burst is about to
// come, and planning for the mean arrival times spends the slack a burst then needs. Requests
// behind that would miss their budget even then do not hold this one back (they are late
// whatever it does). When this request cannot make its own
// budget even with its fastest variant, it takes that fastest one: the sooner it is done, the
// better for everyone behind it.
// The device also keeps headroom: it plans to keep requests waiting behind work at most
// kPlannedUtilization of its workers' time, and a variant slower than the request's fastest runs
// only when the spare capacity saved up so far covers its run time (DispatchView::spare_seconds;
// only worker time that requests waited through spends it). The plan above looks one budget ahead;
// without headroom every dispatch spent whatever slack that plan left, so under open-loop load a
// burst beyond the planned arrivals found no slack left at all.
// Interleaving (InterleaveNow): a request queued behind work that is running may run on that
// worker between the running work's steps (preprocessing slabs, tiles, exported slices), when
// waiting would make it late and running now would not, and the running work, if it was going to
// finish within its budget, still does; only long work is interrupted (kInterleaveLongerBy). The
// running work keeps at least a third of its worker's time meanwhile, so that a stream of short
// requests slows a whole CT down at most about threefold and never starves it (server_bench
// mixed: with half, two closed-loop one-tile clients kept 91-92% within target, with a third 96%).
// Pure functions over numbers, so that they are tested on synthetic queues (dispatch_policy_test).
#pragma once

#include <cstddef>
#include <limits>
#include <vector>

namespace tucker_seg::server {

constexpr double kNoBudget = std::numeric_limits<double>::infinity();

// A request waiting behind the one being dispatched, in the order it will be dispatched.
struct WaitingRequest {
  double seconds_left = kNoBudget;  // until its budget ends (deadline or latency target)
  double fastest_run_seconds = 0;   // its run time with its fastest variant
  double arrives_in = 0;            // 0: queued now; > 0: expected to arrive then
};

// What the worker knows when it takes a request.
struct DispatchView {
  double seconds_left = kNoBudget;            // this request's, from now
  std::vector<double> other_workers_free_in;  // seconds until each other worker of the device is free
  std::vector<WaitingRequest> behind;
  double arrivals_per_second = 0;   // how fast requests have been arriving at this device lately
  double budget_seconds = kNoBudget;  // this request's whole budget, from its admission
  double fastest_run_seconds = 0;     // this request's run time with its fastest variant
  // Worker-seconds of spare capacity saved up on the device: capacity at kPlannedUtilization,
  // less the worker time work took while other work waited for it (Scheduler). A variant slower
  // than the fastest runs only when this covers its run time.
  double spare_seconds = kNoBudget;
};

// The share of its workers' time a device plans to be busy while requests wait: the rest is
// headroom for bursts.
constexpr double kPlannedUtilization = 0.8;

// The requests expected to arrive within `horizon` seconds (at most 64), each with the view's
// budget and fastest run time: what ChooseAtDispatch adds behind the queued ones. The k-th at the
// time by which k have come with probability 5% (m_k / rate, P(Poisson(m_k) <= k - 1) = 0.95).
std::vector<WaitingRequest> ExpectedArrivals(const DispatchView& view, double horizon);

struct DispatchChoice {
  size_t candidate = 0;        // index into the candidates
  bool within_budget = false;  // predicted to finish within its budget (then so is every request
                               // behind it that could be at all)
};

// `candidate_run_seconds`: this request's run time with each allowed variant, most accurate first.
DispatchChoice ChooseAtDispatch(const std::vector<double>& candidate_run_seconds, const DispatchView& view);

// Only work with at least this many times a waiting request's fastest run left is interrupted for
// it: between requests of similar size, switching only reorders them (server_bench open at 2x the
// original's capacity, one-tile requests: 69% within target with any request interrupting any
// other, against 85% without interleaving).
constexpr double kInterleaveLongerBy = 4;

// The work a worker is running, as a request queued behind it sees it.
struct RunningWork {
  double remaining_seconds = 0;     // its estimated run time left
  double seconds_left = kNoBudget;  // until its budget ends
  double own_seconds = 0;           // worker time it has had since it started
  double interleaved_seconds = 0;   // worker time interleaved work has had since it started
};

// Whether `waiting` should run now, between `running`'s steps on its worker, rather than after it
// or on the first of the other workers to be free.
bool InterleaveNow(const RunningWork& running, const WaitingRequest& waiting, const std::vector<double>& other_workers_free_in);

}  // namespace tucker_seg::server
