#!/usr/bin/env python3
"""Writes the seed inputs of fuzz_front_request's HTTP-body modes into tests/fuzz/seeds/fuzz_front_request/
(committed; rerun after changing the target's input layout). Without them libFuzzer rarely gets past
"the body is a JSON object with messages" on its own.

Layout (FuzzedDataProvider takes integers from the end, bytes from the front): the JSON body, then the
model/limit integers the target reads (max_tokens 1000, max_prompt_tokens 0, max_context 500), then the
mode byte (4: OpenAI chat, 5: OpenAI completions, 6: Anthropic messages)."""
import json
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "fuzz_front_request")
TAIL = bytes([0xE7, 0x03, 0x00, 0x00, 0xF4, 0x01])

CHAT = {"model": "tiny", "messages": [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": [{"type": "text", "text": "hello world"}]},
    {"role": "assistant", "content": "", "reasoning_content": "hm",
     "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "ok"}],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
    "tool_choice": "auto", "max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "stop": ["x"], "n": 1,
    "logprobs": True, "top_logprobs": 2, "stream": True, "stream_options": {"include_usage": True},
    "chat_template_kwargs": {"enable_thinking": False}, "seed": 7}
COMPLETION = {"model": "tiny", "prompt": "hello world", "max_tokens": 4, "logprobs": 2, "stop": "\n", "seed": 7,
              "temperature": 0, "echo": False}
COMPLETION_IDS = {"prompt": [1, 2, 3], "max_tokens": 3, "n": 2}
MESSAGES = {"model": "tiny", "max_tokens": 8, "system": [{"type": "text", "text": "be brief"}], "messages": [
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                      {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}],
    "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
    "thinking": {"type": "enabled", "budget_tokens": 100}, "stop_sequences": ["z"], "temperature": 0.2,
    "stream": True}

os.makedirs(OUT, exist_ok=True)
for name, mode, body in [("openai_chat", 4, CHAT), ("openai_completion", 5, COMPLETION),
                         ("openai_completion_ids", 5, COMPLETION_IDS), ("anthropic_messages", 6, MESSAGES)]:
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(json.dumps(body).encode() + TAIL + bytes([mode]))
