#!/usr/bin/env bash
# Fuzz smoke run (CTest test fuzz_smoke): compiles with clang's libFuzzer + ASan + UBSan, into a temporary
# directory (the main build may be g++), four targets:
#   fuzz_gguf, fuzz_safetensors   the model-file parsers (engine/formats), seeded from the committed fixtures;
#   fuzz_front_request            the front's request validation and chat rendering (services/front/
#                                 request_builder.*, the HTTP API's body decoders {openai,anthropic}_api.*,
#                                 engine/tokenizer with the tiny tokenizer fixture);
#   fuzz_worker_request           the worker's request conversion (services/worker/convert.*).
# The request targets need the deltagate.v1 / deltagate.worker.v1 messages: protoc generates them here.
# The targets run two side by side (one per core), in two rounds, DG_FUZZ_SECONDS (45) each.
# Exit 77 (CTest "skipped") when no clang++ with libFuzzer is available.
# The whole step stays within DG_FUZZ_BUDGET seconds (240): when compiling was slow (a loaded machine), the
# fuzzing time shrinks to fit, down to 15 s per target.
# Env: DG_FUZZ_SECONDS, DG_FUZZ_BUDGET, DG_FUZZ_CXX (compiler), DG_FUZZ_KEEP=dir (keep the work dir),
#      DG_FUZZ_ONLY="fuzz_a fuzz_b" (build and run only these targets).
set -euo pipefail
START=$SECONDS
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${DG_FUZZ_SECONDS:-45}
BUDGET=${DG_FUZZ_BUDGET:-240}
CXX=${DG_FUZZ_CXX:-}
if [ -z "$CXX" ]; then
  for c in clang++ clang++-14 clang++-15 clang++-16; do
    if command -v "$c" >/dev/null; then CXX=$c; break; fi
  done
fi
if [ -z "$CXX" ]; then echo "fuzz smoke: no clang++ found, skipping"; exit 77; fi
PROTOC=$(command -v protoc || true)
if [ -z "$PROTOC" ]; then echo "fuzz smoke: protoc is missing (Debian protobuf-compiler, a build dependency)"; exit 1; fi

if [ -n "${DG_FUZZ_KEEP:-}" ]; then
  WORK=$DG_FUZZ_KEEP; mkdir -p "$WORK"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/dg-fuzz.XXXXXX"); trap 'rm -rf "$WORK"' EXIT
fi
echo "fuzz smoke: $CXX, work dir $WORK"

TARGETS=${DG_FUZZ_ONLY:-"fuzz_gguf fuzz_safetensors fuzz_front_request fuzz_worker_request"}
wants() { case " $TARGETS " in *" $1 "*) return 0;; *) return 1;; esac; }

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
# DG_BINARY_DIR: tests/unit/tokenizer/test_util.h names it (for a fixture the fuzzers do not use); a
# constant, so that ccache can reuse the objects.
CXXFLAGS="-std=c++20 -O1 -g -fno-omit-frame-pointer -I$ROOT -I$WORK/gen -DDG_BINARY_DIR=\"unused\" $SAN"
ABSL_LIBS=$(pkg-config --libs absl_status absl_statusor absl_strings absl_str_format 2>/dev/null ||
            echo "-labsl_statusor -labsl_status -labsl_cord -labsl_str_format_internal -labsl_strings -labsl_strings_internal -labsl_int128 -labsl_throw_delegate -labsl_raw_logging_internal -labsl_base -labsl_spinlock_wait")
# The request targets also link protobuf, gRPC's Status, ICU (the tokenizer) and absl's hash tables. The
# system libraries are built with g++; clang links them with the same libstdc++.
REQ_LIBS="$(pkg-config --libs protobuf grpc++ icu-uc absl_flat_hash_map absl_hash absl_status absl_statusor absl_strings absl_str_format 2>/dev/null ||
            echo "-lprotobuf -lgrpc++ -lgrpc -lgpr -licuuc $ABSL_LIBS -labsl_hash -labsl_city -labsl_low_level_hash -labsl_raw_hash_set")"

# The objects go through ccache when there is one (the main build uses it too): a rerun compiles nothing.
CCACHE=$(command -v ccache || true)

probe="$WORK/probe.cpp"
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' > "$probe"
if ! "$CXX" -fsanitize=fuzzer "$probe" -o "$WORK/probe" 2>/dev/null; then
  echo "fuzz smoke: $CXX cannot link -fsanitize=fuzzer (libclang-rt-dev missing?), skipping"; exit 77
fi

