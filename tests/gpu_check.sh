#!/usr/bin/env bash
# The GPU machine's one-call check (issue 6): builds for the local GPU, runs the CUDA tests (CUDA vs
# CPU op by op, whole model vs the golden logits), the same under compute-sanitizer, and the CPU/GPU
# generate benchmark on the tiny preset, and the GDN kernel micro-benchmark (bench_gdn_cuda: decode
# per layer-step at batch 1/8/32/64 with GB/s, prefill tokens/s at 512 and 8192 tokens), the attention
# micro-benchmark (bench_attention_cuda: decode GB/s vs copy bandwidth, prefill tokens/s) and the matmul
# micro-benchmark (bench_matmul_cuda: decode GEMV GB/s per weight type at 27B / 35B-A3B shapes against the
# measured copy bandwidth, GEMV vs GEMM per token count, prefill GEMM TFLOP/s). Results go to
# $OUT (or ./gpu-out) for the session to read.
#   device: bash tests/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
BUILD=${DG_GPU_BUILD:-build-gpu}
# Built beforehand on the CPU machine (tests/gpu_build.sh, carried with the run) saves the GPU's minutes;
# otherwise build here for the local GPU.
if [ ! -x "$BUILD/tests/test_gpu" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDELTAGATE_TESTS=ON -DDELTAGATE_BENCH=ON \
      -DDELTAGATE_CUDA_EMU=OFF -DCMAKE_CUDA_ARCHITECTURES="${DG_CUDA_ARCHS:-native}" > "$OUT/cmake.txt" 2>&1 || { tail -30 "$OUT/cmake.txt"; exit 1; }
  cmake --build "$BUILD" -j"$(nproc)" --target test_gpu test_engine deltagate bench_gdn_cuda bench_attention_cuda bench_matmul_cuda > "$OUT/build.txt" 2>&1 || { grep -E "error" "$OUT/build.txt" | head -40; exit 1; }
fi
# The same op suite and model tests CI runs on the emulation, now on the device.
"$BUILD/tests/test_gpu" 2>&1 | tee "$OUT/test_gpu.txt" | tail -40
if command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --error-exitcode 3 "$BUILD/tests/test_gpu" --gtest_filter='CudaModel.*dense_hf_kv_f32*:CudaOps.*' > "$OUT/sanitizer.txt" 2>&1
  echo "compute-sanitizer exit: $?" | tee -a "$OUT/sanitizer.txt"
  # The GDN and attention kernels on the small shapes: out-of-bounds / misaligned accesses (memcheck), shared-memory
  # races (racecheck), barrier misuse (synccheck), reads of uninitialised device memory (initcheck).
  for tool in memcheck racecheck synccheck initcheck; do
    timeout 600 compute-sanitizer --tool "$tool" --error-exitcode 3 "$BUILD/tests/test_gpu" \
      --gtest_filter='*GdnShapes*dkdv:*GdnShapes*wide:*AttentionSplits*g12_q8_0:*AttentionSplits*tiny_q4_0' > "$OUT/sanitizer-gdn-$tool.txt" 2>&1
    echo "compute-sanitizer $tool (GDN) exit: $?" | tee -a "$OUT/sanitizer-gdn-$tool.txt"
  done
  # The matmul paths (GEMV per type, cuBLAS GEMM with partial tiles): out-of-bounds / misaligned vector loads.
  timeout 300 compute-sanitizer --tool memcheck --error-exitcode 3 "$BUILD/tests/test_gpu" \
    --gtest_filter='MatmulPaths.*' > "$OUT/sanitizer-matmul-memcheck.txt" 2>&1
  echo "compute-sanitizer memcheck (matmul) exit: $?" | tee -a "$OUT/sanitizer-matmul-memcheck.txt"
fi
"$BUILD/tests/bench_gdn_cuda" 2>&1 | tee "$OUT/bench_gdn_cuda.txt"
# Attention (docs/cuda.md "Attention"): decode GB/s against the measured copy bandwidth at 27B shapes,
# contexts 1K..32K, batch 1 and 8, every KV type; prefill tokens/s at 512, 2048 and 8192 tokens.
timeout 300 "$BUILD/tests/bench_attention_cuda" 2>&1 | tee "$OUT/bench_attention_cuda.txt"
"$BUILD/tests/bench_matmul_cuda" 2>&1 | tee "$OUT/bench_matmul_cuda.txt"
for be in cpu cuda; do
  "$BUILD/services/deltagate" generate --backend "$be" --max-new 64 --tokens "$(seq -s, 1 256)" 2>&1 | tee "$OUT/generate-$be.txt" | tail -2
done
