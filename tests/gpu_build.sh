#!/usr/bin/env bash
# Builds, on the CPU machine (nvcc needs no GPU), what tests/gpu_check.sh runs on the GPU machine, for
# sm_90a by default, stripped so the binaries travel with the run (the device tool carries at most
# 64 MiB). Then, on the device: DG_GPU_BUILD=build-gpu bash tests/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${DG_GPU_BUILD:-build-gpu}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDELTAGATE_TESTS=ON -DDELTAGATE_BENCH=ON \
    -DDELTAGATE_CUDA_EMU=OFF -DCMAKE_CUDA_ARCHITECTURES="${DG_CUDA_ARCHS:-90a}" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target test_gpu test_engine deltagate bench_gdn_cuda bench_attention_cuda bench_matmul_cuda
BINS=("$BUILD/tests/test_gpu" "$BUILD/tests/test_engine" "$BUILD/services/deltagate" "$BUILD/tests/bench_gdn_cuda" "$BUILD/tests/bench_attention_cuda" "$BUILD/tests/bench_matmul_cuda")
strip "${BINS[@]}"
du -ch "${BINS[@]}" | tail -1
