// The CPU engine executor: PlainConvUNet's topology written as a cpu_engine::Graph.
#include "model_store/network/cpu_engine_executor.h"

#include <algorithm>
#include <array>
#include <map>
#include <vector>

#include "model_store/cpu_engine/onednn_graph.h"
#include "model_store/network/libtorch_executor.h"
#include "vocabulary/mutex.h"

namespace tucker_seg {
namespace {

using cpu_engine::ConvSpec;
using cpu_engine::Graph;

// A compiled graph and the logits buffer it last filled.
struct EngineGraph {
  Graph graph;
  // The logits of the last call. Handed out as is and refilled by the next call when nobody holds
  // it any more: a fresh 0.7 GB tensor per tile would cost the kernel's page zeroing every time.
  torch::Tensor logits;
};

// Graphs per input shape; a shape that failed to build keeps its failure.
class EngineGraphPool {
 public:
  using Key = std::array<int64_t, 3>;
  // An idle graph for `key`, or null (then `*status` says why the shape has none when it failed before).
  std::shared_ptr<EngineGraph> Take(const Key& key, Status* status) TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return nullptr;
    *status = it->second.failure;
    if (it->second.idle.empty()) return nullptr;
    auto graph = std::move(it->second.idle.back());
    it->second.idle.pop_back();
    return graph;
  }
  void Return(const Key& key, std::shared_ptr<EngineGraph> graph) TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    entries_[key].idle.push_back(std::move(graph));
  }
  // Drops the idle graphs (a shape's failure is kept); graphs taken now are returned as usual.
  void ReleaseIdle() TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    for (auto& [key, entry] : entries_) entry.idle.clear();
  }
  void RecordFailure(const Key& key, const Status& status) TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    entries_[key].failure = status;
  }

 private:
  struct Entry {
    Status failure;
    std::vector<std::shared_ptr<EngineGraph>> idle;
  };
  Mutex mu_;
  std::map<Key, Entry> entries_ TS_GUARDED_BY(mu_);
};

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

// The int8 input scale of `layer`'s input channels [offset, offset + channels): their largest
// calibrated bound over 127; 0 (float32) without int8 or for a layer calibration did not see.
float InputScale(const ActivationBounds* int8, const ConvLayer& layer, int64_t offset, int64_t channels) {
  if (!int8) return 0;
  auto it = int8->find(layer.name);
  if (it == int8->end() || static_cast<int64_t>(it->second.size()) < offset + channels) return 0;
  const float bound = *std::max_element(it->second.begin() + offset, it->second.begin() + offset + channels);
  return bound > 0 ? bound / 127.0f : 0;
}

