#include "model_store/cpu_engine/onednn_graph.h"

#include <cpuid.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <variant>

#include "model_store/cpu_engine/norm_kernels.h"
#include "model_store/cpu_engine/norm_projection.h"
#include "model_store/cpu_engine/strided_transposed_conv.h"
#include "model_store/cpu_engine/thin_conv.h"
#include "model_store/cpu_engine/tile_math.h"
#include "vocabulary/mapped_buffer.h"

namespace tucker_seg::cpu_engine {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Dt = memory::data_type;

memory::dims Dims5(int64_t channels, const Int3& size) { return {1, channels, size[0], size[1], size[2]}; }

std::string ToText(const Int3& v) { return std::to_string(v[0]) + "x" + std::to_string(v[1]) + "x" + std::to_string(v[2]); }

}  // namespace

struct Graph::Impl {
  struct ValueInfo {
    int64_t channels = 0;
    Int3 size{0, 0, 0};
    Dt type = Dt::f32;
    int buffer = -1;     // index into buffers; -1: the caller's input or output pointer
    int last_use = -1;   // the last step that reads or writes it
    bool ncdhw = false;  // the graph's float32 NCDHW result, written into Run's output
    // float32 in the row layout (z, y, channel, x) of tile_math.h: when only our own kernels that
    // read and write it touch the value (thin convolutions, fused norms), it needs no transposes.
    bool rows = false;
    memory mem;
    int64_t voxels() const { return size[0] * size[1] * size[2]; }
    memory::desc desc() const {
      if (rows) {
        const int64_t row = tile::RowStride(size[2]), plane = size[1] * channels * row;
        return memory::desc(Dims5(channels, size), type, memory::dims{size[0] * plane, row, plane, channels * row, 1});
      }
      return memory::desc(Dims5(channels, size), type, ncdhw ? Tag::ncdhw : Tag::ndhwc);
    }
  };
  // What the graph records as it is built; Finish compiles each into one of the kernels below.
  // A convolution (or transposed one) of one source into dst; `accumulate` adds to dst.
  struct ConvStep {
    Value src = -1, dst = -1;
    ConvSpec spec;
    std::vector<float> weight, bias;  // owned copies until Finish builds the kernel
    bool accumulate = false;
    std::string op;
    int64_t macs = 0;
  };
  struct NormStep {
    Value x = -1;
    std::vector<float> gamma, beta;
    double eps = 1e-5, slope = 0.01;
  };
  struct NormProjectionStep {
    Value x = -1;
    std::vector<Value> outputs;
    int64_t channels = 0;
    std::vector<float> expansion_weight, expansion_bias;  // empty weight: no expansion
    std::vector<float> gamma, beta;
    double eps = 1e-5, slope = 0.01;
    std::vector<std::vector<float>> weights, biases;
    std::string op;
    int64_t macs = 0;
  };
  // A float32 value into its s8 copy (x / scale, rounded, saturated) for int8 convolutions.
  struct QuantizeStep {
    Value src = -1, dst = -1;
    float scale = 1;
  };
  using Step = std::variant<ConvStep, NormStep, NormProjectionStep, QuantizeStep>;

