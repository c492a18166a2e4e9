#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/) with clang, AddressSanitizer and UndefinedBehaviorSanitizer
# in build-fuzz/, and runs each for SECONDS (default 60; scripts/test.sh runs this) on its corpus
# under fuzz/corpus/. New inputs go to build-fuzz/corpus/, not into the repository; a crash stops
# the run with the input saved as build-fuzz/crash-<harness>-*. The long run: bash scripts/fuzz.sh 1800
# FUZZ_HARNESSES="pickle safetensors" runs a subset (two such runs side by side use both cores).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
read -r -a harnesses <<< "${FUZZ_HARNESSES:-segment_stream pickle safetensors model_json}"

flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=vptr -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DTUCKER_SEG_BUILD_TESTS=OFF -DTUCKER_SEG_BUILD_BENCH=OFF -DTUCKER_SEG_FUZZ=ON > build-fuzz.log 2>&1 || { cat build-fuzz.log; exit 1; }
cmake --build build-fuzz -j "${JOBS:-2}" --target "${harnesses[@]/#/fuzz_}"

export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"  # LibTorch keeps process-lifetime caches
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
for h in "${harnesses[@]}"; do
  mkdir -p "build-fuzz/corpus/$h"
  echo "== fuzz_$h for $seconds s (seed corpus fuzz/corpus/$h: $(ls "fuzz/corpus/$h" | wc -l) inputs)"
  rc=0
  build-fuzz/fuzz/fuzz_$h "build-fuzz/corpus/$h" "fuzz/corpus/$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
    -max_len=1048576 -print_final_stats=1 -artifact_prefix="build-fuzz/crash-$h-" > "build-fuzz/fuzz_$h.log" 2>&1 || rc=$?
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "build-fuzz/fuzz_$h.log" || true
  if [[ $rc -ne 0 ]] || ls build-fuzz/crash-"$h"-* >/dev/null 2>&1; then
    tail -n 60 "build-fuzz/fuzz_$h.log"
    echo "fuzz_$h failed (exit $rc); inputs: $(ls build-fuzz/crash-"$h"-* 2>/dev/null)"
    exit 1
  fi
done
echo "fuzzing passed: ${#harnesses[@]} harnesses, $seconds s each, no crash"
