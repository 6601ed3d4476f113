#!/usr/bin/env bash
# Plain curl against the front's HTTP API: SSE framing of a streamed chat completion, the other routes'
# answers, and error statuses. Usage: curl_sse.sh BASE_URL API_KEY
set -euo pipefail
base="$1"; key="$2"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
fail() { echo "curl_sse: $*" >&2; exit 1; }
auth=(-H "Authorization: Bearer $key")

# /health and /version need no key; /v1/models does.
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/health")" = 200 ] || fail "/health is not 200"
curl -sf "$base/version" | grep -q '"version"' || fail "/version"
[ "$(curl -s -o "$work/e" -w '%{http_code}' "$base/v1/models")" = 401 ] || fail "/v1/models without a key is not 401"
grep -q '"type":"authentication_error"' "$work/e" || fail "401 body: $(cat "$work/e")"
model=$(curl -sf "${auth[@]}" "$base/v1/models" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')

# Streaming: headers, then events "data: <json>" each followed by a blank line, ending with data: [DONE].
curl -sN -D "$work/h" "${auth[@]}" -H 'Content-Type: application/json' "$base/v1/chat/completions" -d "{
  \"model\": \"$model\", \"stream\": true, \"stream_options\": {\"include_usage\": true}, \"max_tokens\": 5,
  \"temperature\": 0, \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}],
  \"chat_template_kwargs\": {\"enable_thinking\": false}}" > "$work/sse"
grep -qi '^content-type: text/event-stream' "$work/h" || fail "stream content type: $(cat "$work/h")"
python3 - "$work/sse" <<'PY'
import json, sys
raw = open(sys.argv[1], encoding="utf-8").read()
assert raw.endswith("data: [DONE]\n\n"), repr(raw[-80:])
events = raw.split("\n\n")[:-1]
assert len(events) >= 3, events
usage = None
for e in events[:-1]:
    assert e.startswith("data: ") and "\n" not in e, repr(e)
    j = json.loads(e[6:])
    assert j["object"] == "chat.completion.chunk", j
    if j.get("usage"):
        usage = j["usage"]
assert usage and usage["completion_tokens"] == 5 and usage["prompt_tokens"] > 0, usage
print("curl: %d SSE events, usage %s" % (len(events), usage))
PY

# A body large enough that curl sends "Expect: 100-continue" first.
python3 -c 'import json,sys; print(json.dumps({"model": sys.argv[1], "max_tokens": 2, "messages": [{"role": "user", "content": "word " * 2000}]}))' "$model" > "$work/big.json"
code=$(curl -s -o "$work/big.out" -w '%{http_code}' "${auth[@]}" -H 'Content-Type: application/json' -H 'Expect: 100-continue' \
       "$base/v1/chat/completions" --data-binary @"$work/big.json")
[ "$code" = 200 ] || fail "large body: $code $(cat "$work/big.out")"

# Completions with a token-id prompt; tokenize/detokenize round trip.
curl -sf "${auth[@]}" -H 'Content-Type: application/json' "$base/v1/completions" \
  -d "{\"model\": \"$model\", \"prompt\": [9707, 11, 1879], \"max_tokens\": 3, \"ignore_eos\": true}" > "$work/c"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["object"]=="text_completion" and j["usage"]["completion_tokens"]==3 and j["usage"]["prompt_tokens"]==3, j' "$work/c"
ids=$(curl -sf "${auth[@]}" -H 'Content-Type: application/json' "$base/tokenize" -d '{"content": "Hello world"}' |
      python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["tokens"]))')
[ "$ids" = "[9707, 1879]" ] || fail "tokenize 'Hello world' gave $ids"
text=$(curl -sf "${auth[@]}" -H 'Content-Type: application/json' "$base/detokenize" -d "{\"tokens\": $ids}" |
       python3 -c 'import json,sys; print(json.load(sys.stdin)["content"])')
[ "$text" = "Hello world" ] || fail "detokenize gave '$text'"

# Errors: OpenAI-shaped bodies with the right status.
code=$(curl -s -o "$work/e" -w '%{http_code}' "${auth[@]}" -H 'Content-Type: application/json' \
       "$base/v1/chat/completions" -d '{"messages": [{"role":"user","content":"x"}], "response_format": {"type":"json_object"}}')
[ "$code" = 400 ] || fail "response_format json_object: $code"
python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["param"]=="response_format" and "not supported" in e["message"] and e["type"]=="invalid_request_error", e' "$work/e"
code=$(curl -s -o "$work/e" -w '%{http_code}' "${auth[@]}" -H 'Content-Type: application/json' "$base/v1/chat/completions" -d '{bad json')
[ "$code" = 400 ] || fail "bad JSON: $code"
code=$(curl -s -o "$work/e" -w '%{http_code}' "${auth[@]}" "$base/nope")
[ "$code" = 404 ] || fail "unknown route: $code"
code=$(curl -s -o "$work/e" -w '%{http_code}' "${auth[@]}" -H 'Content-Type: application/json' "$base/v1/chat/completions" \
       -d "{\"model\": \"not-$model\", \"messages\": [{\"role\":\"user\",\"content\":\"x\"}]}")
[ "$code" = 404 ] || fail "unknown model: $code $(cat "$work/e")"
# CORS is off without --http-cors-origins: no Access-Control-Allow-Origin for a browser's origin.
curl -s -D "$work/h" -o /dev/null -H 'Origin: http://evil.example' "$base/health"
! grep -qi '^access-control-allow-origin' "$work/h" || fail "CORS header without --http-cors-origins"
echo "curl_sse: ok"
