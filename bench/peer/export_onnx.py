#!/usr/bin/env python3
"""Exports a tucker-seg model folder (model.json + weights.safetensors) to ONNX with PyTorch.

The network is nnU-Net's PlainConvUNet written again with torch.nn.functional, dense or Tucker-2
factorized exactly as tucker-seg stores it (<layer>.tucker_in / tucker_core / tucker_out), so
ONNX Runtime runs the same convolutions, ranks and shapes as tucker-seg's engine.

    export_onnx.py MODEL_DIR OUT.onnx [--input input.f32]   (writes a seeded random input patch)
"""
import argparse
import json
import pathlib
import struct

import torch
import torch.nn.functional as F


def read_safetensors(path):
    data = pathlib.Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = data[8 + header_len :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {entry['dtype']}, only F32 is read")
        begin, end = entry["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(body[begin:end]), dtype=torch.float32).reshape(entry["shape"])
    return tensors


class PlainConvUNet(torch.nn.Module):
    def __init__(self, arch, weights):
        super().__init__()
        self.arch = arch
        self.w = weights
        self.eps = arch["norm"]["eps"]
        self.slope = arch["nonlin"]["negative_slope"]

    def conv(self, x, name, kernel, stride, transposed=False):
        w = self.w
        bias = w.get(name + ".bias")
        pad = [] if transposed else [(k - 1) // 2 for k in kernel]
        if name + ".tucker_core.weight" in w:
            x = F.conv3d(x, w[name + ".tucker_in.weight"])
            core = w[name + ".tucker_core.weight"]
            x = F.conv_transpose3d(x, core, stride=stride) if transposed else F.conv3d(x, core, stride=stride, padding=pad)
            return F.conv3d(x, w[name + ".tucker_out.weight"], bias)
        if transposed:
            return F.conv_transpose3d(x, w[name + ".weight"], bias, stride=stride)
        return F.conv3d(x, w[name + ".weight"], bias, stride=stride, padding=pad)

    def block(self, x, prefix, kernel, stride):
        x = self.conv(x, prefix + ".conv", kernel, stride)
        x = F.instance_norm(x, weight=self.w.get(prefix + ".norm.weight"), bias=self.w.get(prefix + ".norm.bias"), eps=self.eps)
        return F.leaky_relu(x, self.slope)

    def forward(self, x):
        a = self.arch
        n = len(a["features_per_stage"])
        skips = []
        for s in range(n):
            for i in range(a["n_conv_per_stage"][s]):
                x = self.block(x, f"encoder.stages.{s}.0.convs.{i}", a["kernel_sizes"][s], a["strides"][s] if i == 0 else [1, 1, 1])
            skips.append(x)
        x = skips.pop()
        for d in range(n - 1):
            up = a["strides"][n - 1 - d]
            x = self.conv(x, f"decoder.transpconvs.{d}", up, up, transposed=True)
            x = torch.cat([x, skips.pop()], 1)
            for i in range(a["n_conv_per_stage_decoder"][d]):
                x = self.block(x, f"decoder.stages.{d}.convs.{i}", a["kernel_sizes"][n - 2 - d], [1, 1, 1])
        return self.conv(x, f"decoder.seg_layers.{n - 2}", [1, 1, 1], [1, 1, 1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("out")
    p.add_argument("--input", help="also write the seeded random input patch here (raw float32)")
    args = p.parse_args()
    info = json.loads((pathlib.Path(args.model_dir) / "model.json").read_text())
    net = PlainConvUNet(info["architecture"], read_safetensors(pathlib.Path(args.model_dir) / "weights.safetensors")).eval()
    torch.manual_seed(1)
    x = torch.randn([1, info["architecture"]["input_channels"]] + info["patch_size"])
    if args.input:
        x.numpy().tofile(args.input)
    with torch.no_grad():
        torch.onnx.export(net, x, args.out, opset_version=13, input_names=["x"], output_names=["logits"])


if __name__ == "__main__":
    main()
