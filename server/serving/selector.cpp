#include "server/serving/selector.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tucker_seg::server {
namespace {

std::string Seconds(double s) {
  if (std::isinf(s)) return "none";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3f s", s);
  return buffer;
}

}  // namespace

double VariantSelector::RunSeconds(const ModelEntry& model, const VariantEntry& variant, int64_t tiles, double slowdown) const {
  double load = 1;
  {
    absl::MutexLock lock(&mutex_);
    const auto it = observed_load_.find(model.device);
    if (it != observed_load_.end()) load = it->second.mean + 2 * it->second.deviation;
  }
  return (variant.fixed_seconds + variant.seconds_per_tile * static_cast<double>(tiles)) * load * slowdown;
}

void VariantSelector::Observe(const ModelEntry& model, const VariantEntry& variant, double seconds, int64_t tiles) {
  const double calibrated = variant.fixed_seconds + variant.seconds_per_tile * static_cast<double>(tiles);
  if (tiles < 1 || !(seconds > 0) || !(calibrated > 0)) return;
  const double ratio = seconds / calibrated;
  absl::MutexLock lock(&mutex_);
  // From the calibration (ratio 1) on: one request measured under load moves the estimate, never
  // replaces it.
  Learned& load = observed_load_[model.device];
  load.mean += options_.cost_smoothing * (ratio - load.mean);
  load.deviation += options_.cost_smoothing * (std::abs(ratio - load.mean) - load.deviation);
}

double VariantSelector::OffWorkerSeconds() const {
  absl::MutexLock lock(&mutex_);
  return off_worker_ ? off_worker_->mean + 2 * off_worker_->deviation : 0;
}

void VariantSelector::ObserveOffWorker(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return;
  absl::MutexLock lock(&mutex_);
  if (!off_worker_) {
    off_worker_ = Learned{seconds, 0};
    return;
  }
  off_worker_->mean += options_.cost_smoothing * (seconds - off_worker_->mean);
  off_worker_->deviation += options_.cost_smoothing * (std::abs(seconds - off_worker_->mean) - off_worker_->deviation);
}

std::optional<double> VariantSelector::BudgetSeconds(const SelectionRequest& request) const {
  std::optional<double> budget;
  if (options_.latency_target_seconds > 0) budget = options_.latency_target_seconds;
  if (request.deadline_seconds) budget = budget ? std::min(*budget, *request.deadline_seconds) : *request.deadline_seconds;
  return budget;
}

Result<std::vector<const VariantEntry*>> VariantSelector::Candidates(const ModelEntry& model, const SelectionRequest& request) const {
  if (!std::isfinite(request.min_quality) || request.min_quality < 0 || request.min_quality > 1) {
    return InvalidArgument("header.min_quality must be in [0, 1], got " + std::to_string(request.min_quality));
  }
  if (!request.variant.empty() && request.variant != "auto") {
    const VariantEntry* pinned = model.Find(request.variant);
    if (!pinned) {
      return NotFound("variant '" + request.variant + "' of model '" + model.name + "' does not exist (have: " + model.VariantNames() + ")");
    }
    if (!pinned->cannot_run.empty()) {
      return FailedPrecondition("variant '" + request.variant + "' of model '" + model.name + "' cannot run on " + model.device + ": " +
                                pinned->cannot_run);
    }
    return std::vector<const VariantEntry*>{pinned};
  }
  std::vector<const VariantEntry*> candidates;
  for (const auto& v : model.variants)
    if (v.selectable && v.quality && *v.quality >= request.min_quality) candidates.push_back(&v);
  if (candidates.empty()) {
    return NotFound("no selectable variant of model '" + model.name + "' reaches min_quality " + std::to_string(request.min_quality));
  }
  std::stable_sort(candidates.begin(), candidates.end(), [](const VariantEntry* a, const VariantEntry* b) { return *a->quality > *b->quality; });
  return candidates;
}

Result<VariantSelector::Fastest> VariantSelector::FastestCandidate(const ModelEntry& model, const SelectionRequest& request) const {
  TS_ASSIGN_OR_RETURN(const std::vector<const VariantEntry*> candidates, Candidates(model, request));
  Fastest fastest{candidates[0], kNoBudget};  // Candidates is never empty
  for (const VariantEntry* v : candidates) {
    const double seconds = RunSeconds(model, *v, request.tiles, request.slowdown);
    if (seconds < fastest.seconds) fastest = {v, seconds};
  }
  return fastest;
}

