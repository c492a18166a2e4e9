// PlainConvUNet on the CPU engine: the network's topology written as a cpu_engine::Graph.
#include <algorithm>
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
std::string OpName(const ConvLayer& c) {
  if (EndsWith(c.name, ".tucker_in") || EndsWith(c.name, ".tucker_out")) return "Tucker factor 1x1x1";
  if (EndsWith(c.name, ".tucker_core")) return std::string(c.transposed ? "transposed " : "") + "Tucker core " + ToString(c.kernel);
  if (c.transposed) return "transposed conv " + ToString(c.kernel);
  if (c.in_channels < 16) return "first conv " + ToString(c.kernel) + " (" + std::to_string(c.in_channels) + " channel)";
  return "conv " + ToString(c.kernel);
}

ConvSpec SpecOf(const ConvLayer& layer, const torch::Tensor& weight, const torch::Tensor& bias) {
  ConvSpec s;
  s.in_channels = layer.in_channels;
  s.out_channels = layer.out_channels;
  s.kernel = layer.kernel;
  s.stride = layer.stride;
  s.padding = layer.padding;
  s.transposed = layer.transposed;
  s.weight = weight.data_ptr<float>();
  s.bias = bias.defined() ? bias.data_ptr<float>() : nullptr;
  return s;
}

// Adds the dense `layer` reading the concatenation of `sources` along channels: one convolution
// per source over its slice of the input channels, summed (no concatenation is written).
Result<Graph::Value> AddLayer(Graph& g, const std::vector<Graph::Value>& sources, const std::vector<int64_t>& source_channels,
                              const ConvLayer& layer) {
  if (layer.factorized()) return Internal(layer.name + ": a factorized layer is added part by part");
  if (layer.transposed && sources.size() != 1) return Unimplemented("a transposed convolution over a concatenation");
  std::vector<ConvSpec> specs;
  std::vector<torch::Tensor> slices;  // alive until Conv has copied them
  int64_t offset = 0;
  for (size_t i = 0; i < sources.size(); ++i) {
    slices.push_back(sources.size() == 1 ? layer.weight : layer.weight.narrow(1, offset, source_channels[i]).contiguous());
    ConvSpec s = SpecOf(layer, slices.back(), i == 0 ? layer.bias : torch::Tensor());
    s.in_channels = source_channels[i];
    offset += source_channels[i];
    specs.push_back(s);
  }
  if (offset != layer.in_channels) return Internal(layer.name + ": sources do not add up to its input channels");
  return g.Conv(sources, specs, OpName(layer));
}

// A normalised activation not written yet: y = LeakyReLU(InstanceNorm(expansion(pre))), where
// the expansion is the producing layer's Tucker output factor (null after a dense layer). Without
// a norm, y is `pre` itself (the network's input).
struct Pending {
  Graph::Value pre = -1;
  int64_t pre_channels = 0;
  const ConvLayer* expansion = nullptr;
  const NormLayer* norm = nullptr;
  int64_t channels = 0;  // y's
};

// How a layer reads (its slice of) a value: through a 1x1x1 projection (weight (out, slice): a
// Tucker input factor, or the segmentation head), or, with no weight, the value itself.
struct Reader {
  torch::Tensor weight, bias;
  bool network_output = false;  // the head: its result is the graph's output
  // The channels of what it reads, given the value's `whole` channels.
  int64_t channels(int64_t whole) const { return weight.defined() ? weight.size(0) : whole; }
};

Reader TuckerInputOf(const ConvLayer& layer, int64_t offset, int64_t channels) {
  if (!layer.factorized()) return {};
  const ConvLayer& in = layer.tucker_parts[0];
  return {in.weight.reshape({in.out_channels, in.in_channels}).narrow(1, offset, channels).contiguous(), {}, false};
}

// The segmentation head as one dense projection: a factorized head's three 1x1x1 parts multiply
// out (its many output channels dominate the cost either way).
Reader HeadReader(const ConvLayer& head) {
  Reader r;
  r.network_output = true;
  r.bias = head.factorized() ? head.tucker_parts[2].bias : head.bias;
  if (!head.factorized()) {
    r.weight = head.weight.reshape({head.out_channels, head.in_channels});
    return r;
  }
  const ConvLayer& in = head.tucker_parts[0];
  const ConvLayer& core = head.tucker_parts[1];
  const ConvLayer& out = head.tucker_parts[2];
  r.weight = out.weight.reshape({out.out_channels, out.in_channels})
                 .mm(core.weight.reshape({core.out_channels, core.in_channels}))
                 .mm(in.weight.reshape({in.out_channels, in.in_channels}))
                 .contiguous();
  return r;
}

