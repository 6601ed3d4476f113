#!/usr/bin/python3
"""Generates the fixtures of tests/unit/formats from an implementation independent of the C++ one.

Quant blocks are decoded here with NumPy straight from the formulas in docs/qwen35-model.md §7.2 (ggml's
dequantize_row_*), half conversions come from NumPy (f16) or a nearest-value search (bf16), and the model
files come from the shared reference tools (make_model.py, to_gguf.py, stio.py). Deterministic: rerunning
it rewrites identical bytes.

Usage: /usr/bin/python3 tests/unit/formats/make_fixtures.py [--ref /work/shared/reference/qwen35ref]

Files (little-endian raw arrays):
  quant_<type>.bin / .f32        random blocks and their decoded floats (q4_0 q4_1 q8_0 q4_k q5_k q6_k)
  quant_input.f32                4 rows x 256 floats fed to the exact reference quantisers
  quant_ref_<type>.bin           ggml *_ref output for q8_0, q4_0, q4_1 on quant_input.f32
  f16_in.u16 / f16_out.f32       f16 bit patterns -> f32
  f32_to_f16_in.f32 / _out.u16   f32 -> f16, round to nearest even (incl. ties, subnormals, overflow)
  f32_to_bf16_in.f32 / _out.u16  f32 -> bf16, round to nearest even
  quant_mix.gguf                 alignment 64, nested array, one 2-row tensor per quant type (the blocks above)
  tiny.gguf                      to_gguf.py --f16 of a tiny random model (make_model.py)
  tiny_st/                       that model's sharded safetensors + model.safetensors.index.json
  ref_stio.safetensors           written by stio.save (F32, with __metadata__)
"""
import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
F32 = np.float32


def f16(bits):
    return np.asarray(bits, dtype="<u2").view("<f2").astype(F32)


# ----------------------------------------------------------------------------- dequantisers (doc §7.2)

def deq_q4_0(b):
    d = f16(b[0:2].view("<u2"))[0]
    qs = b[2:18].astype(np.int32)
    y = np.empty(32, F32)
    y[:16] = d * ((qs & 0xF) - 8).astype(F32)
    y[16:] = d * ((qs >> 4) - 8).astype(F32)
    return y


def deq_q4_1(b):
    d = f16(b[0:2].view("<u2"))[0]
    m = f16(b[2:4].view("<u2"))[0]
    qs = b[4:20].astype(np.int32)
    y = np.empty(32, F32)
    y[:16] = d * (qs & 0xF).astype(F32) + m
    y[16:] = d * (qs >> 4).astype(F32) + m
    return y


def deq_q8_0(b):
    d = f16(b[0:2].view("<u2"))[0]
    return d * b[2:34].view(np.int8).astype(F32)


def scale_min_k4(j, s):
    s = [int(v) for v in s]
    if j < 4:
        return s[j] & 63, s[j + 4] & 63
    return (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)


def deq_q4_k(b, five=False):
    d = f16(b[0:2].view("<u2"))[0]
    dmin = f16(b[2:4].view("<u2"))[0]
    s = b[4:16]
    qh = b[16:48].astype(np.int32) if five else None
    q = (b[48:176] if five else b[16:144]).astype(np.int32)
    y = np.empty(256, F32)
    for c in range(4):
        sc1, mn1 = scale_min_k4(2 * c, s)
        sc2, mn2 = scale_min_k4(2 * c + 1, s)
        d1, m1 = d * F32(sc1), dmin * F32(mn1)
        d2, m2 = d * F32(sc2), dmin * F32(mn2)
        lo = q[32 * c:32 * c + 32] & 0xF
        hi = q[32 * c:32 * c + 32] >> 4
        if five:
            lo = lo + 16 * ((qh >> (2 * c)) & 1)
            hi = hi + 16 * ((qh >> (2 * c + 1)) & 1)
        y[64 * c:64 * c + 32] = d1 * lo.astype(F32) - m1
        y[64 * c + 32:64 * c + 64] = d2 * hi.astype(F32) - m2
    return y


