// The front's HTTP API through clients nobody here wrote: the official `openai` and `@anthropic-ai/sdk` npm
// packages. Usage: node clients.mjs BASE_URL API_KEY WORKER_METRICS_URL FRONT_METRICS_URL
// The model is the tiny-text one (random weights): tests check shapes, counts and plumbing, not words.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const [base, key, workerMetrics, frontMetrics] = process.argv.slice(2);
const openai = new OpenAI({baseURL: `${base}/v1`, apiKey: key, maxRetries: 0, timeout: 120000});
const anthropic = new Anthropic({baseURL: base, apiKey: key, maxRetries: 0, timeout: 120000});

async function gauge(url, name) {
  const text = await (await fetch(url)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  assert.ok(line, `${name} not in ${url}`);
  return Number(line.split(' ').pop());
}
async function waitGauge(url, name, want) {
  let v;
  for (let i = 0; i < 200; i++) {
    v = await gauge(url, name);
    if (v === want) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(v, want, `${name} stayed at ${v}`);
}

const tests = [];
const test = (name, fn) => tests.push([name, fn]);

let model;
test('models.list', async () => {
  const list = await openai.models.list();
  assert.equal(list.data.length, 1);
  model = list.data[0].id;
  assert.equal(list.data[0].object, 'model');
});

const hello = [{role: 'user', content: 'Say hello.'}];
const noThink = {chat_template_kwargs: {enable_thinking: false}};

test('chat, not streamed', async () => {
  const r = await openai.chat.completions.create({model, messages: hello, max_tokens: 8, temperature: 0, seed: 1, ...noThink});
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(['stop', 'length'].includes(c.finish_reason), c.finish_reason);
  assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 8, r.usage);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.equal(typeof r.usage.prompt_tokens_details.cached_tokens, 'number');
  assert.ok(r.timings && r.timings.predicted_n === r.usage.completion_tokens, JSON.stringify(r.timings));
});

test('chat, streamed, equals the whole answer (greedy)', async () => {
  const args = {model, messages: hello, max_tokens: 8, temperature: 0, ...noThink};
  const whole = await openai.chat.completions.create(args);
  const stream = await openai.chat.completions.create({...args, stream: true, stream_options: {include_usage: true}});
  let text = '', usage = null, finish = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) {
      text += ch.delta.content ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.ok(chunks >= 3);
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.ok(usage && usage.completion_tokens === whole.usage.completion_tokens, JSON.stringify(usage));
});

test('reasoning_content and reasoning with thinking on', async () => {
  const r = await openai.chat.completions.create({model, messages: hello, max_tokens: 6, temperature: 0,
                                                  chat_template_kwargs: {enable_thinking: true}});
  const m = r.choices[0].message;
  // The random model never closes </think> in 6 tokens: everything is reasoning.
  assert.ok(m.reasoning_content && m.reasoning_content.length > 0, JSON.stringify(m));
  assert.equal(m.reasoning, m.reasoning_content);
  assert.equal(r.usage.completion_tokens_details.reasoning_tokens, r.usage.completion_tokens);
});

test('n = 3, logprobs with top_logprobs', async () => {
  const r = await openai.chat.completions.create({model, messages: hello, max_tokens: 4, n: 3, logprobs: true,
                                                  top_logprobs: 2, ignore_eos: true, ...noThink});
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  for (const c of r.choices) {
    assert.equal(c.logprobs.content.length, 4);
    for (const e of c.logprobs.content) {
      assert.equal(typeof e.token, 'string');
      assert.ok(e.logprob <= 0);
      assert.equal(e.top_logprobs.length, 2);
    }
  }
  assert.equal(r.usage.completion_tokens, 12);
});

test('second turn reuses the first: cached_tokens', async () => {
  const sys = {role: 'system', content: 'You are a terse assistant. '.repeat(8)};
  const turn1 = [sys, {role: 'user', content: 'What is two plus two?'}];
  const r1 = await openai.chat.completions.create({model, messages: turn1, max_tokens: 6, temperature: 0, ...noThink});
  const turn2 = [...turn1, {role: 'assistant', content: r1.choices[0].message.content},
                 {role: 'user', content: 'And three plus three?'}];
  const r2 = await openai.chat.completions.create({model, messages: turn2, max_tokens: 6, temperature: 0, ...noThink});
  const cached = r2.usage.prompt_tokens_details.cached_tokens;
  console.log(`  turn 1 prompt ${r1.usage.prompt_tokens}, turn 2 prompt ${r2.usage.prompt_tokens}, cached ${cached}`);
  assert.ok(cached >= r1.usage.prompt_tokens, `cached ${cached} < turn 1's prompt ${r1.usage.prompt_tokens}`);
});

test('tool definitions and a tool-call round trip in the history', async () => {
  const tools = [{type: 'function', function: {name: 'get_weather', description: 'Weather for a city',
                  parameters: {type: 'object', properties: {city: {type: 'string'}}, required: ['city']}}}];
  const messages = [
    {role: 'user', content: 'Weather in Paris?'},
    {role: 'assistant', content: null,
     tool_calls: [{id: 'call_1', type: 'function', function: {name: 'get_weather', arguments: '{"city":"Paris"}'}}]},
    {role: 'tool', tool_call_id: 'call_1', content: '{"temp_c": 21}'},
  ];
  const r = await openai.chat.completions.create({model, messages, tools, max_tokens: 4, ...noThink});
  assert.equal(r.choices.length, 1);
  // The template saw the call and its result: the rendered prompt holds both (via /tokenize, with pieces).
  const tok = await (await fetch(`${base}/tokenize`, {method: 'POST', headers: {Authorization: `Bearer ${key}`},
                                                       body: JSON.stringify({messages, tools, with_pieces: true})})).json();
  const text = tok.tokens.map((t) => t.piece).join('');
  assert.ok(text.includes('<tool_call>') && text.includes('<function=get_weather>') && text.includes('Paris'), text);
  assert.ok(text.includes('<tool_response>') && text.includes('temp_c'), text);
  assert.ok(text.includes('get_weather') && text.includes('Weather for a city'), text);
  // Forcing a call needs constrained decoding, which this server does not have: a clear 400.
  await assert.rejects(openai.chat.completions.create({model, messages, tools, tool_choice: 'required'}),
                       (e) => e instanceof OpenAI.BadRequestError && e.param === 'tool_choice');
});

test('bad requests: OpenAI error bodies', async () => {
  await assert.rejects(openai.chat.completions.create({model, messages: hello, max_tokens: -1}), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal(e.status, 400);
    assert.equal(e.error.type, 'invalid_request_error');
    assert.equal(e.param, 'max_tokens');
    assert.match(e.message, /max_tokens/);
    return true;
  });
  await assert.rejects(openai.chat.completions.create({model, messages: hello, response_format: {type: 'json_object'}}),
                       (e) => e instanceof OpenAI.BadRequestError && /not supported/.test(e.message));
  await assert.rejects(openai.chat.completions.create({model, messages: hello, n: 100000}),
                       (e) => e instanceof OpenAI.BadRequestError && /max-fanout/.test(e.message));
  await assert.rejects(openai.chat.completions.create({model: 'gpt-nope', messages: hello}),
                       (e) => e instanceof OpenAI.NotFoundError);
  const wrong = new OpenAI({baseURL: `${base}/v1`, apiKey: 'wrong', maxRetries: 0});
  await assert.rejects(wrong.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
});

test('completions: text and token-id prompts', async () => {
  const a = await openai.completions.create({model, prompt: 'Once upon a time', max_tokens: 5, ignore_eos: true});
  assert.equal(a.object, 'text_completion');
  assert.equal(a.usage.completion_tokens, 5);
  const b = await openai.completions.create({model, prompt: [9707, 11, 1879], max_tokens: 3, ignore_eos: true, stream: true});
  let n = 0;
  for await (const c of b) n += c.choices.length && c.choices[0].text !== undefined ? 1 : 0;
  assert.ok(n >= 1);
});

test('aborting a stream cancels the worker request', async () => {
  const controller = new AbortController();
  const stream = await openai.chat.completions.create(
      {model, messages: hello, max_tokens: 4000, ignore_eos: true, stream: true, ...noThink},
      {signal: controller.signal});
  let chunks = 0, sawRunning = false;
  // Depending on the version, the SDK's iterator ends or throws an abort error once the signal fires.
  try {
    for await (const _ of stream) {
      if (++chunks === 3) {
        sawRunning = (await gauge(workerMetrics, 'deltagate_num_requests_running')) === 1;
        controller.abort();
      }
    }
  } catch (e) {
    assert.ok(e.name === 'AbortError' || e instanceof OpenAI.APIUserAbortError, String(e));
  }
  assert.ok(chunks < 100, `${chunks} chunks arrived after the abort`);
  assert.ok(sawRunning, 'the worker was not running the request mid-stream');
  await waitGauge(workerMetrics, 'deltagate_num_requests_running', 0);
  await waitGauge(frontMetrics, 'deltagate_front_requests_running', 0);
  const text = await (await fetch(frontMetrics)).text();
  assert.match(text, /deltagate_front_requests_total\{rpc="Generate",code="CANCELLED",protocol="http"\} [1-9]/);
  assert.match(text, /deltagate_front_requests_total\{rpc="Generate",code="OK",protocol="http"\} [1-9]/);
});

test('anthropic: messages, not streamed', async () => {
  const m = await anthropic.messages.create({model, max_tokens: 6, messages: [{role: 'user', content: 'Hello'}],
                                             system: 'Be brief.'});
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.equal(m.content[0].type, 'text');
  assert.ok(['end_turn', 'max_tokens'].includes(m.stop_reason), m.stop_reason);
  assert.ok(m.usage.output_tokens > 0 && m.usage.input_tokens > 0, JSON.stringify(m.usage));
});

test('anthropic: messages streamed, with thinking', async () => {
  const stream = anthropic.messages.stream({model, max_tokens: 6, messages: [{role: 'user', content: 'Hello'}],
                                            thinking: {type: 'enabled', budget_tokens: 1024}});
  let thinking = '';
  stream.on('thinking', (delta) => { thinking += delta; });
  const m = await stream.finalMessage();
  assert.equal(m.content[0].type, 'thinking');
  assert.equal(m.content[0].thinking, thinking);
  assert.ok(thinking.length > 0);
  assert.equal(m.usage.output_tokens, 6);
  assert.equal(m.stop_reason, 'max_tokens');
  // Not streamed with the same greedy settings: the same text.
  const plain = anthropic.messages.stream({model, max_tokens: 5, temperature: 0, messages: [{role: 'user', content: 'Hi'}]});
  let text = '';
  plain.on('text', (t) => { text += t; });
  const pm = await plain.finalMessage();
  const whole = await anthropic.messages.create({model, max_tokens: 5, temperature: 0, messages: [{role: 'user', content: 'Hi'}]});
  assert.equal(text, pm.content.find((b) => b.type === 'text')?.text ?? '');
  assert.equal(text, whole.content[0].text);
});

test('anthropic: tools and a tool_use/tool_result round trip', async () => {
  const tools = [{name: 'get_weather', description: 'Weather for a city',
                  input_schema: {type: 'object', properties: {city: {type: 'string'}}, required: ['city']}}];
  const m = await anthropic.messages.create({model, max_tokens: 4, tools, messages: [
    {role: 'user', content: 'Weather in Paris?'},
    {role: 'assistant', content: [{type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: {city: 'Paris'}}]},
    {role: 'user', content: [{type: 'tool_result', tool_use_id: 'toolu_1', content: '21 C'}]},
  ]});
  assert.equal(m.type, 'message');
  await assert.rejects(anthropic.messages.create({model, max_tokens: 4, tools, tool_choice: {type: 'any'},
                                                  messages: [{role: 'user', content: 'x'}]}),
                       (e) => e instanceof Anthropic.BadRequestError && e.error.error.type === 'invalid_request_error');
  await assert.rejects(anthropic.messages.create({model, max_tokens: 0, messages: [{role: 'user', content: 'x'}]}),
                       (e) => e instanceof Anthropic.BadRequestError && /max_tokens/.test(e.message));
});

let failed = 0;
for (const [name, fn] of tests) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}\n${e.stack ?? e}`);
  }
}
if (failed) {
  console.error(`${failed} of ${tests.length} failed`);
  process.exit(1);
}
console.log(`http clients: all ${tests.length} ok`);
