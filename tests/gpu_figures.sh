#!/usr/bin/env bash
# Issue 15's performance rows, on the GPU machine, in one call after tests/gpu_build.sh has built and
# carried the binaries (DG_GPU_BUILD, default build-gpu). Writes the models it needs, then prints and
# saves under $OUT:
#   1. the bound: the device's measured copy bandwidth (bench_matmul_cuda, when built);
#   2. 27B Q4_K_M, batch 1: decode tok/s at empty context and after 8K and 32K prompts, prefill tok/s of
#      one 8K prompt, TTFT of one 32K prompt (`deltagate generate`);
#   2b. the same decode with DG_CUDA_GRAPHS=recapture and =0: what replaying the step's graph saves;
#   3. 27B Q4_K_M, 64 concurrent streams at 4K context: aggregate decode (`deltagate up` + `deltagate bench`);
#   4. 35B-A3B Q4_K_M, batch 1: decode tok/s;
#   5. the peer on the same files when DG_PEER_BENCH names a CUDA `llama-bench` carried by hand (never
#      built by this repository): `-p 8192 -n 128` and its depth sweep. llama.cpp refuses a GGUF without a
#      vocabulary: set DG_FIG_TOKENIZER to a Qwen tokenizer.json (carried with the run; the machine has no
#      internet) before the models are written, so they carry it.
# Steps are skipped by name with DG_FIG_SKIP (e.g. "35b peer"). The plumbing runs anywhere:
#   DG_FIG_BACKEND=cpu DG_FIG_DENSE=tiny DG_FIG_MOE=tiny-moe DG_FIG_MOE_TYPE=q8_0 DG_FIG_SCALE=64 bash tests/gpu_figures.sh
# (DG_FIG_SCALE divides every token count, so a CPU finishes in a minute). On the GPU the whole script
# is meant to fit one 10-minute call: writing the two models takes most of it; keep DG_FIG_MODELS on a
# disk that survives between calls of the same session to write them once.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
BUILD=${DG_GPU_BUILD:-build-gpu}
DG="$BUILD/services/deltagate"
BACKEND=${DG_FIG_BACKEND:-cuda}
DENSE=${DG_FIG_DENSE:-27b}
MOE=${DG_FIG_MOE:-35b-a3b}
TYPE=${DG_FIG_TYPE:-q4_k_m}
MOE_TYPE=${DG_FIG_MOE_TYPE:-$TYPE}
SCALE=${DG_FIG_SCALE:-1}
MODELS=${DG_FIG_MODELS:-/tmp/deltagate-models}
SKIP=" ${DG_FIG_SKIP:-} "
mkdir -p "$OUT" "$MODELS"
[ -x "$DG" ] || { echo "no $DG: run tests/gpu_build.sh (or set DG_GPU_BUILD)"; exit 1; }
skipped() { [[ "$SKIP" == *" $1 "* ]]; }
n() { echo $(( $1 / SCALE > 0 ? $1 / SCALE : 1 )); }
# A prompt of $1 token ids spread over [1, vocab): distinct, deterministic, no special tokens.
ids() { seq 0 $(( $1 - 1 )) | awk -v v="$2" 'BEGIN { ORS = "" } { if (NR > 1) print ","; print 1 + ($1 * 7919) % (v - 1) }'; }
vocab_of() { "$DG" generate --backend "$BACKEND" --model "$1" --tokens 1 --max-new 1 2>&1 | sed -n 's/.*vocab \([0-9]*\).*/\1/p' | head -1; }
model() {  # $1 preset, $2 type: writes $MODELS/<preset>-<type>.gguf once
  local f="$MODELS/$1-$2.gguf"
  if [ ! -s "$f" ]; then
    echo "writing $f ..." >&2
    "$DG" make-model --preset "$1" --type "$2" --gguf "$f" ${DG_FIG_TOKENIZER:+--tokenizer "$DG_FIG_TOKENIZER"} > "$OUT/make-model-$1.txt" 2>&1 || { tail -3 "$OUT/make-model-$1.txt" >&2; return 1; }
  fi
  echo "$f"
}
{
  echo "# issue 15 figures: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), backend $BACKEND"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv,noheader
} | tee "$OUT/figures.txt"

if ! skipped bound && [ -x "$BUILD/tests/bench_matmul_cuda" ]; then
  "$BUILD/tests/bench_matmul_cuda" --shape copy 2>&1 | tee "$OUT/bench_copy.txt" | grep -i "bandwidth" | tee -a "$OUT/figures.txt"
fi

