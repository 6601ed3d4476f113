// Deterministic parity corpus for the tokenizer (>= 1 MB of UTF-8). Same seed, same bytes, on any
// machine: a fixed PRNG and only code points assigned since Unicode <= 6, so the Unicode versions of ICU
// (ours), V8 (the JS port) and Oniguruma (HF tokenizers) classify them alike.
// Usage: node gen_corpus.js OUT.jsonl [target_bytes]   (one JSON string per line = one document)
'use strict';
const fs = require('fs');

let state = 0x9e3779b9;
function rnd() {  // xorshift32
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    return state / 4294967296;
}
const ri = (n) => Math.floor(rnd() * n);
const pick = (a) => a[ri(a.length)];
const range = (lo, hi) => String.fromCodePoint(lo + ri(hi - lo + 1));
const rep = (n, f) => { let s = ''; for (let i = 0; i < n; i++) s += f(i); return s; };

// Known departures of the JS port from HF tokenizers are kept out of this corpus and tested on their
// own (departures.json): U+0085 and U+FEFF (JS \s differs from Unicode White_Space) and U+017F after
// an apostrophe ((?i) folding).
const WORDS = ('the quick brown fox jumps over lazy dog tokenizer model serving prefix cache state ' +
    'checkpoint kernel batch stream request latency throughput hybrid attention delta rule gate ' +
    'recurrent memory block token vocabulary merge byte level unicode normalisation').split(' ');
const CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Re", "'rE", "'VE", "'vE",
    "'M", "'LL", "'lL", "'Ll", "'D", "'x", "'", "''", "'sS", "'tt", "'ree"];
function word() {
    const w = pick(WORDS);
    const c = ri(10);
    if (c === 0) return w.toUpperCase();
    if (c === 1) return w[0].toUpperCase() + w.slice(1);
    if (c === 2) return w.split('').map((ch) => (rnd() < 0.5 ? ch.toUpperCase() : ch)).join('');
    return w;
}
function prose() {
    let s = '';
    const n = 20 + ri(120);
    for (let i = 0; i < n; i++) {
        s += word();
        if (rnd() < 0.15) s += pick(CONTRACTIONS);
        s += pick([' ', ' ', ' ', ' ', ', ', '. ', '! ', '? ', ' - ', '; ', ': ', '\n', '  ', ' (', ') ', '"', ' \'']);
    }
    return s;
}

const IDENTS = ['x', 'y', 'idx', 'count', 'buffer', 'kv_cache', 'numTokens', 'HTTPServer', '_private',
    '__init__', 'self', 'std', 'vec', 'tensor', 'i', 'j', 'ptr', 'len', 'résumé', '变量', 'naïve'];