  // The compiled steps, one type per kernel, their jobs complete but for the data pointers of
  // the caller's input and output, which Run sets.
  struct Profiled {
    std::string op;
    int64_t macs = 0;
  };
  struct OnednnConv : Profiled {  // oneDNN's convolution or deconvolution primitive
    dnnl::primitive primitive;
    std::unordered_map<int, memory> args;
    void Run(Impl& im, float*) { primitive.execute(im.stream, args); }
  };
  struct ThinConvKernel : Profiled {  // thin_conv.h
    std::shared_ptr<ThinConv> kernel;
    memory src, dst;
    bool accumulate = false;
    void Run(Impl& im, float*) {
      im.stream.wait();
      kernel->Run(static_cast<const float*>(src.get_data_handle()), static_cast<float*>(dst.get_data_handle()), accumulate);
    }
  };
  struct UpsamplingKernel : Profiled {  // strided_transposed_conv.h
    StridedTransposedConv job;
    std::vector<float> weight, bias;  // what job points at
    memory src, dst;
    void Run(Impl& im, float*) {
      im.stream.wait();
      job.input = src.get_data_handle();
      job.output = dst.get_data_handle();
      RunStridedTransposedConv(job);
    }
  };
  struct NormKernel : Profiled {  // norm_kernels.h
    NormStep step;
    memory x;
    bool bf16 = false;
    int64_t voxels = 0, channels = 0;
    void Run(Impl& im, float*) {
      im.stream.wait();
      InstanceNormLeakyReluChannelsLast(x.get_data_handle(), bf16, voxels, channels, step.gamma.empty() ? nullptr : step.gamma.data(),
                                        step.beta.empty() ? nullptr : step.beta.data(), step.eps, step.slope);
    }
  };
  struct NormProjectionKernel : Profiled {  // norm_projection.h
    NormProjectionStep step;  // owns what job points at
    NormProjection job;
    memory x;
    std::vector<memory> outputs;  // one per output; the NCDHW logits go to Run's `output` instead
    void Run(Impl& im, float* output) {
      im.stream.wait();
      job.input = x.get_data_handle();
      for (size_t i = 0; i < outputs.size(); ++i) {
        job.outputs[i].data = job.outputs[i].ncdhw ? static_cast<void*>(output) : outputs[i].get_data_handle();
        if (job.outputs[i].ncdhw) job.outputs[i].sum = im.logits_sum;
      }
      RunNormProjection(job);
    }
  };
  struct QuantizeKernel : Profiled {  // oneDNN's reorder with a scale
    dnnl::reorder primitive;
    memory src, dst;
    void Run(Impl& im, float*) { primitive.execute(im.stream, {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}}); }
  };
  using Kernel = std::variant<OnednnConv, ThinConvKernel, UpsamplingKernel, NormKernel, NormProjectionKernel, QuantizeKernel>;
  struct InputStep {  // the caller's float32 NCDHW into the input activation
    Value dst = -1;
    dnnl::reorder primitive;
    memory user;
  };

  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  Dt type = Dt::f32;
  std::vector<ValueInfo> values;
  std::vector<Step> steps;     // as built
  std::vector<Kernel> kernels;  // after Finish, one per step
  std::optional<InputStep> input_step;  // unset: the input is read where it lies
  // The result, from its channels-last buffer into the caller's NCDHW logits.
  dnnl::reorder output_reorder;
  memory output_user;
  Value input = -1, output = -1;
  std::vector<MappedBuffer> buffers;
  std::vector<size_t> buffer_sizes;
  bool finished = false;
  const WeightedLogitsSum* logits_sum = nullptr;  // during RunSummingLogits only
  // The s8 copies made so far, by (value, scale); a step that writes a value drops its copies.
  std::map<std::pair<Value, float>, Value> quantized;

  // Creates a (de)convolution; returns oneDNN's name for the kernel it chose.
  template <typename Primitive>
  std::string MakePrimitive(const typename Primitive::desc& d, const dnnl::primitive_attr& attr, memory::desc* weights,
                            dnnl::primitive* out) {
    const typename Primitive::primitive_desc pd(d, attr, engine);
    *weights = pd.weights_desc();
    *out = Primitive(pd);
    return pd.impl_info_str();
  }

  static bool ThinShape(const ConvSpec& c, const Int3& size) {
    return !c.transposed && c.kernel == Int3{3, 3, 3} && c.stride == Int3{1, 1, 1} && c.padding == Int3{1, 1, 1} &&
           ThinConv::Serves(c.in_channels, c.out_channels, size);
  }
  bool IsThin(const ConvStep& s) const {
    return ThinShape(s.spec, values[s.src].size) && values[s.src].type == Dt::f32 && values[s.dst].type == Dt::f32 &&
           !values[s.dst].ncdhw;
  }

  // The s8 copy of `v` for int8 convolutions with this input scale: one quantize step per value
  // and scale until the value is written again.
  Value Quantized(Value v, float scale) {
    const auto key = std::make_pair(v, scale);
    if (auto it = quantized.find(key); it != quantized.end()) return it->second;
    ValueInfo q;
    q.channels = values[v].channels;
    q.size = values[v].size;
    q.type = Dt::s8;
    values.push_back(q);
    const Value dst = static_cast<Value>(values.size() - 1);
    steps.push_back(QuantizeStep{v, dst, scale});
    quantized[key] = dst;
    return dst;
  }
  void Written(Value v) {
    for (auto it = quantized.begin(); it != quantized.end();) it = it->first.first == v ? quantized.erase(it) : std::next(it);
  }

  // The row layout for every value that only thin convolutions and fused norms touch (and whose
  // rows are whole tiles); the graph's input and output stay as the caller has them.
  void ChooseLayouts() {
    std::vector<bool> rows(values.size());
    for (size_t v = 0; v < values.size(); ++v) {
      const ValueInfo& info = values[v];
      rows[v] = info.type == Dt::f32 && !info.ncdhw && info.size[2] % tile::kLanes == 0 && static_cast<Value>(v) != input &&
                static_cast<Value>(v) != output;
    }
    for (const auto& step : steps) {
      if (auto* c = std::get_if<ConvStep>(&step)) {
        if (!IsThin(*c)) rows[c->src] = rows[c->dst] = false;
      } else if (auto* n = std::get_if<NormStep>(&step)) {
        rows[n->x] = false;
      } else if (auto* q = std::get_if<QuantizeStep>(&step)) {
        rows[q->src] = rows[q->dst] = false;
      }
    }
    for (size_t v = 0; v < values.size(); ++v) values[v].rows = rows[v];
  }

  // The kernel for a convolution step, once layouts and buffers are fixed.
  Result<Kernel> CompileConv(ConvStep& s) {
    const ValueInfo& src = values[s.src];
    const ValueInfo& dst = values[s.dst];
    const ConvSpec& c = s.spec;
    if (c.transposed && c.stride == c.kernel && c.padding == Int3{0, 0, 0} && src.type == dst.type) {
      UpsamplingKernel k;
      k.op = s.op;
      k.macs = s.macs;
      k.weight = std::move(s.weight);
      k.bias = std::move(s.bias);
      k.src = src.mem;
      k.dst = dst.mem;
      k.job.bf16 = src.type == Dt::bf16;
      k.job.in_size = src.size;
      k.job.in_channels = c.in_channels;
      k.job.out_channels = c.out_channels;
      k.job.kernel = c.kernel;
      k.job.weight = k.weight.data();  // a vector's buffer stays put when the kernel is moved
      k.job.bias = k.bias.empty() ? nullptr : k.bias.data();
      k.job.accumulate = s.accumulate;
      return Kernel(std::move(k));
    }
    if (IsThin(s)) {
      ThinConvKernel k;
      k.op = s.op;
      k.macs = s.macs;
      k.kernel = std::make_shared<ThinConv>(c.in_channels, c.out_channels, src.size, s.weight.data(),
                                            s.bias.empty() ? nullptr : s.bias.data(), src.rows, dst.rows);
      k.src = src.mem;
      k.dst = dst.mem;
      k.accumulate = s.accumulate;
      return Kernel(std::move(k));
    }
    const memory::dims w_dims{c.out_channels, c.in_channels, c.kernel[0], c.kernel[1], c.kernel[2]};
    const bool int8 = src.type == Dt::s8;
    const memory::desc w_any(w_dims, int8 ? Dt::s8 : type, Tag::any);
    const memory::desc b_md({c.out_channels}, Dt::f32, Tag::a);
    memory::dims strides(c.stride.begin(), c.stride.end()), pad_l(c.padding.begin(), c.padding.end()), pad_r(3);
    for (int a = 0; a < 3; ++a) {
      // The right padding that yields exactly dst's size (nnU-Net pads symmetrically).
      pad_r[a] = c.transposed ? (src.size[a] - 1) * c.stride[a] + c.kernel[a] - c.padding[a] - dst.size[a]
                              : (dst.size[a] - 1) * c.stride[a] + c.kernel[a] - src.size[a] - c.padding[a];
    }
    dnnl::primitive_attr attr;
    if (int8) QuantizeWeights(s, &attr);
    if (s.accumulate) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    const bool with_bias = !s.bias.empty();
    const memory::desc bias_md = with_bias ? b_md : memory::desc();  // a zero descriptor: no bias
    memory::desc weights_md;
    std::string impl;
    OnednnConv k;
    k.op = s.op;
    k.macs = s.macs;
    try {
      if (c.transposed) {
        impl = MakePrimitive<dnnl::deconvolution_forward>(
            {dnnl::prop_kind::forward_inference, dnnl::algorithm::deconvolution_direct, src.desc(), w_any, bias_md, dst.desc(),
             strides, pad_l, pad_r},
            attr, &weights_md, &k.primitive);
      } else {
        impl = MakePrimitive<dnnl::convolution_forward>(
            {dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src.desc(), w_any, bias_md, dst.desc(),
             strides, pad_l, pad_r},
            attr, &weights_md, &k.primitive);
      }
    } catch (const dnnl::error& e) {
      return Unimplemented("oneDNN cannot run " + s.op + " (" + std::to_string(c.in_channels) + "->" + std::to_string(c.out_channels) +
                           " on " + ToText(src.size) + "): " + e.what());
    }
    if (std::string_view(impl).substr(0, 3) == "ref") {
      return Unimplemented("oneDNN has only its reference kernel for " + s.op + " (" + std::to_string(c.in_channels) + "->" +
                           std::to_string(c.out_channels) + " on " + ToText(src.size) + ")");
    }
    // LibTorch's layouts: conv (out, in, k) = oidhw; transposed conv (in, out, k) = iodhw.
    const memory::desc user_md(w_dims, Dt::f32, c.transposed ? Tag::iodhw : Tag::oidhw);
    memory user(user_md, engine, s.weight.data());
    memory weights(weights_md, engine);
    dnnl::reorder(user, weights).execute(stream, user, weights);
    k.args = {{DNNL_ARG_SRC, src.mem}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst.mem}};
    if (with_bias) {
      memory bias(b_md, engine);
      std::copy(s.bias.begin(), s.bias.end(), static_cast<float*>(bias.get_data_handle()));
      k.args.emplace(DNNL_ARG_BIAS, bias);
    }
    stream.wait();
    return Kernel(std::move(k));
  }

  // s8 weights per output channel (max |w| -> 127) for an int8 convolution of (out, in, k)
  // weights: the weights and bias are rescaled in place for oneDNN 2.x, whose int8 convolution
  // computes dst = output_scale[oc] * (sum src_s8 * w_s8 + bias), so the bias is in s32 units.
  void QuantizeWeights(ConvStep& s, dnnl::primitive_attr* attr) const {
    const int64_t out = s.spec.out_channels, per_out = static_cast<int64_t>(s.weight.size()) / out;
    std::vector<float> output_scales(out);
    for (int64_t o = 0; o < out; ++o) {
      float* w = s.weight.data() + o * per_out;
      float largest = 0;
      for (int64_t i = 0; i < per_out; ++i) largest = std::max(largest, std::abs(w[i]));
      const float weight_scale = largest > 0 ? largest / 127.0f : 1.0f;
      for (int64_t i = 0; i < per_out; ++i) w[i] /= weight_scale;
      output_scales[o] = s.spec.input_scale * weight_scale;
      if (!s.bias.empty()) s.bias[o] /= output_scales[o];
    }
    attr->set_output_scales(1 << 1, output_scales);
  }

  Kernel CompileQuantize(const QuantizeStep& s) {
    QuantizeKernel k;
    k.op = "quantize to int8";
    k.src = values[s.src].mem;
    k.dst = values[s.dst].mem;
    dnnl::primitive_attr attr;
    attr.set_output_scales(0, {1.0f / s.scale});
    k.primitive = dnnl::reorder(dnnl::reorder::primitive_desc(engine, k.src.get_desc(), engine, k.dst.get_desc(), attr));
    return k;
  }

  Kernel CompileNorm(NormStep& s) {
    const ValueInfo& v = values[s.x];
    NormKernel k;
    k.op = "instance norm + leaky relu";
    k.step = std::move(s);
    k.x = v.mem;
    k.bf16 = v.type == Dt::bf16;
    k.voxels = v.voxels();
    k.channels = v.channels;
    return k;
  }

  Kernel CompileNormProjection(NormProjectionStep& s) {
    NormProjectionKernel k;
    k.op = s.op;
    k.macs = s.macs;
    k.step = std::move(s);
    const NormProjectionStep& p = k.step;
    const ValueInfo& x = values[p.x];
    k.x = x.mem;
    NormProjection& job = k.job;
    job.bf16 = x.type == Dt::bf16;
    job.input_row_width = x.rows ? x.size[2] : 0;
    job.voxels = x.voxels();
    job.input_channels = x.channels;
    if (!p.expansion_weight.empty()) {
      job.expansion_weight = p.expansion_weight.data();
      job.expansion_bias = p.expansion_bias.empty() ? nullptr : p.expansion_bias.data();
    }
    job.channels = p.channels;
    job.gamma = p.gamma.empty() ? nullptr : p.gamma.data();
    job.beta = p.beta.empty() ? nullptr : p.beta.data();
    job.eps = p.eps;
    job.slope = p.slope;
    for (size_t i = 0; i < p.outputs.size(); ++i) {
      const ValueInfo& out = values[p.outputs[i]];
      job.outputs.push_back({out.channels, p.weights[i].data(), p.biases[i].empty() ? nullptr : p.biases[i].data(), nullptr, out.ncdhw,
                             out.rows ? out.size[2] : 0});
      k.outputs.push_back(out.mem);
    }
    return k;
  }

  // Buffers are reused: a value takes the smallest free buffer that fits once the values
  // before it that nobody reads any more have released theirs.
  Result<Value> AddConv(const std::vector<Value>& sources, const std::vector<ConvSpec>& specs, const std::string& op, Value into);

  void AssignBuffers() {
    std::vector<int> free_buffers;
    auto take = [&](Value v) {
      ValueInfo& info = values[v];
      if (info.buffer >= 0 || info.ncdhw) return;
      const size_t bytes = info.desc().get_size();
      int best = -1;
      for (int b : free_buffers)
        if (buffer_sizes[b] >= bytes && (best < 0 || buffer_sizes[b] < buffer_sizes[best])) best = b;
      if (best < 0) {
        best = static_cast<int>(buffer_sizes.size());
        buffer_sizes.push_back(bytes);
      } else {
        free_buffers.erase(std::find(free_buffers.begin(), free_buffers.end(), best));
      }
      info.buffer = best;
    };
    if (input_step) take(input);
    for (size_t i = 0; i < steps.size(); ++i) {
      std::vector<Value> reads;
      if (auto* c = std::get_if<ConvStep>(&steps[i])) {
        take(c->dst);
        reads = {c->src, c->dst};
      } else if (auto* p = std::get_if<NormProjectionStep>(&steps[i])) {
        for (Value v : p->outputs) take(v);
        reads = p->outputs;
        reads.push_back(p->x);
      } else if (auto* q = std::get_if<QuantizeStep>(&steps[i])) {
        take(q->dst);
        reads = {q->src, q->dst};
      } else {
        reads = {std::get<NormStep>(steps[i]).x};
      }
      for (Value v : reads)
        if (values[v].last_use == static_cast<int>(i) && values[v].buffer >= 0) free_buffers.push_back(values[v].buffer);
    }
    for (size_t bytes : buffer_sizes) buffers.push_back(MapPopulatedBuffer(bytes));
    for (auto& v : values) {
      v.mem = memory(v.desc(), engine, v.buffer >= 0 ? buffers[v.buffer].get() : DNNL_MEMORY_NONE);
    }
  }
};

