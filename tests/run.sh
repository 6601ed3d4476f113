#!/usr/bin/env bash
# The test command (README): installs what it needs, builds what the tests need, runs every test.
# The CUDA backend's tests always run: on a machine with a GPU against the real device (nvcc build, for
# DG_CUDA_ARCHS, default 90a), elsewhere against the CPU emulation of CUDA (-DDELTAGATE_CUDA_EMU=ON:
# the same .cu sources compiled as C++, docs/cuda.md); there nvcc, when present, still compiles the real
# library so the sources keep building for GPUs. DG_CUDA_EMU=ON|OFF overrides the choice.
# Usage: tests/run.sh [ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
BUILD=${DG_BUILD_DIR:-build}
if [ -z "${DG_CUDA_EMU:-}" ]; then
  DG_CUDA_EMU=ON
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then DG_CUDA_EMU=OFF; fi
fi
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDELTAGATE_TESTS=ON \
    -DDELTAGATE_CUDA_EMU="$DG_CUDA_EMU" -DCMAKE_CUDA_ARCHITECTURES="${DG_CUDA_ARCHS:-90a}" >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
cd "$BUILD"
rc=0
ctest --output-on-failure -j"$(nproc)" --output-junit "$PWD/ctest-junit.xml" "$@" || rc=$?
python3 ../tests/cuda_test_count.py "$PWD/ctest-junit.xml" "$DG_CUDA_EMU" || true
exit "$rc"