// Adds the dense `layer` reading the concatenation of `sources` along channels: one convolution
// per source over its slice of the input channels, summed (no concatenation is written).
Result<Graph::Value> AddLayer(Graph& g, const std::vector<Graph::Value>& sources, const std::vector<int64_t>& source_channels,
                              const ConvLayer& layer, const ActivationBounds* int8 = nullptr) {
  if (layer.factorized()) return Internal(layer.name + ": a factorized layer is added part by part");
  if (layer.transposed && sources.size() != 1) return Unimplemented("a transposed convolution over a concatenation");
  std::vector<ConvSpec> specs;
  std::vector<torch::Tensor> slices;  // alive until Conv has copied them
  int64_t offset = 0;
  for (size_t i = 0; i < sources.size(); ++i) {
    slices.push_back(sources.size() == 1 ? layer.weight : layer.weight.narrow(1, offset, source_channels[i]).contiguous());
    ConvSpec s = SpecOf(layer, slices.back(), i == 0 ? layer.bias : torch::Tensor());
    s.in_channels = source_channels[i];
    s.input_scale = InputScale(int8, layer, offset, source_channels[i]);
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
Result<Pending> ConvAfterRead(Graph& g, Graph::Value in, int64_t in_channels, const ConvLayer& layer, const NormLayer& norm,
                              const ActivationBounds* int8) {
  const ConvLayer& conv = layer.factorized() ? layer.tucker_parts[1] : layer;
  TS_ASSIGN_OR_RETURN(Graph::Value pre, AddLayer(g, {in}, {in_channels}, conv, int8));
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

Result<std::shared_ptr<EngineGraph>> BuildEngineGraph(const PlainConvUNet& net, const Int3& patch, bool bf16, const ActivationBounds* int8) {
  auto built = std::make_shared<EngineGraph>(EngineGraph{Graph(bf16 ? cpu_engine::DataType::kBFloat16 : cpu_engine::DataType::kFloat32), {}});
  Graph& g = built->graph;
  const UNetConfig& config = net.config();
  const auto& encoder = net.encoder();
  const auto& decoder = net.decoder();
  const auto& transpconvs = net.transpconvs();
  const double slope = config.negative_slope;
  const Graph::Value input = g.Input(config.input_channels, patch);
  Pending x{input, config.input_channels, nullptr, nullptr, config.input_channels};
  // What each decoder stage reads of its skip: encoder stage s feeds decoder stage S - 2 - s.
  const size_t stages = encoder.size();
  auto skip_reader = [&](size_t s, int64_t channels) {
    const size_t d = stages - 2 - s;
    return TuckerInputOf(decoder[d].front().conv, transpconvs[d].out_channels, channels);
  };
  std::vector<std::pair<Graph::Value, int64_t>> skips;  // what the decoder reads of each (projected or whole)
  for (size_t s = 0; s < stages; ++s) {
    for (size_t b = 0; b < encoder[s].size(); ++b) {
      const ConvBlock& block = encoder[s][b];
      std::vector<Reader> readers{TuckerInputOf(block.conv, 0, x.channels)};
      const bool reads_skip = s > 0 && b == 0;  // the previous stage's output is also a skip
      if (reads_skip) readers.push_back(skip_reader(s - 1, x.channels));
      TS_ASSIGN_OR_RETURN(auto read, Read(g, x, readers, slope));
      if (reads_skip) skips.emplace_back(read[1], readers[1].channels(x.channels));
      TS_ASSIGN_OR_RETURN(x, ConvAfterRead(g, read[0], readers[0].channels(x.channels), block.conv, block.norm, int8));
    }
  }
  for (size_t d = 0; d < decoder.size(); ++d) {
    const ConvLayer& up_layer = transpconvs[d];
    const Reader up_reader = TuckerInputOf(up_layer, 0, x.channels);
    TS_ASSIGN_OR_RETURN(auto up_read, Read(g, x, {up_reader}, slope));
    const int64_t up_in_channels = up_reader.channels(x.channels);
    const auto [skip, skip_channels] = skips.back();
    skips.pop_back();
    const ConvBlock& first = decoder[d].front();
    if (first.conv.factorized()) {
      // The skip was read through its slice of this layer's input factor; the upsampling, with
      // the other slice folded in, adds its part into that value.
      const ConvLayer& in = first.conv.tucker_parts[0];
      const torch::Tensor up_slice = in.weight.reshape({in.out_channels, in.in_channels}).narrow(1, 0, up_layer.out_channels);
      const ConvLayer folded = FoldProjectionIntoTransposed(up_layer, up_slice);
      const Graph::Value up_in = up_read[0];
      TS_ASSIGN_OR_RETURN(const Graph::Value sum, g.AccumulateConv(skip, {up_in}, {SpecOf(folded, folded.weight, folded.bias)},
                                                                 "transposed Tucker core " + ToString(folded.kernel)));
      TS_ASSIGN_OR_RETURN(x, ConvAfterRead(g, sum, in.out_channels, first.conv, first.norm, int8));
    } else {
      Graph::Value up = up_read[0];
      if (up_layer.factorized()) {
        TS_ASSIGN_OR_RETURN(up, AddLayer(g, {up}, {up_in_channels}, up_layer.tucker_parts[1]));
        TS_ASSIGN_OR_RETURN(up, AddLayer(g, {up}, {up_layer.tucker_parts[1].out_channels}, up_layer.tucker_parts[2]));
      } else {
        TS_ASSIGN_OR_RETURN(up, AddLayer(g, {up}, {up_in_channels}, up_layer));
      }
      TS_ASSIGN_OR_RETURN(const Graph::Value pre, AddLayer(g, {up, skip}, {up_layer.out_channels, skip_channels}, first.conv, int8));
      x = Pending{pre, first.conv.out_channels, nullptr, &first.norm, first.conv.out_channels};
    }
    for (size_t b = 1; b < decoder[d].size(); ++b) {
      const ConvBlock& block = decoder[d][b];
      const Reader reader = TuckerInputOf(block.conv, 0, x.channels);
      TS_ASSIGN_OR_RETURN(auto read, Read(g, x, {reader}, slope));
      TS_ASSIGN_OR_RETURN(x, ConvAfterRead(g, read[0], reader.channels(x.channels), block.conv, block.norm, int8));
    }
  }
  TS_ASSIGN_OR_RETURN(auto logits, Read(g, x, {HeadReader(net.seg_layers().back())}, slope));
  TS_RETURN_IF_ERROR(g.Finish(logits[0]));
  return built;
}

class CpuEngineExecutor final : public NetworkExecutor {
 public:
  CpuEngineExecutor(std::shared_ptr<const PlainConvUNet> network, bool bf16, std::shared_ptr<const ActivationBounds> int8)
      : NetworkExecutor(std::move(network)), bf16_(bf16), int8_(std::move(int8)) {}

  std::string name() const override { return int8_ ? "CPU engine (int8)" : bf16_ ? "CPU engine (bfloat16)" : "CPU engine (float32)"; }

  Status Serves(const Int3& patch) const override {
    TS_RETURN_IF_ERROR(network().config().ValidatePatch(patch));
    TS_ASSIGN_OR_RETURN(auto graph, Acquire(patch));
    graphs_.Return(patch, std::move(graph));
    return Status::Ok();
  }

  torch::Tensor Forward(const torch::Tensor& input, OpProfile* profile) const override {
    const Int3 patch{input.size(2), input.size(3), input.size(4)};
    auto acquired = Acquire(patch);
    // An int8 variant never runs as float32 unnoticed.
    TORCH_CHECK(acquired.ok() || !int8_, "int8 inference: ", acquired.status().message());
    if (!acquired.ok()) return LibTorchForward(network(), input, LibTorchOps{}, profile);
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
    graphs_.Return(patch, std::move(graph));
    return logits;
  }

  void ReleaseIdleMemory() const override { graphs_.ReleaseIdle(); }

  void ForwardWeightedSum(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& volume) const override {
    const Int3 patch{x.size(2), x.size(3), x.size(4)};
    auto acquired = Acquire(patch);
    const bool in_place = acquired.ok() && acquired.value()->graph.sums_logits() && x.size(0) == 1 && volume.dim() == 4 &&
                          volume.size(0) == acquired.value()->graph.output_channels() && volume.size(1) == patch[0] &&
                          volume.size(2) == patch[1] && volume.size(3) == patch[2] &&
                          volume.scalar_type() == torch::kFloat32 && volume.stride(3) == 1 && weight.is_contiguous() &&
                          weight.scalar_type() == torch::kFloat32 && weight.numel() == patch[0] * patch[1] * patch[2];
    TORCH_CHECK(acquired.ok() || !int8_, "int8 inference: ", acquired.status().message());
    if (!in_place) {
      if (acquired.ok()) graphs_.Return(patch, std::move(acquired).value());
      return NetworkExecutor::ForwardWeightedSum(x, weight, volume);
    }
    std::shared_ptr<EngineGraph> graph = std::move(acquired).value();
    graph->logits = torch::Tensor();  // a tile of logits an earlier Forward kept is not needed here
    const torch::Tensor input = x.contiguous();
    const cpu_engine::WeightedLogitsSum sum{volume.data_ptr<float>(), weight.data_ptr<float>(), volume.stride(0), volume.stride(1),
                                            volume.stride(2), patch[1], patch[2]};
    graph->graph.RunSummingLogits(input.data_ptr<float>(), sum);
    graphs_.Return(patch, std::move(graph));
  }

 private:
  // An idle graph for this patch from the pool, or a new one; a shape that failed to build once
  // gives its failure again without another attempt.
  Result<std::shared_ptr<EngineGraph>> Acquire(const Int3& patch) const {
    Status failed;
    if (auto graph = graphs_.Take(patch, &failed)) return graph;
    TS_RETURN_IF_ERROR(failed);
    auto built = StatusFromExceptions("building the engine graph", [&] { return BuildEngineGraph(network(), patch, bf16_, int8_.get()); });
    if (!built.ok()) graphs_.RecordFailure(patch, built.status());
    return built;
  }

  bool bf16_;
  std::shared_ptr<const ActivationBounds> int8_;
  mutable EngineGraphPool graphs_;
};

}  // namespace

std::shared_ptr<const NetworkExecutor> MakeCpuEngineExecutor(std::shared_ptr<const PlainConvUNet> network, bool bf16,
                                                              std::shared_ptr<const ActivationBounds> int8) {
  return std::make_shared<CpuEngineExecutor>(std::move(network), bf16, std::move(int8));
}

bool CpuEngineBuilt() { return true; }
bool CpuEngineRunsBFloat16() { return cpu_engine::CpuHasBFloat16(); }

}  // namespace tucker_seg