Graph::Graph(DataType type) : impl_(std::make_unique<Impl>()) { impl_->type = type == DataType::kBFloat16 ? Dt::bf16 : Dt::f32; }
Graph::~Graph() = default;
Graph::Graph(Graph&&) noexcept = default;
Graph& Graph::operator=(Graph&&) noexcept = default;

Graph::Value Graph::Input(int64_t channels, const Int3& size) {
  Impl::ValueInfo v;
  v.channels = channels;
  v.size = size;
  v.type = impl_->type;
  impl_->values.push_back(v);
  impl_->input = static_cast<Value>(impl_->values.size() - 1);
  // One float32 channel in NCDHW is already channels-last: the input is read where it lies.
  if (channels != 1 || impl_->type != Dt::f32) {
    impl_->input_step.emplace();
    impl_->input_step->dst = impl_->input;
  } else {
    impl_->values.back().type = Dt::f32;
  }
  return impl_->input;
}

Result<Graph::Value> Graph::Conv(const std::vector<Value>& sources, const std::vector<ConvSpec>& specs, const std::string& op) {
  return impl_->AddConv(sources, specs, op, -1);
}

Result<Graph::Value> Graph::AccumulateConv(Value into, const std::vector<Value>& sources, const std::vector<ConvSpec>& specs,
                                           const std::string& op) {
  if (into < 0 || into >= static_cast<Value>(impl_->values.size())) return InvalidArgument(op + ": unknown value to add into");
  return impl_->AddConv(sources, specs, op, into);
}

