#!/usr/bin/env bash
# One prepared check for a GPU machine that has PyTorch with CUDA, CMake, ninja and nvcc but no
# internet and none of our Debian packages. Builds the engine only (-DTUCKER_SEG_ENGINE_ONLY=ON)
# against PyTorch's own LibTorch, then runs bench/device_bench on the GPU: parity with the CPU on
# the conformance and bundled models (fp32 logits within 1e-3, argmax agreement >= 99.9%, a
# whole CT), and seconds per patch of the TotalSegmentator-shaped network's Tucker variants in
# fp32, fp16 and bf16. Exit 0 only when parity holds. Budget: under 8 minutes.
#
# nlohmann-json travels with the working tree: on the development machine run
#   bash scripts/gpu-check.sh --fetch-deps
# which unpacks Debian's nlohmann-json3-dev into third_party/ (git-ignored), then carry
# third_party/ to the GPU machine and run `bash scripts/gpu-check.sh [cuda:N]` there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == --fetch-deps ]]; then
  rm -rf third_party/nlohmann-json && mkdir -p third_party/nlohmann-json
  (cd third_party && apt-get download nlohmann-json3-dev)
  dpkg -x third_party/nlohmann-json3-dev_*.deb third_party/nlohmann-json
  rm -f third_party/nlohmann-json3-dev_*.deb
  echo "unpacked into third_party/nlohmann-json"
  exit 0
fi
device=${1:-cuda:0}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch; print("PyTorch", torch.__version__, "CUDA", torch.version.cuda, "devices", torch.cuda.device_count())'
prefix="$torch_prefix"
if [[ -d third_party/nlohmann-json/usr ]]; then prefix="$prefix;$PWD/third_party/nlohmann-json/usr"; fi

generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
time cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DTUCKER_SEG_ENGINE_ONLY=ON -DTUCKER_SEG_BUILD_TESTS=OFF \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CUDA_ARCHITECTURES=native > build-gpu.log 2>&1 || { tail -40 build-gpu.log; exit 1; }
time cmake --build build-gpu -j "$(nproc)" --target device_bench >> build-gpu.log 2>&1 || { tail -60 build-gpu.log; exit 1; }

# The same binary with the CPU as the device first (a quick sanity check of the build), then the GPU.
build-gpu/bench/device_bench --device cpu --skip-timing | tail -n 3
build-gpu/bench/device_bench --device "$device" --repeats "${REPEATS:-5}"
