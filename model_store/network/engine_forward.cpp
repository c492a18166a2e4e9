// PlainConvUNet on the CPU engine: the network's topology written as a cpu_engine::Graph.
#include <chrono>

#include "model_store/network/network.h"

#if TUCKER_SEG_HAVE_ONEDNN
#include "model_store/cpu_engine/onednn_graph.h"
#endif

namespace tucker_seg {

struct EngineGraph {
#if TUCKER_SEG_HAVE_ONEDNN
  cpu_engine::Graph graph;
#endif
  // The logits of the last call. Handed out as is and refilled by the next call when nobody holds
  // it any more: a fresh 0.7 GB tensor per tile would cost the kernel's page zeroing every time.
  torch::Tensor logits;
};

std::shared_ptr<EngineGraph> EngineGraphPool::Take(const Key& key, Status* status) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  *status = it->second.failure;
  if (it->second.idle.empty()) return nullptr;
  auto graph = std::move(it->second.idle.back());
  it->second.idle.pop_back();
  return graph;
}

void EngineGraphPool::Return(const Key& key, std::shared_ptr<EngineGraph> graph) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_[key].idle.push_back(std::move(graph));
}

void EngineGraphPool::RecordFailure(const Key& key, const Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_[key].failure = status;
}

void EngineGraphPool::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.clear();
}

#if TUCKER_SEG_HAVE_ONEDNN
namespace {

using cpu_engine::ConvSpec;
using cpu_engine::Graph;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The profile's name for a layer (kinds of work, as the LibTorch path's profile names them).
std::string OpName(const ConvLayer& c, bool head) {
  if (head) return "segmentation head 1x1x1";
  if (EndsWith(c.name, ".tucker_in") || EndsWith(c.name, ".tucker_out")) return "Tucker factor 1x1x1";
  if (EndsWith(c.name, ".tucker_core")) return std::string(c.transposed ? "transposed " : "") + "Tucker core " + ToString(c.kernel);
  if (c.transposed) return "transposed conv " + ToString(c.kernel);
  if (c.in_channels < 16) return "first conv " + ToString(c.kernel) + " (" + std::to_string(c.in_channels) + " channel)";
  return "conv " + ToString(c.kernel);
}

// Adds `layer` reading the concatenation of `sources` along channels: one convolution per source
// over its slice of the input channels, summed (no concatenation is written).
Result<Graph::Value> AddLayer(Graph& g, const std::vector<Graph::Value>& sources, const std::vector<int64_t>& source_channels,
                              const ConvLayer& layer, bool head) {
  if (layer.factorized()) {
    TS_ASSIGN_OR_RETURN(Graph::Value v, AddLayer(g, sources, source_channels, layer.tucker_parts[0], false));
    TS_ASSIGN_OR_RETURN(v, AddLayer(g, {v}, {layer.tucker_parts[0].out_channels}, layer.tucker_parts[1], false));
    return AddLayer(g, {v}, {layer.tucker_parts[1].out_channels}, layer.tucker_parts[2], head);
  }
  if (layer.transposed && sources.size() != 1) return Unimplemented("a transposed convolution over a concatenation");
  std::vector<ConvSpec> specs;
  std::vector<torch::Tensor> slices;  // alive until Conv has copied them
  int64_t offset = 0;
  for (size_t i = 0; i < sources.size(); ++i) {
    ConvSpec s;
    s.in_channels = source_channels[i];
    s.out_channels = layer.out_channels;
    s.kernel = layer.kernel;
    s.stride = layer.stride;
    s.padding = layer.padding;
    s.transposed = layer.transposed;
    slices.push_back(sources.size() == 1 ? layer.weight : layer.weight.narrow(1, offset, source_channels[i]).contiguous());
    s.weight = slices.back().data_ptr<float>();
    s.bias = i == 0 && layer.bias.defined() ? layer.bias.data_ptr<float>() : nullptr;
    offset += source_channels[i];
    specs.push_back(s);
  }
  if (offset != layer.in_channels) return Internal(layer.name + ": sources do not add up to its input channels");
  return g.Conv(sources, specs, OpName(layer, head));
}

Status AddNorm(Graph& g, Graph::Value x, const NormLayer& n, double slope) {
  return g.NormLeakyRelu(x, n.weight.defined() ? n.weight.data_ptr<float>() : nullptr,
                         n.bias.defined() ? n.bias.data_ptr<float>() : nullptr, n.eps, slope);
}

}  // namespace

bool PlainConvUNet::EngineApplies(const torch::Tensor& x) const {
  return options_.cpu_engine && options_.fast_paths && !options_.autograd && x.is_cpu() &&
         x.scalar_type() == torch::kFloat32 && dtype() == torch::kFloat32 && x.dim() == 5;
}