Result<Selection> VariantSelector::Dispatch(const ModelEntry& model, const SelectionRequest& request, const DispatchView& view) const {
  TS_ASSIGN_OR_RETURN(const std::vector<const VariantEntry*> candidates, Candidates(model, request));
  std::vector<double> run_seconds;
  for (const VariantEntry* v : candidates) run_seconds.push_back(RunSeconds(model, *v, request.tiles, request.slowdown));
  const DispatchChoice choice = ChooseAtDispatch(run_seconds, view);
  Selection s;
  s.variant = candidates[choice.candidate];
  s.run_seconds = s.predicted_seconds = run_seconds[choice.candidate];
  const bool pinned = !request.variant.empty() && request.variant != "auto";
  s.reason = pinned                  ? "pinned"
             : choice.candidate == 0 ? "most_accurate"
             : choice.within_budget  ? "downgraded_for_load"
                                     : "fastest_over_budget";
  s.detail = "predicted run " + Seconds(s.run_seconds) + " (" + std::to_string(request.tiles) + " tiles) of " +
             Seconds(view.seconds_left) + " left; " + std::to_string(view.behind.size()) + " queued behind";
  return s;
}

Result<Selection> VariantSelector::Select(const ModelEntry& model, const SelectionRequest& request, double queue_wait_seconds) const {
  const std::optional<double> budget = BudgetSeconds(request);
  DispatchView view;
  view.seconds_left = budget ? *budget - queue_wait_seconds : kNoBudget;
  TS_ASSIGN_OR_RETURN(Selection s, Dispatch(model, request, view));
  s.predicted_seconds = queue_wait_seconds + s.run_seconds;
  s.detail = "predicted " + Seconds(s.predicted_seconds) + " (queue wait " + Seconds(queue_wait_seconds) + ", " +
             std::to_string(request.tiles) + " tiles) against a budget of " + Seconds(budget.value_or(kNoBudget));
  return s;
}

Result<Placement> VariantSelector::SelectDevice(const std::vector<DeviceCandidate>& devices, const SelectionRequest& request,
                                                int64_t request_device_bytes) const {
  std::optional<Placement> best;
  std::string short_of_memory;
  Status refusal;
  const auto in_budget = [](const Selection& s) { return s.reason != "fastest_over_budget"; };
  for (size_t d = 0; d < devices.size(); ++d) {
    const DeviceCandidate& c = devices[d];
    if (c.free_bytes && *c.free_bytes < request_device_bytes) {
      short_of_memory += (short_of_memory.empty() ? "" : ", ") + c.model->device + " has " +
                         std::to_string(*c.free_bytes >> 20) + " MiB free";
      continue;
    }
    SelectionRequest on_device = request;
    on_device.slowdown = std::max(1.0, c.slowdown);
    auto s = Select(*c.model, on_device, c.queue_wait_seconds);
    if (!s.ok()) {  // e.g. no variant selectable on this device (dominance is per device)
      if (refusal.ok()) refusal = s.status();
      continue;
    }
    Placement p{d, std::move(s).value()};
    if (!best) {
      best = std::move(p);
      continue;
    }
    const Selection& a = p.selection;
    const Selection& b = best->selection;
    const bool better = in_budget(a) != in_budget(b)           ? in_budget(a)
                        : a.variant->quality != b.variant->quality && a.reason != "pinned"
                            ? a.variant->quality.value_or(0) > b.variant->quality.value_or(0)
                            : a.predicted_seconds < b.predicted_seconds;
    if (better) best = std::move(p);
  }
  if (!best && !refusal.ok()) return refusal;
  if (!best) {
    return ResourceExhausted("no device has the memory this request needs (" + std::to_string(request_device_bytes >> 20) +
                             " MiB for its sliding window): " + short_of_memory + "; retry later or send a smaller volume");
  }
  if (devices.size() > 1) best->selection.detail += " on " + devices[best->device].model->device;
  return *best;
}

}  // namespace tucker_seg::server