Result<Graph::Value> Graph::Impl::AddConv(const std::vector<Value>& sources, const std::vector<ConvSpec>& specs, const std::string& op,
                                          Value into) {
  if (sources.empty() || sources.size() != specs.size()) return InvalidArgument(op + ": one spec per source is needed");
  Int3 out_size{0, 0, 0};
  for (size_t i = 0; i < sources.size(); ++i) {
    if (sources[i] < 0 || sources[i] >= static_cast<Value>(values.size())) return InvalidArgument(op + ": unknown source");
    const auto& src = values[sources[i]];
    const ConvSpec& c = specs[i];
    if (c.in_channels != src.channels) {
      return InvalidArgument(op + ": source has " + std::to_string(src.channels) + " channels, the convolution takes " + std::to_string(c.in_channels));
    }
    if (c.out_channels != specs[0].out_channels) return InvalidArgument(op + ": every source must produce the same channels");
    if (i > 0 && c.bias) return InvalidArgument(op + ": only the first source's convolution may carry the bias");
    Int3 size{};
    for (int a = 0; a < 3; ++a) {
      size[a] = c.transposed ? (src.size[a] - 1) * c.stride[a] + c.kernel[a] - 2 * c.padding[a]
                             : (src.size[a] + 2 * c.padding[a] - c.kernel[a]) / c.stride[a] + 1;
      if (size[a] < 1) return InvalidArgument(op + ": output would be empty for input " + ToText(src.size));
    }
    if (i == 0) out_size = size;
    if (size != out_size) return InvalidArgument(op + ": sources give different output sizes");
  }
  for (const ConvSpec& c : specs) {
    if (c.input_scale > 0 && type != Dt::f32) return InvalidArgument(op + ": int8 convolutions need a float32 graph");
    if (c.input_scale < 0 || !std::isfinite(c.input_scale)) return InvalidArgument(op + ": input_scale must be finite and >= 0");
  }
  Value dst = into;
  if (into >= 0) {
    const auto& target = values[into];
    if (target.channels != specs[0].out_channels || target.size != out_size || target.ncdhw) {
      return InvalidArgument(op + ": the value to add into has another shape than the convolution's output");
    }
  } else {
    ValueInfo out;
    out.channels = specs[0].out_channels;
    out.size = out_size;
    out.type = type;
    values.push_back(out);
    dst = static_cast<Value>(values.size() - 1);
  }
  for (size_t i = 0; i < sources.size(); ++i) {
    ConvStep s;
    s.src = sources[i];
    s.dst = dst;
    s.spec = specs[i];
    s.op = op;
    const bool int8 = specs[i].input_scale > 0 && !specs[i].transposed && !ThinShape(specs[i], values[sources[i]].size);
    if (int8) {
      s.src = Quantized(sources[i], specs[i].input_scale);
      s.op = op + " (int8)";
    }
    const int64_t weights = specs[i].macs_per_voxel();
    s.weight.assign(specs[i].weight, specs[i].weight + weights);
    if (specs[i].bias) s.bias.assign(specs[i].bias, specs[i].bias + specs[i].out_channels);
    s.spec.weight = s.spec.bias = nullptr;
    s.accumulate = i > 0 || into >= 0;
    const auto& src = values[sources[i]];
    s.macs = weights * (specs[i].transposed ? src.voxels() : values[dst].voxels());
    steps.push_back(std::move(s));
  }
  Written(dst);
  return dst;
}