function code() {
    const id = () => pick(IDENTS) + (rnd() < 0.3 ? String(ri(100)) : '');
    const ind = (d) => (rnd() < 0.2 ? '\t'.repeat(d) : ' '.repeat(4 * d));
    const langs = [
        () => `#include <vector>\n#include "engine/${id()}.h"\n\nnamespace dg {\n\nint ${id()}(const std::vector<int>& ${id()}) {\n${ind(1)}int ${id()} = 0;\n${ind(1)}for (size_t i = 0; i < ${ri(1000)}; ++i) {\n${ind(2)}if (${id()}[i] != 0x${ri(65536).toString(16)}) ${id()} += i << ${ri(8)};\n${ind(1)}}\n${ind(1)}return ${id()}; // TODO(${id()}): don't overflow\n}\n\n}  // namespace dg\n`,
        () => `def ${id()}(${id()}, ${id()}=None, *args, **kwargs):\n${ind(1)}"""Docstring with 'quotes' and \\"escapes\\"."""\n${ind(1)}for k, v in enumerate(${id()}):\n${ind(2)}if v is not None and k % ${ri(9) + 2} == 0:\n${ind(3)}yield f"{k!r}: {v:>${ri(20)}}"\n${ind(1)}return [x ** 2 for x in range(${ri(100)}) if x & 1]\n\n\n`,
        () => `const ${id()} = async (${id()}) => {\n${ind(1)}const res = await fetch(\`/api/v1/${id()}?q=\${encodeURIComponent(${id()})}&n=${ri(50)}\`);\n${ind(1)}if (!res.ok) throw new Error("HTTP " + res.status);\n${ind(1)}return res.json().then((d) => d.items?.map(({ id, name }) => ({ id, name })) ?? []);\n};\n`,
        () => `fn ${id()}<'a, T: Clone + Send>(${id()}: &'a [T]) -> Result<Vec<T>, Box<dyn std::error::Error>> {\n${ind(1)}let mut out = Vec::with_capacity(${ri(4096)});\n${ind(1)}for x in ${id()}.iter().rev().skip(${ri(5)}) { out.push(x.clone()); }\n${ind(1)}Ok(out)\n}\n`,
        () => `func (s *${id()}) Serve(ctx context.Context, req *pb.Request) (*pb.Response, error) {\n\tselect {\n\tcase <-ctx.Done():\n\t\treturn nil, ctx.Err()\n\tdefault:\n\t}\n\treturn &pb.Response{Tokens: []int32{${ri(151000)}, ${ri(151000)}}}, nil\n}\n`,
        () => `SELECT u.id, COUNT(*) AS n, SUM(o.total_cents) / 100.0 AS total\nFROM users u LEFT JOIN orders o ON o.user_id = u.id\nWHERE u.created_at >= '2024-0${ri(9) + 1}-1${ri(9)}' AND u.name LIKE '%${pick(WORDS)}%'\nGROUP BY u.id HAVING COUNT(*) > ${ri(10)}\nORDER BY total DESC LIMIT ${ri(100)};\n`,
        () => `<!DOCTYPE html>\n<html lang="en">\n  <head><meta charset="utf-8"><title>${word()} &amp; ${word()}</title></head>\n  <body class="${id()}">\n    <div id="${id()}" data-x='${ri(99)}'>&lt;p&gt; ${prose().slice(0, 80)} &#x27;</div>\n  </body>\n</html>\n`,
        () => `#!/usr/bin/env bash\nset -euo pipefail\nfor f in "$@"; do\n  [[ -f "$f" ]] || { echo "missing: $f" >&2; exit 1; }\n  grep -E '^[A-Z_]+=' "$f" | sed -e 's/=.*$//' | sort -u >> "\${OUT:-/tmp/${id()}.txt}"\ndone\n`,
        () => `{"model": "qwen3.5", "messages": [{"role": "user", "content": "${word()} \\u00e9\\n\\t${ri(1e6)}"}], "temperature": 0.${ri(10)}, "stop": ["<|im_end|>"], "n": ${ri(4)}}\n`,
    ];
    return pick(langs)();
}

// Scripts: [lo, hi] ranges fully assigned in old Unicode versions.
const CJK = () => rep(5 + ri(60), () => (rnd() < 0.85 ? range(0x4e00, 0x9fa5) : pick(['，', '。', '、', '！', '？', '「', '」', '（', '）', ' ', '\n', '：'])));
const JA = () => rep(5 + ri(60), () => pick([() => range(0x3041, 0x3093), () => range(0x30a1, 0x30f3), () => range(0x4e00, 0x9fa5), () => pick(['。', '、', 'ー', '・'])])());
const KO = () => rep(3 + ri(30), () => rep(1 + ri(5), () => range(0xac00, 0xd7a3)) + pick([' ', ' ', '. ', ', ', '\n']));
const ARABIC_MARKS = [0x064b, 0x064c, 0x064d, 0x064e, 0x064f, 0x0650, 0x0651, 0x0652];
const AR = () => rep(3 + ri(30), () => rep(2 + ri(6), () => range(0x0627, 0x063a) + (rnd() < 0.3 ? String.fromCodePoint(pick(ARABIC_MARKS)) : '')) + pick([' ', ' ', '، ', '. ', '؟ ', ' ١٢٣ ', '\n']));
const HE = () => rep(3 + ri(20), () => rep(2 + ri(5), () => range(0x05d0, 0x05ea) + (rnd() < 0.3 ? range(0x05b0, 0x05b9) : '')) + pick([' ', ' ', '. ', '\n']));
const DEV_MATRAS = [0x093e, 0x093f, 0x0940, 0x0941, 0x0942, 0x0947, 0x0948, 0x094b, 0x094c, 0x0902, 0x0901, 0x094d, 0x093c];
const DEV = () => rep(3 + ri(30), () => rep(1 + ri(4), () => range(0x0915, 0x0939) + (rnd() < 0.6 ? String.fromCodePoint(pick(DEV_MATRAS)) : '')) + pick([' ', ' ', '। ', ', ', ' ०१२ ', '\n']));
const THAI = () => rep(3 + ri(20), () => rep(2 + ri(8), () => range(0x0e01, 0x0e2e) + (rnd() < 0.3 ? pick(['\u0e31', '\u0e34', '\u0e35', '\u0e48', '\u0e49', '\u0e47']) : '')) + pick([' ', '', '\n']));
const CYR = () => rep(3 + ri(30), () => rep(2 + ri(8), () => range(0x0430, 0x044f)) + pick([' ', ' ', ', ', '. ', '\n']));
const GREEK = () => rep(3 + ri(30), () => rep(2 + ri(8), () => range(0x03b1, 0x03c9)) + pick([' ', ' ', '; ', '. ']));
const BENGALI = () => rep(3 + ri(20), () => rep(1 + ri(4), () => range(0x0995, 0x09a8) + (rnd() < 0.5 ? pick(['\u09be', '\u09bf', '\u09c0', '\u09c1', '\u09cd', '\u0981']) : '')) + pick([' ', '। ']));
const TAMIL = () => rep(3 + ri(20), () => rep(1 + ri(4), () => pick(['க', 'ங', 'ச', 'ஞ', 'ட', 'ண', 'த', 'ந', 'ப', 'ம', 'ய', 'ர', 'ல', 'வ']) + (rnd() < 0.5 ? pick(['\u0bbe', '\u0bbf', '\u0bc0', '\u0bc1', '\u0bcd']) : '')) + ' ');

