#!/usr/bin/env bash
# End-to-end checks of the `deltagate` engine subcommands as a user runs them:
#   logits  on the reference-converted GGUF fixture == the reference's golden logits (1e-3 of their std)
#   convert HF -> GGUF q8_0 loads and runs (exporter equivalence itself: tests/unit/engine/export_test.cpp)
#   generate on a fresh tiny-moe GGUF runs and prints the generated ids
#   bad flags and bad models exit non-zero with a message naming the problem
# Usage: cli_test.sh DELTAGATE_BINARY SOURCE_DIR
set -euo pipefail
DG=$1
SRC=$2
FIX=$SRC/tests/golden/fixtures
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PY=/usr/bin/python3

compare() {  # compare JSON logits file $1 with f32 file $2 (rows x vocab)
  "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
import numpy as np
got = np.array(json.load(open(sys.argv[1]))["logits"], dtype=np.float64)
want = np.fromfile(sys.argv[2], dtype="<f4").astype(np.float64).reshape(got.shape)
rel = np.abs(got - want).max() / want.std()
print(f"  max|diff|/std = {rel:.2e}")
sys.exit(0 if rel < 1e-3 else 1)
PYEOF
}

echo "logits --all on the reference GGUF vs golden"
TOKENS=$("$PY" -c "import json; print(','.join(map(str, json.load(open('$FIX/moe/golden.json'))['cases'][2]['tokens'])))")
"$DG" logits --model "$FIX/moe/model-f16.gguf" --tokens "$TOKENS" --all > "$WORK/l.json"
compare "$WORK/l.json" "$FIX/moe/logits_2.f32"

echo "convert HF -> GGUF (q8_0) loads and runs"
"$DG" convert --model "$FIX/dense/hf" --out "$WORK/dense-q8.gguf" --type q8_0 2>/dev/null
"$DG" logits --model "$WORK/dense-q8.gguf" --tokens 1,2,3 > "$WORK/q8.json"
grep -q '"logits": \[\[' "$WORK/q8.json"

echo "make-model tiny-moe GGUF + generate"
"$DG" make-model --preset tiny-moe --gguf "$WORK/moe.gguf" --type q8_0 2>/dev/null
"$DG" generate --model "$WORK/moe.gguf" --tokens 1,2,3 --max-new 4 > "$WORK/gen.txt" 2>/dev/null
grep -Eq '^generated: [0-9]+ [0-9]+ [0-9]+ [0-9]+$' "$WORK/gen.txt"

echo "errors are clear and non-zero"
expect_fail() {  # expect_fail "message part" cmd...
  local want=$1; shift
  if "$@" > "$WORK/out" 2> "$WORK/err"; then echo "  expected failure: $*"; exit 1; fi
  grep -q -- "$want" "$WORK/err" || { echo "  missing '$want' in:"; cat "$WORK/err"; exit 1; }
}
expect_fail "not a token id" "$DG" logits --model "$FIX/dense/hf" --tokens 1,x
expect_fail "outside the vocabulary" "$DG" logits --model "$FIX/dense/hf" --tokens 1,999999
expect_fail "no such file" "$DG" logits --model "$WORK/missing.gguf" --tokens 1
expect_fail "unknown flag --bogus" "$DG" generate --bogus 1
expect_fail "unknown preset" "$DG" make-model --preset 3b --gguf "$WORK/x.gguf"
expect_fail "multiple of 256" "$DG" convert --model "$FIX/dense/hf" --out "$WORK/x.gguf" --type q4_k
head -c 100 "$FIX/dense/model-f16.gguf" > "$WORK/trunc.gguf"
expect_fail "trunc.gguf" "$DG" logits --model "$WORK/trunc.gguf" --tokens 1
# `up` passes --worker-arg to every worker and stops at once (exit 1) when a worker cannot start.
expect_fail "worker 0 exited during start" timeout 60 "$DG" up --workers 1 --listen 127.0.0.1:0 --worker-arg "--kv-blocks 0"
grep -q -- "--kv-blocks" "$WORK/err" || { echo "  the worker's own message is missing:"; cat "$WORK/err"; exit 1; }
echo "cli_test: all checks passed"