def deq_q5_k(b):
    return deq_q4_k(b, five=True)


def deq_q6_k(b):
    ql_all, qh_all = b[0:128].astype(np.int32), b[128:192].astype(np.int32)
    sc_all = b[192:208].view(np.int8).astype(F32)
    d = f16(b[208:210].view("<u2"))[0]
    y = np.empty(256, F32)
    for h in range(2):
        ql, qh, sc = ql_all[64 * h:], qh_all[32 * h:], sc_all[8 * h:]
        for l in range(32):
            i = l // 16
            q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32
            q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32
            q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32
            q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32
            y[128 * h + l] = d * sc[i] * F32(q1)
            y[128 * h + l + 32] = d * sc[i + 2] * F32(q2)
            y[128 * h + l + 64] = d * sc[i + 4] * F32(q3)
            y[128 * h + l + 96] = d * sc[i + 6] * F32(q4)
    return y


# type -> (block bytes, decoder, offsets of the f16 fields)
QUANTS = {
    "q4_0": (18, deq_q4_0, [0]),
    "q4_1": (20, deq_q4_1, [0, 2]),
    "q8_0": (34, deq_q8_0, [0]),
    "q4_k": (144, deq_q4_k, [0, 2]),
    "q5_k": (176, deq_q5_k, [0, 2]),
    "q6_k": (210, deq_q6_k, [208]),
}


def random_half(rng):
    """A finite f16 of moderate magnitude (either sign), so decoded values stay finite."""
    return np.float16(rng.uniform(-2.0, 2.0) * 2.0 ** rng.integers(-12, 2)).view("<u2")


def write_quant_blocks(rng, n_blocks=6):
    for name, (size, deq, half_offsets) in QUANTS.items():
        blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
        for blk in blocks:
            for off in half_offsets:
                blk[off:off + 2] = np.frombuffer(random_half(rng).tobytes(), np.uint8)
        out = np.concatenate([deq(blk) for blk in blocks]).astype("<f4")
        assert np.all(np.isfinite(out))
        blocks.tofile(os.path.join(OUT, f"quant_{name}.bin"))
        out.tofile(os.path.join(OUT, f"quant_{name}.f32"))


# ----------------------------------------------------------------------------- exact reference quantisers

def roundf(v):
    """C roundf: half away from zero (computed in f64, exact for f32 inputs)."""
    v = v.astype(np.float64)
    return (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int64)


def ref_q8_0(x):
    amax = F32(np.max(np.abs(x)))
    d = F32(amax / F32(127))
    i = F32(1) / d if d != 0 else F32(0)
    q = roundf((x * i).astype(F32)).astype(np.int8)
    return np.float16(d).tobytes() + q.tobytes()


def ref_q4_0(x):
    k = int(np.argmax(np.abs(x)))  # first of the largest magnitudes, like the C loop's strict '<'
    d = F32(x[k] / F32(-8))
    i = F32(1) / d if d != 0 else F32(0)
    q = np.minimum(15, np.trunc((x * i).astype(F32) + F32(8.5)).astype(np.int64))
    return np.float16(d).tobytes() + (q[:16] | (q[16:] << 4)).astype(np.uint8).tobytes()


def ref_q4_1(x):
    lo, hi = F32(np.min(x)), F32(np.max(x))
    d = F32((hi - lo) / F32(15))
    i = F32(1) / d if d != 0 else F32(0)
    q = np.minimum(15, np.trunc(((x - lo) * i).astype(F32) + F32(0.5)).astype(np.int64))
    return np.float16(d).tobytes() + np.float16(lo).tobytes() + (q[:16] | (q[16:] << 4)).astype(np.uint8).tobytes()


