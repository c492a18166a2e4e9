#include "server/serving/selector.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <vector>

namespace tucker_seg::server {
namespace {

std::string Seconds(double s) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3f s", s);
  return buffer;
}

}  // namespace

double VariantSelector::SecondsPerTile(const ModelEntry& model, const VariantEntry& variant) const {
  absl::MutexLock lock(&mutex_);
  return SecondsPerTileLocked(model, variant);
}

double VariantSelector::SecondsPerTileLocked(const ModelEntry& model, const VariantEntry& variant) const {
  const auto it = observed_seconds_per_tile_.find({model.device, model.name, variant.name});
  return it == observed_seconds_per_tile_.end() ? variant.seconds_per_tile : it->second;
}

void VariantSelector::Observe(const ModelEntry& model, const VariantEntry& variant, double seconds, int64_t tiles) {
  if (tiles < 1 || !(seconds > 0)) return;
  const double per_tile = seconds / static_cast<double>(tiles);
  absl::MutexLock lock(&mutex_);
  auto [it, inserted] = observed_seconds_per_tile_.try_emplace(Key{model.device, model.name, variant.name}, per_tile);
  if (!inserted) it->second += options_.cost_smoothing * (per_tile - it->second);
}

Result<Selection> VariantSelector::Select(const ModelEntry& model, const SelectionRequest& request, double queue_wait_seconds) {
  if (!std::isfinite(request.min_quality) || request.min_quality < 0 || request.min_quality > 1) {
    return InvalidArgument("min_quality must be in [0, 1], got " + std::to_string(request.min_quality));
  }
  Selection s;
  if (!request.variant.empty() && request.variant != "auto") {
    s.variant = model.Find(request.variant);
    if (!s.variant) {
      return NotFound("variant '" + request.variant + "' of model '" + model.name + "' does not exist (have: " + model.VariantNames() + ")");
    }
    s.reason = "pinned";
    s.predicted_seconds = queue_wait_seconds + SecondsPerTile(model, *s.variant) * request.slowdown * static_cast<double>(request.tiles);
    s.run_seconds = s.predicted_seconds - queue_wait_seconds;
    s.detail = "requested by name; predicted " + Seconds(s.predicted_seconds);
    return s;
  }

  std::vector<const VariantEntry*> candidates;
  for (const auto& v : model.variants)
    if (v.selectable && v.quality && *v.quality >= request.min_quality) candidates.push_back(&v);
  if (candidates.empty()) {
    return NotFound("no selectable variant of model '" + model.name + "' reaches min_quality " + std::to_string(request.min_quality));
  }
  std::stable_sort(candidates.begin(), candidates.end(), [&](const VariantEntry* a, const VariantEntry* b) {
    return *a->quality > *b->quality;
  });

  std::optional<double> budget;
  if (options_.latency_target_seconds > 0) budget = options_.latency_target_seconds;
  if (request.deadline_seconds) budget = budget ? std::min(*budget, *request.deadline_seconds) : *request.deadline_seconds;

  absl::MutexLock lock(&mutex_);
  std::string& last = last_choice_[{model.device, model.name}];
  size_t last_index = candidates.size();
  for (size_t i = 0; i < candidates.size(); ++i)
    if (candidates[i]->name == last) last_index = i;

  // Predicted seconds per candidate, computed under the lock (a lambda would hide the lock from
  // clang's thread-safety analysis).
  std::map<const VariantEntry*, double> predicted;
  for (const VariantEntry* v : candidates)
    predicted[v] = queue_wait_seconds + SecondsPerTileLocked(model, *v) * request.slowdown * static_cast<double>(request.tiles);
  const auto cost = [&](const VariantEntry* v) { return predicted.at(v); };
  if (!budget) {
    s.variant = candidates[0];
    s.reason = "most_accurate";
    s.predicted_seconds = cost(s.variant);
    s.detail = "no latency target or deadline; predicted " + Seconds(s.predicted_seconds);
  } else {
    bool skipped_for_headroom = false;
    for (size_t i = 0; i < candidates.size() && !s.variant; ++i) {
      const double t = cost(candidates[i]);
      const bool needs_headroom = last_index < candidates.size() && i < last_index;
      const double limit = needs_headroom ? *budget * (1 - options_.hysteresis) : *budget;
      if (t <= limit) {
        s.variant = candidates[i];
        s.predicted_seconds = t;
        s.reason = i == 0 ? "most_accurate" : skipped_for_headroom ? "held_by_hysteresis" : "downgraded_for_load";
      } else if (t <= *budget) {
        skipped_for_headroom = true;
      }
    }
    if (!s.variant) {
      s.variant = *std::min_element(candidates.begin(), candidates.end(),
                                    [&](const VariantEntry* a, const VariantEntry* b) { return cost(a) < cost(b); });
      s.predicted_seconds = cost(s.variant);
      s.reason = "fastest_over_budget";
    }
    s.detail = "predicted " + Seconds(s.predicted_seconds) + " (queue wait " + Seconds(queue_wait_seconds) + ", " +
               std::to_string(request.tiles) + " tiles) against a budget of " + Seconds(*budget);
  }
  s.run_seconds = s.predicted_seconds - queue_wait_seconds;
  last = s.variant->name;
  return s;
}

Result<Placement> VariantSelector::SelectDevice(const std::vector<DeviceCandidate>& devices, const SelectionRequest& request,
                                                int64_t request_device_bytes) {
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
