#!/usr/bin/env bash
# The README's second command: install dependencies, build, run every test (CTest + GoogleTest),
# run the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer
# (scripts/sanitizer-tests.sh; TUCKER_SEG_SKIP_SANITIZERS=1 skips it), then build and check the
# container image (deploy/test-image.sh; TUCKER_SEG_SKIP_IMAGE_TEST=1 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "${JOBS:-2}"
if [[ "${TUCKER_SEG_SKIP_SANITIZERS:-0}" != 1 ]]; then
  bash scripts/sanitizer-tests.sh
fi
if [[ "${TUCKER_SEG_SKIP_IMAGE_TEST:-0}" != 1 ]]; then
  bash deploy/test-image.sh
fi
