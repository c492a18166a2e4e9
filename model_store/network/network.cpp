#include "model_store/network/network.h"

#include <cmath>
#include <set>

namespace tucker_seg {
namespace {

int64_t Prod(const Int3& v) { return v[0] * v[1] * v[2]; }

std::string ShapeString(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

ConvLayer MakeConv(std::string name, int64_t in, int64_t out, Int3 kernel, Int3 stride, bool transposed) {
  ConvLayer c;
  c.name = std::move(name);
  c.transposed = transposed;
  c.in_channels = in;
  c.out_channels = out;
  c.kernel = kernel;
  c.stride = stride;
  if (!transposed)
    for (int a = 0; a < 3; ++a) c.padding[a] = (kernel[a] - 1) / 2;
  return c;
}

ConvBlock MakeBlock(const UNetConfig& cfg, const std::string& prefix, int64_t in, int64_t out, Int3 kernel, Int3 stride) {
  ConvBlock b;
  b.conv = MakeConv(prefix + ".conv", in, out, kernel, stride, false);
  b.norm.name = prefix + ".norm";
  b.norm.channels = out;
  b.norm.eps = cfg.norm_eps;
  b.norm.affine = cfg.norm_affine;
  return b;
}

struct Topology {
  std::vector<std::vector<ConvBlock>> encoder;
  std::vector<ConvLayer> transpconvs;
  std::vector<std::vector<ConvBlock>> decoder;
  std::vector<ConvLayer> seg_layers;
};

Topology MakeTopology(const UNetConfig& cfg) {
  Topology t;
  const int64_t n = cfg.n_stages();
  int64_t in = cfg.input_channels;
  for (int64_t s = 0; s < n; ++s) {
    std::vector<ConvBlock> stage;
    const int64_t f = cfg.features_per_stage[s];
    for (int64_t i = 0; i < cfg.n_conv_per_stage[s]; ++i) {
      const std::string prefix = "encoder.stages." + std::to_string(s) + ".0.convs." + std::to_string(i);
      stage.push_back(MakeBlock(cfg, prefix, i == 0 ? in : f, f, cfg.kernel_sizes[s], i == 0 ? cfg.strides[s] : Int3{1, 1, 1}));
    }
    t.encoder.push_back(std::move(stage));
    in = f;
  }
  for (int64_t d = 0; d < n - 1; ++d) {
    const int64_t below = cfg.features_per_stage[n - 1 - d];
    const int64_t skip = cfg.features_per_stage[n - 2 - d];
    const Int3 up = cfg.strides[n - 1 - d];
    t.transpconvs.push_back(MakeConv("decoder.transpconvs." + std::to_string(d), below, skip, up, up, true));
    std::vector<ConvBlock> stage;
    for (int64_t i = 0; i < cfg.n_conv_per_stage_decoder[d]; ++i) {
      const std::string prefix = "decoder.stages." + std::to_string(d) + ".convs." + std::to_string(i);
      stage.push_back(MakeBlock(cfg, prefix, i == 0 ? 2 * skip : skip, skip, cfg.kernel_sizes[n - 2 - d], {1, 1, 1}));
    }
    t.decoder.push_back(std::move(stage));
    t.seg_layers.push_back(MakeConv("decoder.seg_layers." + std::to_string(d), skip, cfg.num_classes, {1, 1, 1}, {1, 1, 1}, false));
  }
  return t;
}

std::vector<int64_t> NormShape(const NormLayer& n) { return {n.channels}; }

// Hands out weights by name and remembers which were taken.
class WeightTaker {
 public:
  explicit WeightTaker(const WeightMap& w) : weights_(w) {}
  Status Take(const std::string& key, const std::vector<int64_t>& shape, torch::Tensor* out) {
    auto it = weights_.find(key);
    if (it == weights_.end()) return InvalidArgument("missing tensor '" + key + "' (expected shape " + ShapeString(shape) + ")");
    if (it->second.sizes().vec() != shape) {
      return InvalidArgument("tensor '" + key + "' has shape " + ShapeString(it->second.sizes().vec()) + ", expected " + ShapeString(shape));
    }
    *out = it->second.to(torch::kFloat32).contiguous();
    taken_.insert(key);
    return Status::Ok();
  }
  Status Conv(ConvLayer* c, bool bias) {
    if (bias) TS_RETURN_IF_ERROR(Take(c->name + ".bias", {c->out_channels}, &c->bias));
    const std::string core_key = c->name + ".tucker_core.weight";
    if (!weights_.count(core_key)) return Take(c->name + ".weight", c->Spec()[0].shape, &c->weight);
    // Factorized: the core's shape gives the ranks; the two 1x1x1 factors must agree with them.
    const auto& core = weights_.at(core_key);
    if (core.dim() != 5) return InvalidArgument("tensor '" + core_key + "' must be 5-D");
    const int64_t r_in = c->transposed ? core.size(0) : core.size(1);
    const int64_t r_out = c->transposed ? core.size(1) : core.size(0);
    if (r_in < 1 || r_in > c->in_channels || r_out < 1 || r_out > c->out_channels) {
      return InvalidArgument("tensor '" + core_key + "' has ranks " + std::to_string(r_in) + "/" + std::to_string(r_out) +
                             " outside 1..C_in=" + std::to_string(c->in_channels) + " / 1..C_out=" + std::to_string(c->out_channels));
    }
    torch::Tensor u_in_t, core_w, u_out;
    TS_RETURN_IF_ERROR(Take(c->name + ".tucker_in.weight", {r_in, c->in_channels, 1, 1, 1}, &u_in_t));
    std::vector<int64_t> core_shape = c->transposed ? std::vector<int64_t>{r_in, r_out} : std::vector<int64_t>{r_out, r_in};
    core_shape.insert(core_shape.end(), c->kernel.begin(), c->kernel.end());
    TS_RETURN_IF_ERROR(Take(core_key, core_shape, &core_w));
    TS_RETURN_IF_ERROR(Take(c->name + ".tucker_out.weight", {c->out_channels, r_out, 1, 1, 1}, &u_out));
    const auto u_in = u_in_t.reshape({r_in, c->in_channels}).t();
    const auto u_o = u_out.reshape({c->out_channels, r_out});
    if (c->transposed) c->SetTucker(core_w, u_in, u_o);
    else c->SetTucker(core_w, u_o, u_in);
    return Status::Ok();
  }
  Status Norm(NormLayer* n) {
    if (!n->affine) return Status::Ok();
    TS_RETURN_IF_ERROR(Take(n->name + ".weight", NormShape(*n), &n->weight));
    return Take(n->name + ".bias", NormShape(*n), &n->bias);
  }
  Status CheckAllTaken() const {
    for (const auto& [key, _] : weights_) {
      if (!taken_.count(key)) return InvalidArgument("unexpected tensor '" + key + "' that PlainConvUNet does not use");
    }
    return Status::Ok();
  }

 private:
  const WeightMap& weights_;
  std::set<std::string> taken_;
};

}  // namespace

void ConvLayer::SetTucker(const torch::Tensor& core, const torch::Tensor& u0, const torch::Tensor& u1) {
  const torch::Tensor& u_out = transposed ? u1 : u0;  // (C_out, r_out)
  const torch::Tensor& u_in = transposed ? u0 : u1;   // (C_in, r_in)
  const int64_t r_in = u_in.size(1), r_out = u_out.size(1);
  ConvLayer first = MakeConv(name + ".tucker_in", in_channels, r_in, {1, 1, 1}, {1, 1, 1}, false);
  first.weight = u_in.t().to(torch::kFloat32).reshape({r_in, in_channels, 1, 1, 1}).contiguous();
  ConvLayer middle = MakeConv(name + ".tucker_core", r_in, r_out, kernel, stride, transposed);
  middle.padding = padding;
  middle.weight = core.to(torch::kFloat32).contiguous();  // (r_out, r_in, k) or, transposed, (r_in, r_out, k)
  ConvLayer last = MakeConv(name + ".tucker_out", r_out, out_channels, {1, 1, 1}, {1, 1, 1}, false);
  last.weight = u_out.to(torch::kFloat32).reshape({out_channels, r_out, 1, 1, 1}).contiguous();
  last.bias = bias;
  tucker_parts = {first, middle, last};
  weight = torch::Tensor();
}

void ConvLayer::AppendWeights(WeightMap* out) const {
  if (factorized()) {
    for (const auto& part : tucker_parts) (*out)[part.name + ".weight"] = part.weight;
  } else {
    (*out)[name + ".weight"] = weight;
  }
  if (bias.defined()) (*out)[name + ".bias"] = bias;
}

std::vector<TensorSpec> ConvLayer::Spec() const {
  std::vector<int64_t> shape = transposed ? std::vector<int64_t>{in_channels, out_channels} : std::vector<int64_t>{out_channels, in_channels};
  shape.insert(shape.end(), kernel.begin(), kernel.end());
  return {{name + ".weight", shape}};
}

Int3 ConvLayer::OutputSize(const Int3& in) const {
  Int3 out{};
  for (int a = 0; a < 3; ++a) {
    out[a] = transposed ? (in[a] - 1) * stride[a] + kernel[a] - 2 * padding[a]
                        : (in[a] + 2 * padding[a] - kernel[a]) / stride[a] + 1;
  }
  return out;
}

LayerCost ConvLayer::Cost(const Int3& input) const {
  if (factorized()) {
    LayerCost total;
    Int3 size = input;
    for (const auto& part : tucker_parts) {
      const LayerCost c = part.Cost(size);
      total.parameters += c.parameters;
      total.macs += c.macs;
      size = c.output_size;
    }
    total.name = name;
    total.op = std::string(transposed ? "ConvTranspose3d" : "Conv3d") + " Tucker2";
    total.in_channels = in_channels;
    total.out_channels = out_channels;
    total.kernel = kernel;
    total.stride = stride;
    total.output_size = size;
    total.rank_in = tucker_parts[0].out_channels;
    total.rank_out = tucker_parts[2].out_channels;
    return total;
  }
  LayerCost c;
  c.name = name;
  c.op = transposed ? "ConvTranspose3d" : "Conv3d";
  c.in_channels = in_channels;
  c.out_channels = out_channels;
  c.kernel = kernel;
  c.stride = stride;
  c.output_size = OutputSize(input);
  c.parameters = in_channels * out_channels * Prod(kernel) + (bias.defined() ? out_channels : 0);
  // Every input voxel of a transposed conv meets the whole kernel; every output voxel of a conv does.
  c.macs = (transposed ? Prod(input) : Prod(c.output_size)) * in_channels * out_channels * Prod(kernel);
  return c;
}

std::vector<TensorSpec> PlainConvUNet::StateDictSpec(const UNetConfig& cfg) {
  const Topology t = MakeTopology(cfg);
  std::vector<TensorSpec> out;
  auto conv = [&](const ConvLayer& c) {
    for (auto& s : c.Spec()) out.push_back(s);
    if (cfg.conv_bias) out.push_back({c.name + ".bias", {c.out_channels}});
  };
  auto block = [&](const ConvBlock& b) {
    conv(b.conv);
    if (b.norm.affine) {
      out.push_back({b.norm.name + ".weight", NormShape(b.norm)});
      out.push_back({b.norm.name + ".bias", NormShape(b.norm)});
    }
  };
  for (const auto& stage : t.encoder)
    for (const auto& b : stage) block(b);
  for (size_t d = 0; d < t.decoder.size(); ++d)
    for (const auto& b : t.decoder[d]) block(b);
  for (const auto& c : t.transpconvs) conv(c);
  for (const auto& c : t.seg_layers) {
    for (auto& s : c.Spec()) out.push_back(s);
    out.push_back({c.name + ".bias", {c.out_channels}});  // the heads always carry a bias
  }
  return out;
}

Result<PlainConvUNet> PlainConvUNet::Create(const UNetConfig& cfg, const WeightMap& weights) {
  TS_RETURN_IF_ERROR(cfg.Validate());
  Topology t = MakeTopology(cfg);
  WeightTaker taker(weights);
  for (auto& stage : t.encoder)
    for (auto& b : stage) {
      TS_RETURN_IF_ERROR(taker.Conv(&b.conv, cfg.conv_bias));
      TS_RETURN_IF_ERROR(taker.Norm(&b.norm));
    }
  for (auto& stage : t.decoder)
    for (auto& b : stage) {
      TS_RETURN_IF_ERROR(taker.Conv(&b.conv, cfg.conv_bias));
      TS_RETURN_IF_ERROR(taker.Norm(&b.norm));
    }
  for (auto& c : t.transpconvs) TS_RETURN_IF_ERROR(taker.Conv(&c, cfg.conv_bias));
  for (auto& c : t.seg_layers) TS_RETURN_IF_ERROR(taker.Conv(&c, true));
  TS_RETURN_IF_ERROR(taker.CheckAllTaken());

  PlainConvUNet net;
  net.config_ = cfg;
  net.encoder_ = std::move(t.encoder);
  net.transpconvs_ = std::move(t.transpconvs);
  net.decoder_ = std::move(t.decoder);
  net.seg_layers_ = std::move(t.seg_layers);
  return net;
}

WeightMap PlainConvUNet::RandomWeights(const UNetConfig& cfg, uint64_t seed) {
  torch::manual_seed(seed);
  WeightMap w;
  for (const auto& spec : StateDictSpec(cfg)) {
    torch::Tensor t;
    if (spec.shape.size() == 5) {
      const bool transposed = spec.key.find("transpconvs") != std::string::npos;
      const int64_t fan_in = (transposed ? spec.shape[1] : spec.shape[1]) * spec.shape[2] * spec.shape[3] * spec.shape[4];
      t = torch::randn(spec.shape) * std::sqrt(2.0 / static_cast<double>(fan_in));
    } else if (spec.key.find(".norm.weight") != std::string::npos) {
      t = torch::ones(spec.shape) + 0.1 * torch::randn(spec.shape);
    } else {
      t = 0.01 * torch::randn(spec.shape);
    }
    w.emplace(spec.key, t);
  }
  return w;
}

Status PlainConvUNet::CheckInput(const torch::Tensor& x) const {
  if (x.dim() != 5) return InvalidArgument("input must be 5-D (N, C, Z, Y, X), got " + std::to_string(x.dim()) + "-D");
  if (x.size(1) != config_.input_channels) {
    return InvalidArgument("input has " + std::to_string(x.size(1)) + " channels, the network takes " + std::to_string(config_.input_channels));
  }
  if (x.scalar_type() != dtype()) return InvalidArgument(std::string("input must be ") + c10::toString(dtype()) + " like the weights");
  if (x.device() != device()) return InvalidArgument("input is on " + x.device().str() + ", the network on " + device().str());
  return config_.ValidatePatch({x.size(2), x.size(3), x.size(4)});
}

std::vector<LayerCost> PlainConvUNet::Cost(const Int3& patch) const {
  std::vector<LayerCost> out;
  auto norm_cost = [](const NormLayer& n, const Int3& size) {
    LayerCost c;
    c.name = n.name;
    c.op = "InstanceNorm3d";
    c.in_channels = c.out_channels = n.channels;
    c.output_size = size;
    c.parameters = n.weight.defined() ? 2 * n.channels : 0;
    return c;
  };
  auto block = [&](const ConvBlock& b, Int3 size) {
    out.push_back(b.conv.Cost(size));
    size = out.back().output_size;
    out.push_back(norm_cost(b.norm, size));
    return size;
  };
  Int3 size = patch;
  std::vector<Int3> sizes;
  for (const auto& stage : encoder_) {
    for (const auto& b : stage) size = block(b, size);
    sizes.push_back(size);
  }
  for (size_t d = 0; d < decoder_.size(); ++d) {
    out.push_back(transpconvs_[d].Cost(size));
    size = out.back().output_size;
    for (const auto& b : decoder_[d]) size = block(b, size);
    LayerCost head = seg_layers_[d].Cost(size);
    head.applied = d + 1 == decoder_.size();
    if (!head.applied) head.macs = 0;
    out.push_back(head);
  }
  return out;
}

std::vector<ConvLayer*> PlainConvUNet::MutableConvs() {
  std::vector<ConvLayer*> out;
  for (auto& stage : encoder_)
    for (auto& b : stage) out.push_back(&b.conv);
  for (auto& stage : decoder_)
    for (auto& b : stage) out.push_back(&b.conv);
  for (auto& c : transpconvs_) out.push_back(&c);
  for (auto& c : seg_layers_) out.push_back(&c);
  return out;
}

WeightMap PlainConvUNet::Weights() const {
  WeightMap w;
  auto norm = [&](const NormLayer& n) {
    if (n.weight.defined()) w[n.name + ".weight"] = n.weight;
    if (n.bias.defined()) w[n.name + ".bias"] = n.bias;
  };
  for (const auto& stage : encoder_)
    for (const auto& b : stage) b.conv.AppendWeights(&w), norm(b.norm);
  for (const auto& stage : decoder_)
    for (const auto& b : stage) b.conv.AppendWeights(&w), norm(b.norm);
  for (const auto& c : transpconvs_) c.AppendWeights(&w);
  for (const auto& c : seg_layers_) c.AppendWeights(&w);
  return w;
}

namespace {

void MoveLayer(ConvLayer* c, const torch::TensorOptions& to) {
  if (c->weight.defined()) c->weight = c->weight.to(to);
  if (c->bias.defined()) c->bias = c->bias.to(to);
  for (auto& part : c->tucker_parts) MoveLayer(&part, to);
}

void MoveNorm(NormLayer* n, const torch::TensorOptions& to) {
  if (n->weight.defined()) n->weight = n->weight.to(to);
  if (n->bias.defined()) n->bias = n->bias.to(to);
}

}  // namespace

PlainConvUNet PlainConvUNet::To(const torch::Device& device, torch::ScalarType dtype) const {
  PlainConvUNet out = *this;
  const auto to = torch::TensorOptions().device(device).dtype(dtype);
  for (ConvLayer* c : out.MutableConvs()) MoveLayer(c, to);
  for (auto* stages : {&out.encoder_, &out.decoder_})
    for (auto& stage : *stages)
      for (auto& b : stage) MoveNorm(&b.norm, to);
  return out;
}

torch::Device PlainConvUNet::device() const {
  const ConvLayer& head = seg_layers_.back();
  return (head.factorized() ? head.tucker_parts.front().weight : head.weight).device();
}

torch::ScalarType PlainConvUNet::dtype() const {
  const ConvLayer& head = seg_layers_.back();
  return (head.factorized() ? head.tucker_parts.front().weight : head.weight).scalar_type();
}

int64_t PlainConvUNet::NumParameters() const {
  int64_t total = 0;
  for (const auto& c : Cost({1, 1, 1})) total += c.parameters;
  return total;
}

}  // namespace tucker_seg
