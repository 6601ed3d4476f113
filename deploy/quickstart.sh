#!/usr/bin/env bash
# The README's first quick-start command: installs the Debian packages, builds the `deltagate` binary, and
# runs the system on its built-in default, a tiny random Qwen3.5-shaped model on the CPU (or the GPU when
# one is present): first the engine alone, then a whole cluster (`deltagate up`: a front and two workers
# on loopback) answering a streamed request from `deltagate chat`, then it stops the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
BUILD=${DG_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDELTAGATE_TESTS=OFF \
    -DCMAKE_CUDA_ARCHITECTURES="${DG_CUDA_ARCHS:-90a}" >/dev/null
cmake --build "$BUILD" --target deltagate -j"$(nproc)"
DG="$BUILD/services/deltagate"

echo
echo "== 1. the engine: deltagate generate (built-in tiny model: 8 layers, 6 Gated DeltaNet + 2 gated attention) =="
"$DG" generate --max-new 16

echo
echo "== 2. the cluster: deltagate up (front + 2 workers on 127.0.0.1), then a greedy chat request through it =="
LOG=$(mktemp)
"$DG" up --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 > "$LOG" 2>&1 &
UP=$!
trap 'kill -TERM $UP 2>/dev/null; wait $UP 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 1 120); do
  grep -q "workers ready" "$LOG" && break
  kill -0 $UP 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.5
done
grep "deltagate up:" "$LOG"
FRONT=$(sed -n 's/.*front on \([0-9.]*:[0-9]*\).*/\1/p' "$LOG" | head -1)
[ -n "$FRONT" ] || { cat "$LOG"; exit 1; }
printf '1 2 3 4 5 6 7 8\n\n' | "$DG" chat --front "$FRONT" --max-tokens 16 --temperature 0
echo "(the same 16 tokens as step 1: the cluster runs the same exact engine)"
echo
echo "deltagate is built at $DG; try: $DG help, $DG up, $DG chat"
