#!/usr/bin/env bash
# CTest front_node_client: `deltagate up` (2 workers, built-in tiny model) on a free loopback port, then the
# Node client. Usage: run.sh DELTAGATE_BINARY WORK_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$1"; work="$2"
mkdir -p "$work"
if ! cmp -s "$here/package-lock.json" "$work/package-lock.json" || [ ! -d "$work/node_modules/@grpc/grpc-js" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$work/"
  (cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" up --workers 2 --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 > "$work/up.log" 2>&1 &
up=$!
trap 'kill -TERM $up 2>/dev/null; wait $up 2>/dev/null || true' EXIT
# `up` prints its banner once the workers are healthy (bounded: 120 s).
for _ in $(seq 1 600); do
  grep -q "workers ready" "$work/up.log" && break
  kill -0 $up 2>/dev/null || { cat "$work/up.log"; exit 1; }
  sleep 0.2
done
grep -q "2/2 workers ready" "$work/up.log" || { cat "$work/up.log"; exit 1; }
NODE_PATH="$work/node_modules" node "$here/client.js" "$here/../../proto" "127.0.0.1:$port"