# Library objects get coverage instrumentation without libFuzzer's main; compiled two at a time.
mkdir -p "$WORK/obj/formats" "$WORK/obj/req" "$WORK/gen"
sources=()
if wants fuzz_gguf || wants fuzz_safetensors; then
  for f in "$ROOT"/engine/formats/*.cpp; do sources+=("$f formats"); done
fi
if wants fuzz_front_request || wants fuzz_worker_request; then
  "$PROTOC" -I"$ROOT/proto" --cpp_out="$WORK/gen" deltagate/v1/inference.proto deltagate/worker/v1/worker.proto
  for f in "$WORK"/gen/deltagate/v1/inference.pb.cc "$WORK"/gen/deltagate/worker/v1/worker.pb.cc \
           "$ROOT"/services/worker/convert.cpp "$ROOT"/engine/sampling.cpp "$ROOT"/engine/sample_weights.cpp; do
    sources+=("$f req")
  done
  if wants fuzz_front_request; then
    # The tokenizer without gguf_vocab.cpp (reading a vocabulary out of a GGUF: engine/formats' business).
    for f in "$ROOT"/engine/tokenizer/*.cpp "$ROOT"/services/front/{request_builder,openai_api,anthropic_api}.cpp \
             "$ROOT"/services/common/status_http.cpp; do
      [ "$(basename "$f")" = gguf_vocab.cpp ] || sources+=("$f req")
    done
  fi
fi
compile() {  # SOURCE SUBDIR
  local flags="$CXXFLAGS -fsanitize=fuzzer-no-link"
  # Generated protobuf code: plain and unoptimised (its coverage tells the fuzzer nothing, and
  # instrumenting it triples the build time); ASan-instrumented callers work with it as with libprotobuf.
  case $1 in
    *.pb.cc) flags="-std=c++20 -O0 -g0 -I$WORK/gen" ;;
    *sample_weights.cpp) flags="$flags -ffp-contract=off" ;;  # as engine/CMakeLists.txt builds it
  esac
  # From inside the work dir, with it as ccache's base_dir and the directory left out of the hash: the
  # command line ccache sees is the same from one (randomly named) work dir to the next.
  (cd "$WORK" && CCACHE_BASEDIR="$WORK" CCACHE_NOHASHDIR=1 \
     $CCACHE "$CXX" $flags -c "$1" -o "obj/$2/$(basename "$1" | sed -E 's/\.(cpp|cc)$//').o")
}
running=0 failed=0
for s in "${sources[@]}"; do
  # shellcheck disable=SC2086
  compile $s & running=$((running + 1))
  if [ "$running" -ge 2 ]; then wait -n || failed=1; running=$((running - 1)); fi
done
while [ "$running" -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
[ "$failed" = 0 ] || { echo "fuzz smoke: compiling the sources failed"; exit 1; }
objs_for() {
  case $1 in
    fuzz_gguf|fuzz_safetensors) echo "$WORK"/obj/formats/*.o "$ABSL_LIBS" ;;
    fuzz_worker_request) echo "$WORK"/obj/req/inference.pb.o "$WORK"/obj/req/worker.pb.o "$WORK"/obj/req/convert.o \
                              "$WORK"/obj/req/sampling.o "$WORK"/obj/req/sample_weights.o "$REQ_LIBS" ;;
    fuzz_front_request) echo "$WORK"/obj/req/*.o "$REQ_LIBS" ;;
  esac
}

# Link every target first so the time left for fuzzing is known.
link_pids=()
for name in $TARGETS; do
  # shellcheck disable=SC2046
  "$CXX" $CXXFLAGS -fsanitize=fuzzer "$ROOT/tests/fuzz/$name.cpp" $(objs_for "$name") -lpthread \
    -o "$WORK/$name" & link_pids+=($!)
  [ "${#link_pids[@]}" -ge 2 ] && { wait "${link_pids[0]}" || { echo "fuzz smoke: building the fuzz targets failed"; exit 1; }; link_pids=("${link_pids[@]:1}"); }
done
for pid in "${link_pids[@]}"; do wait "$pid" || { echo "fuzz smoke: building the fuzz targets failed"; exit 1; }; done
set -- $TARGETS
rounds=$(( ($# + 1) / 2 ))
left=$(( (BUDGET - (SECONDS - START) - 10) / rounds ))
[ "$left" -lt "$SECS" ] && SECS=$left
[ "$SECS" -lt 15 ] && SECS=15
echo "fuzz smoke: built in $(( SECONDS - START ))s, fuzzing ${SECS}s per target, $rounds round(s) of two"

run_target() {
  local name=$1
  local corpus="$WORK/corpus_$name" bin="$WORK/$name" dict="" seeds=""
  mkdir -p "$corpus"
  case $name in
    fuzz_gguf) seeds=gguf; dict="$ROOT/tests/fuzz/gguf.dict" ;;
    fuzz_safetensors) seeds=safetensors; dict="$ROOT/tests/fuzz/safetensors.dict" ;;
    fuzz_front_request) dict="$ROOT/tests/fuzz/request.dict" ;;
    fuzz_worker_request) dict="$ROOT/tests/fuzz/request.dict" ;;
  esac
  [ -n "$seeds" ] && find "$ROOT/tests/unit/formats/fixtures" -name "*.$seeds" -size -10k -exec cp {} "$corpus/" \;
  # Seeds of structured inputs (tests/fuzz/make_request_seeds.py), and the reproducers of bugs these
  # targets found: in the corpus, so they run first, every time.
  [ -d "$ROOT/tests/fuzz/seeds/$name" ] && cp "$ROOT/tests/fuzz/seeds/$name"/* "$corpus/"
  [ -d "$ROOT/tests/fuzz/regressions/$name" ] && cp "$ROOT/tests/fuzz/regressions/$name"/* "$corpus/" 2>/dev/null
  # -rss_limit_mb: a parser that sizes allocations from hostile counts shows up as an OOM failure.
  "$bin" "$corpus" -dict="$dict" -max_total_time="$SECS" -max_len=8192 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$WORK/crash-$name-" > "$WORK/$name.log" 2>&1
}

status=0
while [ $# -gt 0 ]; do
  pids=()
  run_target "$1" & pids+=($!)
  if [ $# -gt 1 ]; then run_target "$2" & pids+=($!); fi
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  shift $(( $# > 1 ? 2 : 1 ))
done
for name in $TARGETS; do
  echo "=== $name"
  if [ -f "$WORK/$name.log" ]; then
    grep -E "^(stat::|INFO: seed corpus|Done|==[0-9]+==ERROR|SUMMARY|fuzz_.*failed|.*runtime error)" "$WORK/$name.log" | head -20 || true
    [ "$status" = 0 ] || tail -40 "$WORK/$name.log"
  fi
done
ls "$WORK"/crash-* 2>/dev/null && status=1
echo "fuzz smoke: $(( SECONDS - START ))s in all"
exit $status