Status Graph::NormLeakyRelu(Value x, const float* gamma, const float* beta, double eps, double slope) {
  if (x < 0 || x >= static_cast<Value>(impl_->values.size())) return InvalidArgument("instance norm: unknown value");
  if (slope < 0 || slope > 1) return InvalidArgument("leaky relu slope must be in [0, 1]");
  Impl::NormStep s;
  s.x = x;
  const int64_t c = impl_->values[x].channels;
  if (gamma) s.gamma.assign(gamma, gamma + c);
  if (beta) s.beta.assign(beta, beta + c);
  s.eps = eps;
  s.slope = slope;
  impl_->steps.push_back(std::move(s));
  impl_->Written(x);
  return Status::Ok();
}

Result<std::vector<Graph::Value>> Graph::NormProjections(Value x, const ConvSpec* expansion, const float* gamma, const float* beta,
                                                         double eps, double slope, const std::vector<ConvSpec>& projections,
                                                         bool last_is_output, const std::string& op) {
  auto& im = *impl_;
  if (x < 0 || x >= static_cast<Value>(im.values.size()) || im.values[x].ncdhw) return InvalidArgument(op + ": unknown value");
  if (slope < 0 || slope > 1) return InvalidArgument("leaky relu slope must be in [0, 1]");
  if (projections.empty()) return InvalidArgument(op + ": no projection reads the normalised value");
  auto is_1x1 = [](const ConvSpec& c) {
    return !c.transposed && c.kernel == Int3{1, 1, 1} && c.stride == Int3{1, 1, 1} && c.padding == Int3{0, 0, 0} && c.weight;
  };
  const Impl::ValueInfo src = im.values[x];  // a copy: values grows below
  Impl::NormProjectionStep s;
  s.x = x;
  s.channels = src.channels;
  if (expansion) {
    if (!is_1x1(*expansion) || expansion->in_channels != src.channels) {
      return InvalidArgument(op + ": the expansion must be a 1x1x1 convolution of the value's " + std::to_string(src.channels) + " channels");
    }
    s.channels = expansion->out_channels;
    s.expansion_weight.assign(expansion->weight, expansion->weight + expansion->macs_per_voxel());
    if (expansion->bias) s.expansion_bias.assign(expansion->bias, expansion->bias + s.channels);
  }
  if (gamma) s.gamma.assign(gamma, gamma + s.channels);
  if (beta) s.beta.assign(beta, beta + s.channels);
  s.eps = eps;
  s.slope = slope;
  s.op = op;
  s.macs = src.voxels() * (expansion ? expansion->macs_per_voxel() : 0);  // the statistics come from x's moments
  for (size_t i = 0; i < projections.size(); ++i) {
    const ConvSpec& c = projections[i];
    if (!is_1x1(c) || c.in_channels != s.channels) {
      return InvalidArgument(op + ": projection " + std::to_string(i) + " must be a 1x1x1 convolution of " + std::to_string(s.channels) + " channels");
    }
    s.weights.emplace_back(c.weight, c.weight + c.macs_per_voxel());
    s.biases.push_back(c.bias ? std::vector<float>(c.bias, c.bias + c.out_channels) : std::vector<float>());
    s.macs += src.voxels() * c.macs_per_voxel();
    Impl::ValueInfo out;
    out.channels = c.out_channels;
    out.size = src.size;
    out.type = im.type;
    if (last_is_output && i + 1 == projections.size()) {
      out.type = Dt::f32;
      out.ncdhw = true;
    }
    im.values.push_back(out);
    s.outputs.push_back(static_cast<Value>(im.values.size() - 1));
  }
  std::vector<Value> outputs = s.outputs;
  im.steps.push_back(std::move(s));
  return outputs;
}