if ! skipped 27b; then
  M=$(model "$DENSE" "$TYPE") || exit 1
  V=$(vocab_of "$M")
  for ctx in 1 8192 32768; do
    c=$(n "$ctx")
    echo "## $DENSE $TYPE batch 1: prompt $c tokens, $(n 128) new" | tee -a "$OUT/figures.txt"
    "$DG" generate --backend "$BACKEND" --model "$M" --tokens "$(ids "$c" "$V")" --max-new "$(n 128)" 2>&1 \
      | tee "$OUT/generate-$DENSE-$c.txt" | grep -E "^prefill|rror" | tee -a "$OUT/figures.txt"
  done
fi

# What the decode graph's replay saves: the same decode with every step captured again, and eagerly.
if ! skipped graphs; then
  M=$(model "$DENSE" "$TYPE") || exit 1
  V=$(vocab_of "$M")
  for mode in recapture 0; do
    echo "## $DENSE $TYPE batch 1, DG_CUDA_GRAPHS=$mode (default: replay; recapture: capture each step; 0: eager)" | tee -a "$OUT/figures.txt"
    DG_CUDA_GRAPHS=$mode "$DG" generate --backend "$BACKEND" --model "$M" --tokens "$(ids 1 "$V")" --max-new "$(n 128)" 2>&1 \
      | tee "$OUT/generate-$DENSE-graphs-$mode.txt" | grep -E "^prefill|rror" | tee -a "$OUT/figures.txt"
  done
fi

if ! skipped streams; then
  M=$(model "$DENSE" "$TYPE") || exit 1
  LOG="$OUT/up-$DENSE.txt"
  "$DG" up --model "$M" --workers 1 --backend "$BACKEND" --listen 127.0.0.1:50651 --metrics-listen 127.0.0.1:9651 \
      --http-listen '' > "$LOG" 2>&1 &
  UP=$!
  for _ in $(seq 1 600); do grep -q "stop:" "$LOG" && break; kill -0 $UP 2>/dev/null || break; sleep 0.5; done
  echo "## $DENSE $TYPE: 64 concurrent streams at $(n 4096) tokens of context, $(n 128) new each" | tee -a "$OUT/figures.txt"
  "$DG" bench --grpc 127.0.0.1:50651 --workload sweep --context "$(n 4096)" --concurrency 64 --output "$(n 128)" \
      --requests 64 --seed 15 --no-plots --out "$OUT/streams-$DENSE" 2>&1 | tee "$OUT/streams-$DENSE.txt" \
      | grep -A2 -E "all chats together|failed" | tee -a "$OUT/figures.txt"
  kill -INT $UP; wait $UP
fi

if ! skipped 35b; then
  M=$(model "$MOE" "$MOE_TYPE") || exit 1
  V=$(vocab_of "$M")
  echo "## $MOE $MOE_TYPE batch 1: prompt 1 token, $(n 128) new" | tee -a "$OUT/figures.txt"
  "$DG" generate --backend "$BACKEND" --model "$M" --tokens "$(ids 1 "$V")" --max-new "$(n 128)" 2>&1 \
    | tee "$OUT/generate-$MOE.txt" | grep -E "^prefill|rror" | tee -a "$OUT/figures.txt"
fi

if ! skipped peer && [ -n "${DG_PEER_BENCH:-}" ]; then
  for f in "$MODELS/$DENSE-$TYPE.gguf" "$MODELS/$MOE-$MOE_TYPE.gguf"; do
    p=$(basename "$f" .gguf)
    [ -s "$f" ] || continue
    echo "## peer: $(basename "$DG_PEER_BENCH") on $p" | tee -a "$OUT/figures.txt"
    "$DG_PEER_BENCH" -m "$f" -p "$(n 8192)" -n "$(n 128)" -ngl 99 -r 2 2>&1 | tee "$OUT/peer-$p.txt" | grep -E "pp|tg" | tee -a "$OUT/figures.txt"
    # Decode at depth: llama.cpp's llama-bench takes -d, ik_llama.cpp's -gp <depth,tg>.
    if "$DG_PEER_BENCH" --help 2>&1 | grep -q -- "--n-depth"; then
      depth=(-p 0 -n "$(n 128)" -d "$(n 8192),$(n 32768)")
    else
      depth=(-p 0 -n 0 -gp "$(n 8192),$(n 128)" -gp "$(n 32768),$(n 128)")
    fi
    "$DG_PEER_BENCH" -m "$f" "${depth[@]}" -ngl 99 -r 1 2>&1 | tee "$OUT/peer-depth-$p.txt" | grep -E "tg" | tee -a "$OUT/figures.txt"
  done
fi
echo "figures in $OUT/figures.txt"
