#!/usr/bin/env bash
# The README's second command: install dependencies, build, run every test (CTest + GoogleTest),
# run the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer
# (scripts/sanitizer-tests.sh; TUCKER_SEG_SKIP_SANITIZERS=1 skips it), fuzz every parser of
# untrusted bytes for 60 s each (scripts/fuzz.sh; TUCKER_SEG_SKIP_FUZZ=1 skips it), then build and
# check the container image (deploy/test-image.sh; TUCKER_SEG_SKIP_IMAGE_TEST=1 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
image_test=$([[ "${TUCKER_SEG_SKIP_IMAGE_TEST:-0}" != 1 ]] && echo yes || echo no)
if [[ $image_test == yes ]]; then
  # The image test's base image is network-bound (debootstrap): made while the code compiles.
  base_log=$(mktemp)
  bash deploy/base-image.sh > "$base_log" 2>&1 &
  base_pid=$!
fi
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "${JOBS:-2}"
if [[ "${TUCKER_SEG_SKIP_SANITIZERS:-0}" != 1 ]]; then
  bash scripts/sanitizer-tests.sh
fi
if [[ "${TUCKER_SEG_SKIP_FUZZ:-0}" != 1 ]]; then
  bash scripts/fuzz.sh 60
fi
if [[ $image_test == yes ]]; then
  wait "$base_pid" || { cat "$base_log"; echo "deploy/base-image.sh failed"; exit 1; }
  bash deploy/test-image.sh
fi