const EMOJI = ['😀', '😂', '🥲', '👍', '👍🏽', '👍🏿', '❤️', '🔥', '🚀', '🇺🇸', '🇯🇵', '🇩🇪', '🏳️‍🌈', '👨‍👩‍👧‍👦', '👩🏾‍💻', '🧑‍🚀',
    '🏴‍☠️', '1️⃣', '#️⃣', '*️⃣', '🫠', '🤌🏼', '👁️‍🗨️', '❤️‍🔥', '🐻‍❄️', '✌🏻', '☺', '☺️', '©', '™', '↔️', '⌚', '👨🏻‍🤝‍👨🏼', '💁‍♀️'];
const EMO = () => rep(3 + ri(40), () => pick(EMOJI) + pick(['', '', ' ', '  ', word(), ', ', '\n']));

const COMBINING = () => rep(5 + ri(40), () => {
    const base = pick(['a', 'e', 'o', 'u', 'n', 'A', 'E', 'Z', 'i', ' ', '1', '.', '-', 'ß', 'ø', 'α', 'и', '\n', '"']);
    let s = base + rep(ri(4), () => range(0x0300, 0x036f));
    if (rnd() < 0.2) s = range(0x0300, 0x036f) + s;  // a mark with nothing to combine with
    if (rnd() < 0.1) s += '\u20dd\u20e3';             // enclosing marks (Me)
    if (rnd() < 0.1) s += '\u0903';                   // a spacing mark (Mc)
    return s + pick(['', '', 'bc', ' ', ' de', '\t', '.']);
});

const WS_CHARS = [' ', ' ', ' ', '\t', '\n', '\r\n', '\r', '\u00a0', '\u3000', '\u2003', '\u2009', '\u202f', '\u205f', '\u1680', '\u2028', '\u2029', '\u000b', '\u000c'];
const WHITESPACE = () => rep(3 + ri(20), () => {
    const n = pick([1, 2, 3, 4, 8, 16, 33, 64, 100, 257]);
    const style = ri(4);
    let ws;
    if (style === 0) ws = ' '.repeat(n);
    else if (style === 1) ws = '\t'.repeat(Math.min(n, 20));
    else if (style === 2) ws = rep(Math.min(n, 40), () => pick(WS_CHARS));
    else ws = ' '.repeat(n) + '\n' + ' '.repeat(ri(8));
    return ws + pick([word(), '.', '', '\n', '!?', '123', '中文', '😀', 'é']);
});

