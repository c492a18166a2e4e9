#!/usr/bin/env bash
# The `unit` tests again, built with AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/
# (CI runs it after the main test suite; TUCKER_SEG_SKIP_SANITIZERS=1 skips it there).
# Any sanitizer report fails the test that triggered it.
set -euo pipefail
cd "$(dirname "$0")/.."

sanitizers="-fsanitize=address,undefined -fno-sanitize=vptr -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# -O1: the sanitizer build compiles ~100 LibTorch-heavy objects on 2 cores; -O3 doubles that time.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" -DTUCKER_SEG_BUILD_BENCH=OFF \
  -DCMAKE_CXX_FLAGS="$sanitizers" -DCMAKE_C_FLAGS="$sanitizers" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined"
cmake --build build-asan -j "${JOBS:-2}" --target engine_tests model_tools_tests program_tests serving_tests client_tests
# LibTorch, gRPC and ITK are not instrumented and keep process-lifetime caches: leak reports
# would be theirs, so leak checking is off; every other ASan and UBSan check is on.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# The two static checks (include layering, clang's thread-safety analysis) run none of our code:
# the main test run covers them.
ctest --test-dir build-asan -L unit -E '^(architecture_layering|thread_safety_analysis)$' --output-on-failure -j "${JOBS:-2}"
