#!/usr/bin/env bash
# The test command (README): installs what it needs, builds what the tests need, runs every test.
# Tests that need a GPU skip with a message when none is present. The CUDA backend is compiled when
# nvcc exists, for DG_CUDA_ARCHS (default 90a: one architecture keeps CI fast; releases build
# 80;86;89;90a;120). Usage: tests/run.sh [ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
BUILD=${DG_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDELTAGATE_TESTS=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${DG_CUDA_ARCHS:-90a}" >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
cd "$BUILD"
ctest --output-on-failure -j"$(nproc)" "$@"
