#!/usr/bin/env bash
# The README's first quick-start command: installs the Debian packages, builds the `deltagate` binary,
# and runs the system on its built-in default: a tiny random Qwen3.5-shaped model on the CPU (or the GPU
# when one is present and the CUDA backend is built). Usage: deploy/quickstart.sh [generate flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
BUILD=${DG_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDELTAGATE_TESTS=OFF >/dev/null
cmake --build "$BUILD" --target deltagate -j"$(nproc)"
DG="$BUILD/services/deltagate"
echo
echo "== deltagate generate (built-in tiny model: 8 layers, 6 Gated DeltaNet + 2 gated attention) =="
"$DG" generate --max-new 24 "$@"
echo
echo "== deltagate logits: the last position's logits as JSON (first values) =="
"$DG" logits --tokens 1,2,3,4,5,6,7,8 | cut -c1-150 | sed "s/$/ .../"
echo
echo "deltagate is built at $DG; try: $DG help"
