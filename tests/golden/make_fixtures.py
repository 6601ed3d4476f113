#!/usr/bin/python3
"""Writes the golden fixtures the engine tests compare against (tests/golden/fixtures/).

The expected logits come from an independent implementation, never from deltagate itself:
  * default: the NumPy reference in shared/reference/qwen35ref (cross-checked against ik_llama.cpp);
  * later, on a machine with torch + transformers: hf_golden.py replaces/confirms them.
The GGUF copies are written by the reference's own converter (to_gguf.py), so the GGUF loader is
tested on files deltagate did not write.

Usage: /usr/bin/python3 tests/golden/make_fixtures.py [--ref PATH_TO_qwen35ref]
Deterministic: same reference, same bytes.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")

# name -> make_model.py flags. All are small (vocab 256, hidden 64) so the fixtures stay under ~1.5 MB
# each; they keep the structure that matters: Hk != Hv (grouped vs tiled heads), dk != dv, MoE with a
# shared expert, a tied head, the VLM wrapper prefix, sharded safetensors.
# llama.cpp's qwen35 GGUF has one ssm.state_size for dk and dv, so only dk == dv models get a GGUF copy;
# "dense_dkdv" keeps dk != dv for the HF path.
MODELS = {
    "dense": ["--preset", "small", "--linear-v-dim", "16", "--dtype", "bf16", "--seed", "11"],
    "dense_dkdv": ["--preset", "small", "--dtype", "bf16", "--seed", "14"],
    "moe": ["--preset", "small", "--moe", "8,2,32,48", "--linear-v-heads", "4", "--linear-v-dim", "16", "--dtype", "bf16", "--seed", "12"],
    "tied_vlm": ["--preset", "small", "--tied", "--linear-v-heads", "2", "--linear-v-dim", "16", "--layout", "vlm", "--shards", "2",
                 "--moe-layout", "per-expert", "--dtype", "bf16", "--seed", "13"],
}
LENGTHS = [1, 7, 64, 150]  # 150 > 2 chunks of 64: exercises chunk boundaries and a partial chunk
GEN_PROMPT_LEN, GEN_NEW = 12, 24


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default=os.path.join(HERE, "..", "..", "..", "shared", "reference", "qwen35ref"))
    a = ap.parse_args()
    ref = os.path.abspath(a.ref)
    sys.path.insert(0, ref)
    from model import Qwen35Ref  # noqa: E402  (the reference)

    os.makedirs(OUT, exist_ok=True)
    for name, flags in MODELS.items():
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        hf = os.path.join(d, "hf")
        subprocess.run([sys.executable, os.path.join(ref, "make_model.py"), "--out", hf, "--no-check"] + flags,
                       check=True, stdout=subprocess.DEVNULL)
        if name != "dense_dkdv":
            subprocess.run([sys.executable, os.path.join(ref, "to_gguf.py"), "--model", hf, "--out",
                            os.path.join(d, "model-f16.gguf"), "--f16"], check=True, stdout=subprocess.DEVNULL)
        m = Qwen35Ref(hf, np.float32)
        vocab = m.cfg.vocab_size
        rng = np.random.default_rng(1000 + len(name))
        cases = []
        for i, n in enumerate(LENGTHS):
            toks = rng.integers(0, vocab, size=n).tolist()
            logits, _ = m.forward(toks)
            fn = f"logits_{i}.f32"
            logits.astype("<f4").tofile(os.path.join(d, fn))
            top2 = np.sort(logits, axis=-1)[:, -2:]
            cases.append({"tokens": toks, "logits_file": fn, "rows": n, "vocab": vocab,
                          "min_top1_margin": float((top2[:, 1] - top2[:, 0]).min())})
        prompt = rng.integers(0, vocab, size=GEN_PROMPT_LEN).tolist()
        gen, steps = m.generate(prompt, GEN_NEW)
        margins = [float(np.sort(s)[-1] - np.sort(s)[-2]) for s in steps]
        golden = {
            "reference": "shared/reference/qwen35ref (NumPy, float32)",
            "model_flags": flags,
            "cases": cases,
            "generate": {"prompt": prompt, "greedy": gen, "margins": margins},
        }
        with open(os.path.join(d, "golden.json"), "w") as f:
            json.dump(golden, f, indent=1)
        print(f"{name}: {len(cases)} cases, generate {len(gen)} tokens, min margin {min(margins):.3f}")


if __name__ == "__main__":
    main()
