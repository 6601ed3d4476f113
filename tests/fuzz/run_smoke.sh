#!/usr/bin/env bash
# Fuzz smoke run (CTest test fuzz_smoke): compiles engine/formats/*.cpp and each tests/fuzz/fuzz_*.cpp
# with clang's libFuzzer + ASan + UBSan into a temporary directory (the main build may be g++), seeds a
# corpus from the committed fixtures, and runs the fuzzers side by side for DG_FUZZ_SECONDS (45) each.
# Exit 77 (CTest "skipped") when no clang++ with libFuzzer is available.
# The whole step stays within DG_FUZZ_BUDGET seconds (170): when compiling was slow (a loaded machine), the
# fuzzing time shrinks to fit, down to 15 s per target.
# Env: DG_FUZZ_SECONDS, DG_FUZZ_BUDGET, DG_FUZZ_CXX (compiler), DG_FUZZ_KEEP=dir (keep the work dir).
set -euo pipefail
START=$SECONDS
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${DG_FUZZ_SECONDS:-45}
BUDGET=${DG_FUZZ_BUDGET:-170}
CXX=${DG_FUZZ_CXX:-}
if [ -z "$CXX" ]; then
  for c in clang++ clang++-14 clang++-15 clang++-16; do
    if command -v "$c" >/dev/null; then CXX=$c; break; fi
  done
fi
if [ -z "$CXX" ]; then echo "fuzz smoke: no clang++ found, skipping"; exit 77; fi

if [ -n "${DG_FUZZ_KEEP:-}" ]; then
  WORK=$DG_FUZZ_KEEP; mkdir -p "$WORK"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/dg-fuzz.XXXXXX"); trap 'rm -rf "$WORK"' EXIT
fi
echo "fuzz smoke: $CXX, work dir $WORK"

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CXXFLAGS="-std=c++20 -O1 -g -fno-omit-frame-pointer -I$ROOT $SAN"
ABSL_LIBS=$(pkg-config --libs absl_status absl_statusor absl_strings absl_str_format 2>/dev/null ||
            echo "-labsl_statusor -labsl_status -labsl_cord -labsl_str_format_internal -labsl_strings -labsl_strings_internal -labsl_int128 -labsl_throw_delegate -labsl_raw_logging_internal -labsl_base -labsl_spinlock_wait")

# Library objects get coverage instrumentation without libFuzzer's main; compiled two at a time.
mkdir -p "$WORK/obj"
probe="$WORK/probe.cpp"
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' > "$probe"
if ! "$CXX" -fsanitize=fuzzer "$probe" -o "$WORK/probe" 2>/dev/null; then
  echo "fuzz smoke: $CXX cannot link -fsanitize=fuzzer (libclang-rt-dev missing?), skipping"; exit 77
fi
ls "$ROOT"/engine/formats/*.cpp | xargs -P 2 -I{} sh -c \
  '"$0" $1 -fsanitize=fuzzer-no-link -c "{}" -o "$2/obj/$(basename "{}" .cpp).o"' "$CXX" "$CXXFLAGS" "$WORK"

# Link both targets first so the time left for fuzzing is known.
link_pids=()
for name in fuzz_gguf fuzz_safetensors; do
  "$CXX" $CXXFLAGS -fsanitize=fuzzer "$ROOT/tests/fuzz/$name.cpp" "$WORK"/obj/*.o $ABSL_LIBS -lpthread \
    -o "$WORK/$name" & link_pids+=($!)
done
for pid in "${link_pids[@]}"; do wait "$pid" || { echo "fuzz smoke: building the fuzz targets failed"; exit 1; }; done
left=$(( BUDGET - (SECONDS - START) - 10 ))
[ "$left" -lt "$SECS" ] && SECS=$left
[ "$SECS" -lt 15 ] && SECS=15
echo "fuzz smoke: built in $(( SECONDS - START ))s, fuzzing ${SECS}s per target"

run_target() {
  local name=$1 ext=$2
  local corpus="$WORK/corpus_$name" bin="$WORK/$name"
  mkdir -p "$corpus"
  find "$ROOT/tests/unit/formats/fixtures" -name "*.$ext" -size -10k -exec cp {} "$corpus/" \;
  local dict="$ROOT/tests/fuzz/${ext}.dict"
  # -rss_limit_mb: a parser that sizes allocations from hostile counts shows up as an OOM failure.
  "$bin" "$corpus" -dict="$dict" -max_total_time="$SECS" -max_len=8192 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$WORK/crash-$name-" > "$WORK/$name.log" 2>&1
}

# The two fuzzers run side by side (one per core).
pids=()
run_target fuzz_gguf gguf & pids+=($!)
run_target fuzz_safetensors safetensors & pids+=($!)
status=0
for i in 0 1; do
  if ! wait "${pids[$i]}"; then status=1; fi
done
for name in fuzz_gguf fuzz_safetensors; do
  echo "=== $name"
  if [ -f "$WORK/$name.log" ]; then
    grep -E "^(stat::|INFO: seed corpus|Done|==[0-9]+==ERROR|SUMMARY|.*runtime error)" "$WORK/$name.log" | head -20 || true
    [ "$status" = 0 ] || tail -40 "$WORK/$name.log"
  fi
done
ls "$WORK"/crash-* 2>/dev/null && status=1
echo "fuzz smoke: $(( SECONDS - START ))s in all"
exit $status