// Writes what `readers` read of `p`, one value per reader. When every reader projects, one fused
// kernel runs the expansion, the norm, the LeakyReLU and all projections without writing y;
// otherwise y is written (oneDNN's 1x1x1 expansion, the norm in place) and each projection is a
// oneDNN 1x1x1 convolution of it.
Result<std::vector<Graph::Value>> Read(Graph& g, const Pending& p, const std::vector<Reader>& readers, double slope) {
  std::vector<ConvSpec> projections;
  for (const auto& r : readers) {
    ConvSpec s;
    if (r.weight.defined()) {
      s.in_channels = p.channels;
      s.out_channels = r.weight.size(0);
      s.weight = r.weight.data_ptr<float>();
      s.bias = r.bias.defined() ? r.bias.data_ptr<float>() : nullptr;
    }
    projections.push_back(s);
  }
  const bool all_project = std::all_of(readers.begin(), readers.end(), [](const Reader& r) { return r.weight.defined(); });
  const bool head = !readers.empty() && readers.back().network_output;
  const NormLayer* n = p.norm;
  const float* gamma = n && n->weight.defined() ? n->weight.data_ptr<float>() : nullptr;
  const float* beta = n && n->bias.defined() ? n->bias.data_ptr<float>() : nullptr;
  if (n && all_project) {  // an expansion is a Tucker output factor: 1x1x1 (NormProjections checks)
    ConvSpec expansion;
    if (p.expansion) expansion = SpecOf(*p.expansion, p.expansion->weight, p.expansion->bias);
    return g.NormProjections(p.pre, p.expansion ? &expansion : nullptr, gamma, beta, n->eps, slope, projections, head,
                             head ? "norm + leaky relu + segmentation head" : "norm + leaky relu + Tucker factors 1x1x1");
  }
  Graph::Value y = p.pre;
  if (p.expansion) {
    TS_ASSIGN_OR_RETURN(y, AddLayer(g, {p.pre}, {p.pre_channels}, *p.expansion));
  }
  if (n) TS_RETURN_IF_ERROR(g.NormLeakyRelu(y, gamma, beta, n->eps, slope));
  std::vector<Graph::Value> values;
  for (size_t i = 0; i < readers.size(); ++i) {
    if (!readers[i].weight.defined()) {
      values.push_back(y);
      continue;
    }
    TS_ASSIGN_OR_RETURN(Graph::Value v, g.Conv({y}, {projections[i]}, readers[i].network_output ? "segmentation head 1x1x1" : "Tucker factor 1x1x1"));
    values.push_back(v);
  }
  return values;
}

// `layer` after its input has been read (through its Tucker input factor when factorized): the
// core or the dense convolution; its output factor stays pending with the norm.
Result<Pending> ConvAfterRead(Graph& g, Graph::Value in, int64_t in_channels, const ConvLayer& layer, const NormLayer& norm) {
  const ConvLayer& conv = layer.factorized() ? layer.tucker_parts[1] : layer;
  TS_ASSIGN_OR_RETURN(Graph::Value pre, AddLayer(g, {in}, {in_channels}, conv));
  return Pending{pre, conv.out_channels, layer.factorized() ? &layer.tucker_parts[2] : nullptr, &norm, layer.out_channels};
}

// The transposed convolution's last linear piece (its Tucker core, or the whole dense layer) with
// `projection` (r, C_out) applied to its output: the Tucker output factor and the next layer's
// input factor multiply into the core, so the upsampled C-channel tensor is never written.
ConvLayer FoldProjectionIntoTransposed(const ConvLayer& transposed, const torch::Tensor& projection) {
  ConvLayer folded = transposed.factorized() ? transposed.tucker_parts[1] : transposed;
  torch::Tensor m = projection;  // (r, output channels of `folded`)
  torch::Tensor bias = transposed.bias;
  if (transposed.factorized()) {
    const ConvLayer& out = transposed.tucker_parts[2];
    m = projection.mm(out.weight.reshape({out.out_channels, out.in_channels}));
    bias = out.bias;
  }
  folded.weight = torch::einsum("jo,iozyx->ijzyx", {m, folded.weight}).contiguous();  // (in, out, k): the out mode times m
  folded.bias = bias.defined() ? projection.mv(bias).contiguous() : torch::Tensor();
  folded.out_channels = m.size(0);
  return folded;
}

}  // namespace

bool PlainConvUNet::EngineApplies(const torch::Tensor& x) const {
  return options_.cpu_engine && options_.fast_paths && !options_.autograd && x.is_cpu() &&
         x.scalar_type() == torch::kFloat32 && dtype() == torch::kFloat32 && x.dim() == 5;
}