Status Graph::Finish(Value output) {
  auto& im = *impl_;
  if (im.finished) return FailedPrecondition("graph already finished");
  if (output < 0 || output >= static_cast<Value>(im.values.size()) || output == im.input) return InvalidArgument("graph output must be a computed value");
  for (size_t v = 0; v < im.values.size(); ++v) {
    if (im.values[v].ncdhw && static_cast<Value>(v) != output) return InvalidArgument("only the graph's output can be written as NCDHW");
  }
  im.output = output;
  im.values[output].type = Dt::f32;
  for (size_t i = 0; i < im.steps.size(); ++i) {
    const int step = static_cast<int>(i);
    std::visit([&](auto& s) {
      using S = std::decay_t<decltype(s)>;
      if constexpr (std::is_same_v<S, Impl::ConvStep>) {
        im.values[s.src].last_use = step;
        im.values[s.dst].last_use = step;
      } else if constexpr (std::is_same_v<S, Impl::NormProjectionStep>) {
        im.values[s.x].last_use = step;
        for (Value v : s.outputs) im.values[v].last_use = step;
      } else if constexpr (std::is_same_v<S, Impl::QuantizeStep>) {
        im.values[s.src].last_use = step;
        im.values[s.dst].last_use = step;
      } else {
        im.values[s.x].last_use = step;
      }
    }, im.steps[i]);
  }
  im.ChooseLayouts();
  im.AssignBuffers();
  for (auto& step : im.steps) {
    if (auto* c = std::get_if<Impl::ConvStep>(&step)) {
      TS_ASSIGN_OR_RETURN(Impl::Kernel k, im.CompileConv(*c));
      im.kernels.push_back(std::move(k));
    } else if (auto* n = std::get_if<Impl::NormStep>(&step)) {
      im.kernels.push_back(im.CompileNorm(*n));
    } else if (auto* q = std::get_if<Impl::QuantizeStep>(&step)) {
      im.kernels.push_back(im.CompileQuantize(*q));
    } else {
      im.kernels.push_back(im.CompileNormProjection(std::get<Impl::NormProjectionStep>(step)));
    }
  }
  im.steps.clear();  // compiled: their weights now live in the kernels
  if (!im.values[output].ncdhw) {
    const auto& v = im.values[output];
    im.output_user = memory(memory::desc(Dims5(v.channels, v.size), Dt::f32, Tag::ncdhw), im.engine, DNNL_MEMORY_NONE);
    im.output_reorder = dnnl::reorder(v.mem, im.output_user);
  }
  if (im.input_step) {
    const auto& v = im.values[im.input];
    im.input_step->user = memory(memory::desc(Dims5(v.channels, v.size), Dt::f32, Tag::ncdhw), im.engine, DNNL_MEMORY_NONE);
    im.input_step->primitive = dnnl::reorder(im.input_step->user, v.mem);
  }
  im.finished = true;
  return Status::Ok();
}

