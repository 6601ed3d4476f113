#!/usr/bin/env bash
# `deltagate logits --backend cuda-exact` == `--backend cpu-exact` (the oracle and its CUDA twin; max |diff| / std of
# the CPU logits < 1e-3, every position), and the serving `--backend cuda` (8-bit activation blocks, GEMV /
# bf16 GEMM) within its own bound of the oracle (max |diff| / std < 0.25; 0.09-0.12 measured for the quantised
# types, 1e-6 for float weights), for HF
# models (dense, MoE) and GGUF files of every weight type (and a MoE one with q8_0 experts), as a user would
# compare them.
# Runs on a GPU or on the CPU emulation of CUDA (-DDELTAGATE_CUDA_EMU=ON); skips (77) when the binary has
# no CUDA device at all.
# Usage: cuda_logits_test.sh DELTAGATE_BINARY SOURCE_DIR
set -euo pipefail
DG=$1
SRC=$2
FIX=$SRC/tests/golden/fixtures
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PY=/usr/bin/python3

if ! out=$("$DG" logits --backend cuda --model "$FIX/dense/hf" --tokens 1 2>&1 >/dev/null); then
  echo "SKIP: no CUDA backend here: $out"
  exit 77
fi

compare() {  # $1 $2: JSON logits files (cpu, cuda); $3: label; $4: bound on max|diff|/std
  "$PY" - "$1" "$2" "$3" "$4" <<'PYEOF'
import json, sys
import numpy as np
want = np.array(json.load(open(sys.argv[1]))["logits"], dtype=np.float64)
got = np.array(json.load(open(sys.argv[2]))["logits"], dtype=np.float64)
assert got.shape == want.shape, (got.shape, want.shape)
rel = np.abs(got - want).max() / want.std()
ok = np.isfinite(got).all() and rel < float(sys.argv[4])
print(f"  {sys.argv[3]:<34} {got.shape[0]} positions  max|diff|/std = {rel:.2e}  {'ok' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PYEOF
}

check() {  # $1 model path, $2 label, $3 tokens
  "$DG" logits --backend cpu-exact --model "$1" --tokens "$3" --all > "$WORK/cpu.json"
  "$DG" logits --backend cuda-exact --model "$1" --tokens "$3" --all > "$WORK/cuda-exact.json"
  compare "$WORK/cpu.json" "$WORK/cuda-exact.json" "$2, cuda-exact" 1e-3
  "$DG" logits --backend cuda --model "$1" --tokens "$3" --all > "$WORK/cuda.json"
  compare "$WORK/cpu.json" "$WORK/cuda.json" "$2, cuda (serving)" 0.25
}

TOK=5,17,3,99,42,7,250
echo "HF safetensors"
check "$FIX/dense/hf" "dense (bf16/f32 HF)" "$TOK"
check "$FIX/moe/hf" "moe (HF)" "$TOK"
echo "GGUF, every weight type (tiny preset: K-quants need 256-wide rows)"
for t in f32 f16 bf16 q8_0 q4_0 q4_1 q4_k q5_k q6_k; do
  "$DG" make-model --preset tiny --seed 3 --gguf "$WORK/tiny-$t.gguf" --type "$t" 2>/dev/null
  check "$WORK/tiny-$t.gguf" "tiny $t" 1,2,3,4,5
  rm -f "$WORK/tiny-$t.gguf"
done
echo "GGUF, MoE with quantised experts (the serving backend's grouped expert GEMV)"
"$DG" make-model --preset tiny-moe --seed 3 --gguf "$WORK/tiny-moe-q8_0.gguf" --type q8_0 2>/dev/null
check "$WORK/tiny-moe-q8_0.gguf" "tiny-moe q8_0" 1,2,3,4,5
echo "ok"
