#!/usr/bin/env python3
"""Re-records the golden fixtures' logits with HF transformers (run it on a machine that has torch and
transformers with Qwen3.5 support, e.g. the GPU device machine):

    python3 tests/golden/hf_golden.py [--device cpu|cuda] [--check | --write]

For every fixture in tests/golden/fixtures/ it loads hf/ with the transformers class named by its
config (eager attention, float32, TF32 off) and computes the logits of each golden case.
  --check (default): compares with the committed logits (written by make_fixtures.py from the NumPy
                     reference) and prints max |diff| / logit std per case; exit 1 over --tol.
  --write:           replaces logits_*.f32 with transformers' and marks golden.json "reference" as
                     transformers <version>, so the engine tests then compare against transformers.
STATUS: not yet run (the sessions so far had no machine with transformers); the loading code follows
shared/reference/qwen35ref/hf_compare.py.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
HF_CLASS = {"qwen3_5_text": "Qwen3_5ForCausalLM", "qwen3_5_moe_text": "Qwen3_5MoeForCausalLM",
            "qwen3_5": "Qwen3_5ForConditionalGeneration", "qwen3_5_moe": "Qwen3_5MoeForConditionalGeneration"}


def load(d, device):
    with open(os.path.join(d, "config.json")) as f:
        cls = getattr(transformers, HF_CLASS[json.load(f)["model_type"]])
    try:
        m = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        m = cls.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="eager")
    return m.to(device).eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--tol", type=float, default=1e-3, help="max |diff| / logit std")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    worst = 0.0
    for name in sorted(os.listdir(FIX)):
        d = os.path.join(FIX, name)
        with open(os.path.join(d, "golden.json")) as f:
            golden = json.load(f)
        m = load(os.path.join(d, "hf"), a.device)
        for case in golden["cases"]:
            with torch.no_grad():
                ids = torch.tensor([case["tokens"]], device=a.device)
                hf = m(input_ids=ids).logits[0].float().cpu().numpy()
            path = os.path.join(d, case["logits_file"])
            ref = np.fromfile(path, dtype="<f4").reshape(hf.shape)
            rel = float(np.abs(hf - ref).max() / ref.std())
            worst = max(worst, rel)
            print(f"{name} {len(case['tokens'])} tokens: max|diff|/std = {rel:.2e}, "
                  f"argmax agreement {(hf.argmax(-1) == ref.argmax(-1)).mean():.3f}")
            if a.write:
                hf.astype("<f4").tofile(path)
        if a.write:
            golden["reference"] = f"transformers {transformers.__version__} (torch {torch.__version__}, {a.device}, f32)"
            with open(os.path.join(d, "golden.json"), "w") as f:
                json.dump(golden, f, indent=1)
    print(f"worst {worst:.2e} (tolerance {a.tol:.0e})")
    sys.exit(0 if a.write or worst <= a.tol else 1)


if __name__ == "__main__":
    main()