Result<std::shared_ptr<EngineGraph>> PlainConvUNet::BuildEngineGraph(const Int3& patch) const {
  auto built = std::make_shared<EngineGraph>(
      EngineGraph{Graph(options_.cpu_bf16 ? cpu_engine::DataType::kBFloat16 : cpu_engine::DataType::kFloat32), {}});
  Graph& g = built->graph;
  const double slope = config_.negative_slope;
  const Graph::Value input = g.Input(config_.input_channels, patch);
  Pending x{input, config_.input_channels, nullptr, nullptr, config_.input_channels};
  // What each decoder stage reads of its skip: encoder stage s feeds decoder stage S - 2 - s.
  const size_t stages = encoder_.size();
  auto skip_reader = [&](size_t s, int64_t channels) {
    const size_t d = stages - 2 - s;
    return TuckerInputOf(decoder_[d].front().conv, transpconvs_[d].out_channels, channels);
  };
  std::vector<std::pair<Graph::Value, int64_t>> skips;  // what the decoder reads of each (projected or whole)
  for (size_t s = 0; s < stages; ++s) {
    for (size_t b = 0; b < encoder_[s].size(); ++b) {
      const ConvBlock& block = encoder_[s][b];
      std::vector<Reader> readers{TuckerInputOf(block.conv, 0, x.channels)};
      const bool reads_skip = s > 0 && b == 0;  // the previous stage's output is also a skip
      if (reads_skip) readers.push_back(skip_reader(s - 1, x.channels));
      TS_ASSIGN_OR_RETURN(auto read, Read(g, x, readers, slope));
      if (reads_skip) skips.emplace_back(read[1], readers[1].channels(x.channels));
      TS_ASSIGN_OR_RETURN(x, ConvAfterRead(g, read[0], readers[0].channels(x.channels), block.conv, block.norm));
    }
  }
  for (size_t d = 0; d < decoder_.size(); ++d) {
    const ConvLayer& up_layer = transpconvs_[d];
    const Reader up_reader = TuckerInputOf(up_layer, 0, x.channels);
    TS_ASSIGN_OR_RETURN(auto up_read, Read(g, x, {up_reader}, slope));
    const int64_t up_in_channels = up_reader.channels(x.channels);
    const auto [skip, skip_channels] = skips.back();
    skips.pop_back();
    const ConvBlock& first = decoder_[d].front();
    if (first.conv.factorized()) {
      // The skip was read through its slice of this layer's input factor; the upsampling, with
      // the other slice folded in, adds its part into that value.
      const ConvLayer& in = first.conv.tucker_parts[0];
      const torch::Tensor up_slice = in.weight.reshape({in.out_channels, in.in_channels}).narrow(1, 0, up_layer.out_channels);
      const ConvLayer folded = FoldProjectionIntoTransposed(up_layer, up_slice);
      const Graph::Value up_in = up_read[0];
      TS_ASSIGN_OR_RETURN(const Graph::Value sum, g.AccumulateConv(skip, {up_in}, {SpecOf(folded, folded.weight, folded.bias)},
                                                                 "transposed Tucker core " + ToString(folded.kernel)));
      TS_ASSIGN_OR_RETURN(x, ConvAfterRead(g, sum, in.out_channels, first.conv, first.norm));
    } else {
      Graph::Value up = up_read[0];
      if (up_layer.factorized()) {
        TS_ASSIGN_OR_RETURN(up, AddLayer(g, {up}, {up_in_channels}, up_layer.tucker_parts[1]));
        TS_ASSIGN_OR_RETURN(up, AddLayer(g, {up}, {up_layer.tucker_parts[1].out_channels}, up_layer.tucker_parts[2]));
      } else {
        TS_ASSIGN_OR_RETURN(up, AddLayer(g, {up}, {up_in_channels}, up_layer));
      }
      TS_ASSIGN_OR_RETURN(const Graph::Value pre, AddLayer(g, {up, skip}, {up_layer.out_channels, skip_channels}, first.conv));
      x = Pending{pre, first.conv.out_channels, nullptr, &first.norm, first.conv.out_channels};
    }
    for (size_t b = 1; b < decoder_[d].size(); ++b) {
      const ConvBlock& block = decoder_[d][b];
      const Reader reader = TuckerInputOf(block.conv, 0, x.channels);
      TS_ASSIGN_OR_RETURN(auto read, Read(g, x, {reader}, slope));
      TS_ASSIGN_OR_RETURN(x, ConvAfterRead(g, read[0], reader.channels(x.channels), block.conv, block.norm));
    }
  }
  TS_ASSIGN_OR_RETURN(auto logits, Read(g, x, {HeadReader(seg_layers_.back())}, slope));
  TS_RETURN_IF_ERROR(g.Finish(logits[0]));
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