int64_t Graph::output_channels() const { return impl_->values[impl_->output].channels; }
Int3 Graph::output_size() const { return impl_->values[impl_->output].size; }
int64_t Graph::buffer_bytes() const {
  int64_t total = 0;
  for (size_t b : impl_->buffer_sizes) total += static_cast<int64_t>(b);
  return total;
}

bool Graph::sums_logits() const { return impl_->values[impl_->output].ncdhw; }

void Graph::RunSummingLogits(const float* input, const WeightedLogitsSum& sum, const StepObserver* observer) {
  impl_->logits_sum = &sum;
  Run(input, nullptr, observer);
  impl_->logits_sum = nullptr;
}

void Graph::Run(const float* input, float* output, const StepObserver* observer) {
  auto& im = *impl_;
  using Clock = std::chrono::steady_clock;
  if (im.input_step) {
    const auto start = Clock::now();
    im.input_step->user.set_data_handle(const_cast<float*>(input));
    im.input_step->primitive.execute(im.stream, {{DNNL_ARG_FROM, im.input_step->user}, {DNNL_ARG_TO, im.values[im.input].mem}});
    if (observer) {
      im.stream.wait();
      (*observer)("input reorder", std::chrono::duration<double>(Clock::now() - start).count(), 0);
    }
  } else {
    im.values[im.input].mem.set_data_handle(const_cast<float*>(input));
  }
  for (auto& kernel : im.kernels) {
    const auto start = Clock::now();
    std::visit([&](auto& k) { k.Run(im, output); }, kernel);
    if (observer) {
      im.stream.wait();
      const auto& profiled = std::visit([](const auto& k) -> const Impl::Profiled& { return k; }, kernel);
      (*observer)(profiled.op, std::chrono::duration<double>(Clock::now() - start).count(), profiled.macs);
    }
  }
  if (im.values[im.output].ncdhw) return;  // written in place by its step
  const auto start = Clock::now();
  im.output_user.set_data_handle(output);
  im.output_reorder.execute(im.stream, {{DNNL_ARG_FROM, im.values[im.output].mem}, {DNNL_ARG_TO, im.output_user}});
  im.stream.wait();
  if (observer) (*observer)("logits to NCDHW", std::chrono::duration<double>(Clock::now() - start).count(), 0);
}

bool CpuHasBFloat16() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return false;
  return (eax >> 5) & 1u;  // CPUID.(EAX=7,ECX=1):EAX bit 5 = AVX512_BF16
}

}  // namespace tucker_seg::cpu_engine
