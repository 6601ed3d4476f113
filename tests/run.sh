#!/usr/bin/env bash
# The test command (README): installs what it needs, builds what the tests need, runs every test.
# Tests that need a GPU skip with a message when none is present. Usage: tests/run.sh [ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
BUILD=${DG_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDELTAGATE_TESTS=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
cd "$BUILD"
ctest --output-on-failure -j"$(nproc)" "$@"