def write_ref_quants(rng):
    x = (rng.standard_normal((4, 256)) * np.array([[1.0], [0.01], [30.0], [1.0]])).astype(F32)
    x[3, :32] = 0.0  # an all-zero block (d = 0)
    x[3, 32:64] = np.abs(x[3, 32:64])  # one-signed blocks
    x[3, 64:96] = -np.abs(x[3, 64:96])
    x.astype("<f4").tofile(os.path.join(OUT, "quant_input.f32"))
    flat = x.reshape(-1, 32)
    for name, fn in (("q8_0", ref_q8_0), ("q4_0", ref_q4_0), ("q4_1", ref_q4_1)):
        with open(os.path.join(OUT, f"quant_ref_{name}.bin"), "wb") as f:
            for blk in flat:
                f.write(fn(blk))


# ----------------------------------------------------------------------------- half conversions

def write_halves(rng):
    specials = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00]
    h = np.concatenate([np.array(specials, np.uint16), rng.integers(0, 0x7C00, 4000).astype(np.uint16),
                        rng.integers(0x8000, 0xFC00, 4000).astype(np.uint16)])
    h.astype("<u2").tofile(os.path.join(OUT, "f16_in.u16"))
    h.view("<f2").astype("<f4").tofile(os.path.join(OUT, "f16_out.f32"))

    # f32 -> f16: random magnitudes over the whole half range and beyond, exact ties, subnormals.
    mags = 2.0 ** rng.uniform(-28, 17, 6000)
    x = (mags * rng.choice([-1.0, 1.0], 6000)).astype(F32)
    a = rng.integers(0, 0x7BFF, 2000).astype(np.uint16)  # ties between consecutive halves (incl. subnormal)
    ties = ((a.view("<f2").astype(np.float64) + (a + 1).view("<f2").astype(np.float64)) / 2).astype(F32)
    extra = np.array([0.0, -0.0, 65504.0, 65519.99, 65520.0, 65536.0, 1e10, -1e10, np.inf, -np.inf,
                      2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0001, 2.0 ** -26, 3 * 2.0 ** -25, 6.1e-5], F32)
    x = np.concatenate([x, ties, -ties, extra]).astype(F32)
    x.astype("<f4").tofile(os.path.join(OUT, "f32_to_f16_in.f32"))
    with np.errstate(over="ignore"):  # values past 65520 become inf, as they should
        x.astype("<f2").view("<u2").tofile(os.path.join(OUT, "f32_to_f16_out.u16"))

    # f32 -> bf16: pick the nearer of the two neighbouring bf16 values by exact arithmetic, ties to even.
    y = np.concatenate([(2.0 ** rng.uniform(-130, 128, 6000) * rng.choice([-1.0, 1.0], 6000)).astype(F32),
                        np.array([0.0, -0.0, np.inf, -np.inf, 3.3895314e38, -3.3895314e38, 1.0 + 2 ** -8,
                                  1.0 + 3 * 2 ** -8, 1e-45], F32)])
    bits = y.view("<u4")
    ties_b = ((rng.integers(0, 0x7F7F, 1000).astype(np.uint32) << 16) | 0x8000).view(F32)
    y = np.concatenate([y, ties_b, -ties_b]).astype(F32)
    out = np.array([bf16_nearest(v) for v in y], np.uint16)
    del bits
    y.astype("<f4").tofile(os.path.join(OUT, "f32_to_bf16_in.f32"))
    out.astype("<u2").tofile(os.path.join(OUT, "f32_to_bf16_out.u16"))


def bf16_value(b16):
    """Exact value of a bf16 pattern as a Python float, with exponent 255 / mantissa 0 read as 2^128."""
    sign = -1.0 if b16 & 0x8000 else 1.0
    e, m = (b16 >> 7) & 0xFF, b16 & 0x7F
    if e == 0:
        return sign * m * 2.0 ** -133
    return sign * (1 + m / 128) * 2.0 ** (e - 127)


def bf16_nearest(v):
    v = F32(v)
    if np.isinf(v):
        return 0x7F80 | (0x8000 if v < 0 else 0)
    u = int(v.view(np.uint32))
    lo = u >> 16
    hi = lo + 1  # next pattern away from zero (may be the infinity pattern)
    x = float(v)
    dl, dh = abs(x - bf16_value(lo)), abs(bf16_value(hi) - x)
    if dl < dh or (dl == dh and lo % 2 == 0):
        return lo
    return hi


