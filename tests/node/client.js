// Streams a generation from a deltagate front with Node's own gRPC stack (@grpc/grpc-js), loading our
// .proto files as they are (@grpc/proto-loader). Usage: node client.js PROTO_DIR HOST:PORT
'use strict';
const assert = require('assert');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const [protoDir, target] = process.argv.slice(2);
const def = loader.loadSync('deltagate/v1/inference.proto', {includeDirs: [protoDir], keepCase: true, longs: String,
                                                              enums: String, defaults: true, oneofs: true});
const v1 = grpc.loadPackageDefinition(def).deltagate.v1;
const client = new v1.Inference(target, grpc.credentials.createInsecure());
const deadline = () => new Date(Date.now() + 120000);

function listModels() {
  return new Promise((ok, fail) => client.ListModels({}, {deadline: deadline()}, (e, r) => (e ? fail(e) : ok(r))));
}

function generate(req) {
  return new Promise((ok, fail) => {
    const out = {ids: [], text: '', finished: [], final: null};
    const call = client.Generate(req, {deadline: deadline()});
    call.on('data', (m) => {
      if (m.event === 'delta') {
        out.ids.push(...m.delta.token_ids);
        out.text += m.delta.text;
      } else if (m.event === 'finished') out.finished.push(m.finished);
      else if (m.event === 'final') out.final = m.final;
    });
    call.on('error', fail);
    call.on('end', () => ok(out));
  });
}

(async () => {
  const models = await listModels();
  assert.strictEqual(models.models.length, 1);
  console.log('model', models.models[0].name, 'workers', models.models[0].workers_healthy);
  const r = await generate({prompt: {token_ids: {ids: [1, 2, 3, 4]}}, stop: {max_tokens: 6, ignore_eos: true}});
  assert.strictEqual(r.ids.length, 6);
  assert.strictEqual(r.finished.length, 1);
  assert.strictEqual(r.finished[0].finish_reason, 'FINISH_REASON_LENGTH');
  assert.ok(r.final && r.final.usage.prompt_tokens === 4 && r.final.usage.completion_tokens === 6);
  console.log('streamed ids', r.ids.join(' '));
  // Bad input comes back as a status with a message, not a broken stream.
  await assert.rejects(generate({prompt: {token_ids: {ids: [1]}}, n: 100000}),
                       (e) => e.code === grpc.status.INVALID_ARGUMENT && /max-fanout/.test(e.details));
  client.close();
  console.log('node client: ok');
})().catch((e) => {
  console.error('node client failed:', e);
  process.exit(1);
});