const DIGITS = () => rep(3 + ri(20), () => pick([
    () => String(ri(1e9)) + rep(ri(3), () => String(ri(1e9))),
    () => (rnd() * 1e6).toFixed(ri(8)),
    () => '0x' + ri(1 << 30).toString(16).toUpperCase(),
    () => rep(1 + ri(12), () => range(0x0660, 0x0669)),
    () => rep(1 + ri(12), () => range(0x0966, 0x096f)),
    () => rep(1 + ri(12), () => range(0xff10, 0xff19)),
    () => pick(['Ⅻ', 'ⅷ', '½', '¾', '²', '³', '⁴', '①', '⑳', '𝟘𝟙𝟚', '〇', '٫', '1,234,567.89', '3.14e-10', '+1 (555) 010-9999'])
])() + pick([' ', '', ', ', 'abc', '\n', '%']));

const SPECIALS = ['<|im_start|>', '<|im_end|>', '<|endoftext|>', '<think>', '</think>', '<tool_call>', '</tool_call>',
    '<tool_response>', '</tool_response>', '<|vision_start|>', '<|image_pad|>', '<|fim_prefix|>', '<|file_sep|>'];
const NEAR_SPECIALS = ['<|im_start', 'im_end|>', '<|im_end|', '<think', '</think', '<<|im_end|>>', '<|<|im_start|>|>',
    '< think>', '<|IM_END|>', '<|endoftext|', '<tool_call >', '|>', '<|'];
const SPECIAL = () => rep(2 + ri(12), () => pick([
    () => pick(SPECIALS),
    () => pick(NEAR_SPECIALS),
    () => `<|im_start|>${pick(['user', 'assistant', 'system'])}\n${prose().slice(0, 100 + ri(200))}<|im_end|>\n`,
    () => `<think>\n${prose().slice(0, 150)}\n</think>\n\n`,
    () => `<tool_call>\n<function=${pick(IDENTS)}>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>`,
])() + pick(['', '', ' ', '\n', 'x']));

// Valid UTF-8 that looks odd: controls, C1, noncharacters, private use, 4-byte planes, zero-width and
// format characters, variation selectors, tags, the edges of the surrogate gap and of the code space.
const ODD_CPS = [0x01, 0x02, 0x07, 0x1b, 0x1f, 0x7f, 0x80, 0x81, 0x9f, 0xad, 0x200b, 0x200c, 0x200d, 0x200e, 0x2060, 0x2061,
    0xfdd0, 0xfdef, 0xfffe, 0xffff, 0xfffd, 0xe000, 0xf8ff, 0xf0000, 0x10fffd, 0x10ffff, 0xd7ff, 0xe0001, 0xe0041, 0xe007f,
    0xfe00, 0xfe0f, 0xe0100, 0x1d400, 0x1d7ce, 0x10330, 0x12000, 0x1f600, 0x20000, 0x2a6d6, 0x2f800, 0x00, 0x0600, 0x06dd, 0x110bd];
const ODD = () => rep(5 + ri(40), () => rep(1 + ri(3), () => String.fromCodePoint(pick(ODD_CPS))) + pick(['', 'a', ' ', 'Ab', '1', '\n', ' x', '.', '中']));

// Cut by code point, never inside a surrogate pair (a lone surrogate is not encodable as UTF-8).
const cut = (s, n) => Array.from(s).slice(0, n).join('');
const MIXED = () => rep(3 + ri(10), () => cut(pick([prose, CJK, AR, DEV, EMO, COMBINING, DIGITS, CYR, KO])(), 40 + ri(80)));

const GENERATORS = [[prose, 14], [code, 16], [CJK, 6], [JA, 4], [KO, 4], [AR, 5], [HE, 3], [DEV, 5], [THAI, 3], [CYR, 4],
    [GREEK, 2], [BENGALI, 2], [TAMIL, 2], [EMO, 5], [COMBINING, 6], [WHITESPACE, 6], [DIGITS, 5], [SPECIAL, 6], [ODD, 5], [MIXED, 6]];
const WEIGHTED = GENERATORS.flatMap(([g, w]) => Array(w).fill(g));

function main() {
    const out = process.argv[2];
    const target = Number(process.argv[3] || 1200000);
    const lines = [];
    let bytes = 0;
    while (bytes < target) {
        const doc = pick(WEIGHTED)();
        if (!doc.length) continue;
        if (!doc.isWellFormed()) throw new Error('generator produced a lone surrogate');
        lines.push(JSON.stringify(doc));
        bytes += Buffer.byteLength(doc, 'utf8');
    }
    fs.writeFileSync(out, lines.join('\n') + '\n');
    process.stderr.write(`corpus: ${lines.length} documents, ${bytes} bytes of UTF-8 -> ${out}\n`);
}
main();
