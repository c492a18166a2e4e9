// Where the engine runs and in what precision: "cpu", "cuda" (= cuda:0) or "cuda:N", in float32
// or, on a GPU, float16/bfloat16. Parsing checks that this build's LibTorch and this machine
// can run it, so a missing GPU is one clear error at the start, never a crash mid-request.
#pragma once

#include <string>

#include <torch/types.h>

#include "vocabulary/status.h"

namespace tucker_seg {

// CUDA devices LibTorch can use here: 0 with Debian's CPU-only LibTorch or without a driver.
int CudaDeviceCount();

Result<torch::Device> ParseDevice(const std::string& spec);

enum class Precision { kFloat32, kFloat16, kBFloat16 };
Result<Precision> ParsePrecision(const std::string& name);  // "fp32", "fp16", "bf16"
std::string PrecisionName(Precision p);
torch::ScalarType ScalarTypeOf(Precision p);
// Half precision runs on CUDA devices; bf16 also on CPUs with AVX-512 BF16 (the CPU engine's
// activations and weights; its statistics and logits stay float32).
Status CheckPrecision(const torch::Device& device, Precision p);

// Once per process and device before the first network runs: cuDNN picks its fastest
// convolution algorithms for the shapes it sees (nnU-Net's `cudnn.benchmark = True`).
void PrepareDevice(const torch::Device& device);

}  // namespace tucker_seg