# ----------------------------------------------------------------------------- a GGUF with quantised tensors

GGML_IDS = {"q4_0": 2, "q4_1": 3, "q8_0": 8, "q4_k": 12, "q5_k": 13, "q6_k": 14}


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def write_quant_gguf():
    """quant_mix.gguf: alignment 64, a nested array, and one tensor per quant type holding the blocks of
    quant_<type>.bin (so the reader test can compare against quant_<type>.f32). Written byte by byte here,
    independently of both C++ and to_gguf.py."""
    align = 64
    kv = [gguf_str("general.alignment") + struct.pack("<II", 4, align),
          gguf_str("general.architecture") + struct.pack("<I", 8) + gguf_str("quant_mix"),
          gguf_str("test.nested") + struct.pack("<IIQ", 9, 9, 2) + struct.pack("<IQii", 5, 2, -1, 2)
          + struct.pack("<IQi", 5, 1, 3),
          gguf_str("test.flag") + struct.pack("<IB", 7, 1),
          gguf_str("test.f64") + struct.pack("<Id", 12, 0.125)]
    infos, blobs, off = [], [], 0
    for name, (size, _, _) in QUANTS.items():
        data = open(os.path.join(OUT, f"quant_{name}.bin"), "rb").read()
        n_blocks = len(data) // size
        elems = {"q4_0": 32, "q4_1": 32, "q8_0": 32}.get(name, 256)
        ne = [elems * n_blocks // 2, 2]  # two rows
        infos.append(gguf_str(f"{name}.weight") + struct.pack("<I", 2) + struct.pack("<2Q", *ne)
                     + struct.pack("<IQ", GGML_IDS[name], off))
        pad = (-len(data)) % align
        blobs.append(data + b"\0" * pad)
        off += len(data) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kv)) + b"".join(kv) + b"".join(infos)
    head += b"\0" * ((-len(head)) % align)
    with open(os.path.join(OUT, "quant_mix.gguf"), "wb") as f:
        f.write(head + b"".join(blobs))


# ----------------------------------------------------------------------------- model files

def write_models(ref):
    sys.path.insert(0, ref)
    import stio  # noqa: E402  (the reference's own safetensors writer)

    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "tiny")
        subprocess.run([sys.executable, os.path.join(ref, "make_model.py"), "--preset", "small", "--hidden", "32",
                        "--layers", "4", "--heads", "2", "--kv-heads", "1", "--head-dim", "16",
                        "--linear-k-heads", "1", "--linear-v-heads", "2", "--linear-k-dim", "16",
                        "--linear-v-dim", "16", "--intermediate", "32", "--vocab", "64", "--dtype", "bf16",
                        "--shards", "2", "--no-check", "--out", model], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, os.path.join(ref, "to_gguf.py"), "--model", model, "--f16", "--name",
                        "tiny", "--out", os.path.join(OUT, "tiny.gguf")], check=True, stdout=subprocess.DEVNULL)
        st_dir = os.path.join(OUT, "tiny_st")
        shutil.rmtree(st_dir, ignore_errors=True)
        os.makedirs(st_dir)
        for f in sorted(os.listdir(model)):
            if f.endswith(".safetensors") or f.endswith(".index.json"):
                shutil.copy(os.path.join(model, f), st_dir)

    rng = np.random.default_rng(7)
    tensors = {"a.weight": rng.standard_normal((3, 5)).astype(F32), "b.bias": np.arange(4, dtype=F32),
               "scalar": np.array(2.5, F32), "empty": np.zeros((0, 3), F32)}
    stio.save(os.path.join(OUT, "ref_stio.safetensors"), tensors, "F32", metadata={"format": "pt", "note": "stio"})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default="/work/shared/reference/qwen35ref")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240601)
    write_quant_blocks(rng)
    write_ref_quants(rng)
    write_quant_gguf()
    write_halves(rng)
    write_models(a.ref)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