Result<std::shared_ptr<EngineGraph>> PlainConvUNet::BuildEngineGraph(const Int3& patch) const {
  auto built = std::make_shared<EngineGraph>(
      EngineGraph{Graph(options_.cpu_bf16 ? cpu_engine::DataType::kBFloat16 : cpu_engine::DataType::kFloat32), {}});
  Graph* g = &built->graph;
  const double slope = config_.negative_slope;
  Graph::Value x = g->Input(config_.input_channels, patch);
  int64_t channels = config_.input_channels;
  std::vector<std::pair<Graph::Value, int64_t>> skips;
  for (const auto& stage : encoder_) {
    for (const auto& b : stage) {
      TS_ASSIGN_OR_RETURN(x, AddLayer(*g, {x}, {channels}, b.conv, false));
      TS_RETURN_IF_ERROR(AddNorm(*g, x, b.norm, slope));
      channels = b.conv.out_channels;
    }
    skips.emplace_back(x, channels);
  }
  skips.pop_back();
  for (size_t d = 0; d < decoder_.size(); ++d) {
    TS_ASSIGN_OR_RETURN(Graph::Value up, AddLayer(*g, {x}, {channels}, transpconvs_[d], false));
    const auto [skip, skip_channels] = skips.back();
    skips.pop_back();
    std::vector<Graph::Value> sources{up, skip};
    std::vector<int64_t> source_channels{transpconvs_[d].out_channels, skip_channels};
    for (const auto& b : decoder_[d]) {
      TS_ASSIGN_OR_RETURN(x, AddLayer(*g, sources, source_channels, b.conv, false));
      TS_RETURN_IF_ERROR(AddNorm(*g, x, b.norm, slope));
      channels = b.conv.out_channels;
      sources = {x};
      source_channels = {channels};
    }
  }
  TS_ASSIGN_OR_RETURN(x, AddLayer(*g, {x}, {channels}, seg_layers_.back(), true));
  TS_RETURN_IF_ERROR(g->Finish(x));
  return built;
}

Result<std::shared_ptr<EngineGraph>> PlainConvUNet::AcquireEngineGraph(const Int3& patch) const {
  Status failed;
  if (auto graph = engine_graphs_.Take(patch, &failed)) return graph;
  TS_RETURN_IF_ERROR(failed);  // built before and failed: not tried again
  auto built = StatusFromExceptions("building the engine graph", [&] { return BuildEngineGraph(patch); });
  if (!built.ok()) engine_graphs_.RecordFailure(patch, built.status());
  return built;
}

Status PlainConvUNet::EngineStatus(const Int3& patch) const {
  TS_RETURN_IF_ERROR(config_.ValidatePatch(patch));
  TS_ASSIGN_OR_RETURN(auto graph, AcquireEngineGraph(patch));
  engine_graphs_.Return(patch, std::move(graph));
  return Status::Ok();
}

torch::Tensor PlainConvUNet::EngineForward(const torch::Tensor& input, OpProfile* profile) const {
  const Int3 patch{input.size(2), input.size(3), input.size(4)};
  auto acquired = AcquireEngineGraph(patch);
  if (!acquired.ok()) return {};
  std::shared_ptr<EngineGraph> graph = std::move(acquired).value();
  const torch::Tensor x = input.contiguous();
  const int64_t n = x.size(0);
  const std::vector<int64_t> shape{n, graph->graph.output_channels(), patch[0], patch[1], patch[2]};
  torch::Tensor& y = graph->logits;
  const bool held = y.defined() && (y.use_count() > 1 || y.storage().use_count() > 1);  // a caller still holds it (or a view)
  if (held || !y.defined() || y.sizes() != shape) {
    y = torch::empty(shape, x.options());
  }
  cpu_engine::StepObserver observer = [&](const std::string& op, double seconds, int64_t macs) { profile->Add(op, seconds, macs); };
  const int64_t in_stride = x[0].numel(), out_stride = y[0].numel();
  for (int64_t i = 0; i < n; ++i) {
    graph->graph.Run(x.data_ptr<float>() + i * in_stride, y.data_ptr<float>() + i * out_stride, profile ? &observer : nullptr);
  }
  torch::Tensor logits = y;
  engine_graphs_.Return(patch, std::move(graph));
  return logits;
}

#else  // no oneDNN in this build

bool PlainConvUNet::EngineApplies(const torch::Tensor&) const { return false; }
Status PlainConvUNet::EngineStatus(const Int3&) const { return Unimplemented("this build has no oneDNN (the CPU engine)"); }
torch::Tensor PlainConvUNet::EngineForward(const torch::Tensor&, OpProfile*) const { return {}; }

#endif

}  // namespace tucker_seg
