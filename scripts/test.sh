#!/usr/bin/env bash
# The README's second command: install dependencies, build, run every test (CTest + GoogleTest).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "${JOBS:-2}"
