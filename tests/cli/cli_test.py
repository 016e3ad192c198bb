# SPDX-License-Identifier: Apache-2.0
"""Drives the nanoquant binary for the CLI ctests.

usage: cli_test.py NANOQUANT WORKDIR CASE

Hostile-file cases (`hostile:<command>:<kind>`) build a malformed file with the standard library
only, run `nanoquant <command> FILE`, and require exit code 1 and exactly one line on stderr that
names the file and matches the expected message. Other cases are documented below.

Every run of the binary fails the test on a sanitizer report (AddressSanitizer, LeakSanitizer,
UndefinedBehaviorSanitizer): the runtime options below make the binary stop at the first report
with exit code 86 (never one of nanoquant's 0/1/2), and stderr is searched for a report as well.
In a build without sanitizers the options are ignored.
"""
import json
import os
import re
import struct
import subprocess
import sys

NQ, WORK, CASE = sys.argv[1], sys.argv[2], sys.argv[3]
DATA = os.environ.get("NANOQUANT_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "data"))
os.makedirs(WORK, exist_ok=True)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


SANITIZER_EXIT = 86
SANITIZER_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: |SUMMARY: \w*Sanitizer")


def sanitizer_env():
    """The environment for the binary: the caller's ASAN/UBSAN options, then ours (later wins)."""
    env = dict(os.environ)
    ours = {"ASAN_OPTIONS": "halt_on_error=1:abort_on_error=0:exitcode=%d" % SANITIZER_EXIT,
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=%d" % SANITIZER_EXIT}
    for k, v in ours.items():
        env[k] = (env[k] + ":" if env.get(k) else "") + v
    return env


def run(args, expect_rc, stderr_re=None, stdout_re=None, cwd=None, env=None):
    p = subprocess.run([NQ] + args, capture_output=True, text=True, errors="replace",
                       env=sanitizer_env() if env is None else env, cwd=cwd)
    print("$ nanoquant " + " ".join(args))
    print(p.stdout[-4000:], end="")
    print(p.stderr[-4000:], end="", file=sys.stderr)
    if p.returncode == SANITIZER_EXIT or SANITIZER_RE.search(p.stderr):
        fail(f"sanitizer report (exit code {p.returncode}), see stderr above")
    if p.returncode != expect_rc:
        fail(f"exit code {p.returncode}, expected {expect_rc}")
    if stderr_re is not None:
        lines = p.stderr.strip("\n").split("\n")
        if expect_rc != 0 and len(lines) != 1:
            fail(f"expected a one-line error, got {len(lines)} lines")
        if not re.search(stderr_re, p.stderr):
            fail(f"stderr does not match /{stderr_re}/")
    if stdout_re is not None and not re.search(stdout_re, p.stdout):
        fail(f"stdout does not match /{stdout_re}/")
    return p


def st(header, data=b"", claimed=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(h) if claimed is None else claimed
    return struct.pack("<Q", n) + h + data


def f32(n):
    return struct.pack("<%df" % n, *[float(i % 7) - 3.0 for i in range(n)])


def ent(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


def npy(dict_text, data, major=1):
    h = dict_text.encode() + b"\n"
    size = struct.pack("<H", len(h)) if major == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([major, 0]) + size + h + data


NPY_OK = "{'descr': '<f4', 'fortran_order': False, 'shape': (8, 6), }"

# kind -> (file name, bytes, tensor to name or None, stderr regex)
HOSTILE = {
    "zero_length": ("empty.safetensors", b"", None, r"empty file \(0 bytes\)"),
    "short": ("short.safetensors", b"\x01\x02\x03", None, r"3 bytes, too short"),
    "header_2p63": ("huge.safetensors", st({}, b"", 1 << 63), None,
                    r"header length 9223372036854775808 goes beyond the file"),
    "header_beyond": ("beyond.safetensors", st({"w": ent("F32", [8, 6], 0, 192)}, f32(48), 4096), None,
                      r"header length 4096 goes beyond the file"),
    "invalid_json": ("badjson.safetensors", st(b'{"w": {"dtype": "F32",'), None, r"not valid UTF-8 JSON"),
    "non_utf8": ("nonutf8.safetensors", st(b'{"w\xff\xfe": {}}'), None, r"not valid UTF-8 JSON"),
    "not_object": ("array.safetensors", st(b"[1, 2, 3]"), None, r"JSON array, expected an object"),
    "unknown_dtype": ("dtype.safetensors", st({"w": ent("F24", [8, 6], 0, 192)}, f32(48)), "w",
                      r"tensor 'w': unknown dtype \"F24\""),
    "shape_mismatch": ("shape.safetensors", st({"w": ent("F32", [8, 7], 0, 192)}, f32(48)), "w",
                       r"tensor 'w': shape \[8, 7\] of F32 needs 224 bytes but data_offsets \[0, 192\] span 192"),
    "out_of_range": ("range.safetensors", st({"w": ent("F32", [8, 6], 0, 192)}, f32(40)), "w",
                     r"tensor 'w': data_offsets \[0, 192\] reach beyond the data section of 160 bytes"),
    "truncated": ("trunc.safetensors", st({"a": ent("F32", [8, 6], 0, 192), "w": ent("F32", [8, 6], 192, 384)},
                                          f32(96))[:-50], "w", r"reach beyond the data section of 334 bytes"),
    "overlap": ("overlap.safetensors", st({"a": ent("F32", [8, 6], 0, 192), "w": ent("F32", [8, 6], 96, 288)},
                                          f32(72)), "w", r"tensor 'w' data_offsets \[96, 288\] overlap tensor 'a'"),
    "gap": ("gap.safetensors", st({"a": ent("F32", [4, 6], 0, 96), "w": ent("F32", [8, 6], 128, 320)}, f32(80)),
            "w", r"gap of 32 bytes before tensor 'w'"),
    "trailing": ("trailing.safetensors", st({"w": ent("F32", [8, 6], 0, 192)}, f32(50)), "w",
                 r"8 trailing bytes"),
    "reversed": ("reversed.safetensors", st({"w": ent("F32", [8, 6], 192, 0)}, f32(48)), "w",
                 r"tensor 'w': data_offsets \[192, 0\] end before they begin"),
    "negative_shape": ("negshape.safetensors", st({"w": ent("F32", [-8, 6], 0, 192)}, f32(48)), "w",
                       r"tensor 'w': .*non-negative integers"),
    "shape_overflow": ("bigshape.safetensors", st({"w": ent("F32", [1 << 32, 1 << 32, 16], 0, 192)}, f32(48)), "w",
                       r"tensor 'w': .*more than 2\^64"),
    "offsets_2p63": ("off63.safetensors", st({"w": ent("F32", [1 << 61], 0, 1 << 63)}, f32(48)), "w",
                     r"tensor 'w': data_offsets \[0, 9223372036854775808\] reach beyond the data section of 192 bytes"),
    "offsets_2p64": ("off64.safetensors", st({"w": ent("U8", [0], (1 << 64) - 1, (1 << 64) - 1)}, f32(48)), "w",
                     r"tensor 'w': data_offsets \[18446744073709551615, 18446744073709551615\] reach beyond"),
    "zero_elements": ("zero.safetensors", st({"w": ent("F32", [0, 6], 0, 0)}), "w",
                      r"tensor 'w' has 0 elements \(shape \[0, 6\]\)"),
    "one_d": ("vec.safetensors", st({"w": ent("F32", [48], 0, 192)}, f32(48)), "w",
              r"tensor 'w' has shape \[48\]; expected a 2-D weight matrix"),
    "npy_magic": ("magic.npy", b"PK\x03\x04 this is a zip file", None, r"missing the \\x93NUMPY magic"),
    "npy_truncated": ("trunc.npy", npy(NPY_OK, f32(40)), None,
                      r"truncated: shape \(8, 6\) of float32 needs 192 data bytes, the file has 160"),
    "npy_header_beyond": ("hdr.npy", npy(NPY_OK, f32(48))[:8] + b"\xff\xff" + npy(NPY_OK, f32(48))[10:60], None,
                          r"header length 65535 goes beyond the file"),
    "npy_int": ("int.npy", npy("{'descr': '<i4', 'fortran_order': False, 'shape': (8, 6), }", f32(48)), None,
                r"unsupported dtype '<i4'"),
    "npy_3d": ("cube.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4, 6), }", f32(48)), None,
               r"3 dimensions"),
    "npy_1d": ("vec.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (48,), }", f32(48)), None,
               r"1-D with shape \(48,\); expected a 2-D weight matrix"),
    "npy_nan": ("nan.npy", npy(NPY_OK, f32(47) + struct.pack("<f", float("nan"))), None,
                r"1 non-finite value \(first at row 7, col 5"),
    "npy_empty": ("empty.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 6), }", b""), None,
                  r"0 elements"),
}


def hostile(command, kind):
    fname, data, tensor, pattern = HOSTILE[kind]
    path = os.path.join(WORK, f"{command}_{fname}")
    with open(path, "wb") as f:
        f.write(data)
    target = path
    if command == "factorize" and tensor is not None:
        target = path + ":" + tensor
    args = [command, target] + (["--iters", "2"] if command == "factorize" else [])
    if command == "quantize":
        out = os.path.join(WORK, "quantize_out.safetensors")
        args = [command, path, "-o", out, "--iters", "2"]
    run(args, 1, r"^nanoquant " + command + r": .*" + re.escape(path) + r".*" + pattern)
    if command == "quantize" and (os.path.exists(out) or os.path.exists(out + ".parts")):
        fail("a rejected input left " + out + " or its parts directory")


# ---------------------------------------------------------------- checkpoints (numpy) -----------
def write_st(path, tensors, metadata=None):
    """tensors: list of (name, dtype_str, shape, raw_bytes) written in this order."""
    header, off, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return header, data


def raw_of(header, data, name):
    b, e = header[name]["data_offsets"]
    return data[b:e]


def checkpoint_tensors():
    import numpy as np
    rng = np.random.default_rng(0)
    q = np.load(os.path.join(DATA, "use_lite_L0_attn_q.npy"))
    o = np.load(os.path.join(DATA, "use_lite_L1_attn_o.npy"))
    o_bf16 = (o.view(np.uint32) >> 16).astype(np.uint16)  # truncation is fine for a test input
    return [
        ("model.embed_tokens.weight", "F32", (64, 32), rng.standard_normal((64, 32)).astype(np.float32).tobytes()),
        ("model.layers.0.input_layernorm.weight", "F32", (256,), rng.random(256).astype(np.float32).tobytes()),
        ("model.layers.0.self_attn.q_proj.weight", "F32", q.shape, q.astype("<f4").tobytes()),
        ("model.layers.0.self_attn.o_proj.weight", "BF16", o.shape, o_bf16.astype("<u2").tobytes()),
        ("model.layers.0.self_attn.o_proj.bias", "F16", (512,), rng.standard_normal(512).astype("<f2").tobytes()),
        ("model.norm.weight", "F32", (256,), np.ones(256, np.float32).tobytes()),
        ("position_ids", "I64", (1, 16), np.arange(16, dtype="<i8").tobytes()),
    ]


def load_snippet():
    doc = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "format.md")
    text = open(doc, encoding="utf-8").read()
    code = re.search(r"<!-- snippet:load_layer[^>]*-->\s*```python\n(.*?)```", text, re.S).group(1)
    ns = {}
    exec(code, ns)
    return ns["load_layer"]


def quantize_checkpoint():
    import numpy as np
    tensors = checkpoint_tensors()
    model = os.path.join(WORK, "model.safetensors")
    write_st(model, tensors, {"format": "pt"})
    # the same checkpoint, sharded in two files with an index
    write_st(os.path.join(WORK, "model-00001-of-00002.safetensors"), tensors[:3], {"format": "pt"})
    write_st(os.path.join(WORK, "model-00002-of-00002.safetensors"), tensors[3:], {"format": "pt"})
    index = os.path.join(WORK, "model.safetensors.index.json")
    with open(index, "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": {
            t[0]: "model-0000%d-of-00002.safetensors" % (1 if i < 3 else 2) for i, t in enumerate(tensors)}}, f)
    opts = ["--bpw", "0.8", "--iters", "8", "--seed", "3"]
    out = os.path.join(WORK, "out.safetensors")
    for p in [out, out + ".parts/options.json"]:
        if os.path.exists(p):
            os.remove(p)
    # 1) interrupted after one tensor, 2) resumed, 3) a fresh run and the sharded input agree byte for byte
    os.environ["NANOQUANT_TEST_STOP_AFTER"] = "1"
    run(["quantize", model, "-o", out] + opts, 1, r"interrupted after 1 tensors")
    del os.environ["NANOQUANT_TEST_STOP_AFTER"]
    if os.path.exists(out):
        fail("an interrupted run left " + out)
    p = run(["quantize", model, "-o", out] + opts, 0, None, r"done before, reused")
    if not re.search(r"2 factorized, 5 copied", p.stdout):
        fail("expected 2 factorized and 5 copied tensors")
    if os.path.exists(out + ".parts"):
        fail("the parts directory was not removed")
    fresh = os.path.join(WORK, "fresh.safetensors")
    run(["quantize", model, "-o", fresh, "-q"] + opts, 0, None, r"ratio")
    sharded = os.path.join(WORK, "sharded.safetensors")
    run(["quantize", index, "-o", sharded, "-q"] + opts, 0, None, r"ratio")
    a, b, c = (open(x, "rb").read() for x in (out, fresh, sharded))
    if a != b:
        fail("resumed output differs from an uninterrupted run")
    if a != c:
        fail("output of the sharded checkpoint differs from the single-file one")

    header, data = read_st(out)
    meta = header["__metadata__"]
    if meta.get("format") != "pt" or meta.get("nanoquant.format") != "nanoquant-factorized":
        fail("metadata not kept/added: %r" % meta)
    by_name = {t[0]: t for t in tensors}
    copied = ["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
              "model.layers.0.self_attn.o_proj.bias", "model.norm.weight", "position_ids"]
    for name in copied:
        _, dt, shape, raw = by_name[name]
        if header[name]["dtype"] != dt or header[name]["shape"] != list(shape) or raw_of(header, data, name) != raw:
            fail("copied tensor %s is not byte-identical" % name)
    load_layer = load_snippet()
    for name, src in [("model.layers.0.self_attn.q_proj.weight", "q"), ("model.layers.0.self_attn.o_proj.weight", "o")]:
        if name in header:
            fail(name + " should have been replaced by its factorization")
        info = json.loads(meta["nanoquant.layer." + name])
        W = np.frombuffer(by_name[name][3], dtype="<f4" if by_name[name][1] == "F32" else "<u2")
        if by_name[name][1] == "BF16":
            W = (W.astype(np.uint32) << 16).view(np.float32)
        W = W.reshape(by_name[name][2]).astype(np.float64)
        W_hat = load_layer(out, name)
        err = np.linalg.norm(W - W_hat) / np.linalg.norm(W)
        print(f"{name}: rank {info['rank']} bpw {info['bpw']:.4f} rel_error recorded {info['rel_error']:.5f}, "
              f"from the file via the docs snippet {err:.5f}")
        # the file stores F16 scales: every entry s_out_i·(U·Vᵀ)_ij·s_in_j of W_hat moves by at most
        # (1 + 2^-11)^2 - 1 < 2^-10 of itself when both scales are rounded, so the error measured on the
        # file differs from the recorded one by at most 2^-10·||W_hat||/||W|| (plus float rounding)
        f16_bound = 2.0 ** -10 * np.linalg.norm(W_hat) / np.linalg.norm(W) + 1e-6
        print(f"  |difference| {abs(err - info['rel_error']):.2e}, F16 bound {f16_bound:.2e}")
        if not (0 < err < 1) or abs(err - info["rel_error"]) > f16_bound or info["bpw"] > 0.8:
            fail("factorized layer %s inconsistent with its metadata" % name)
    p = run(["inspect", out], 0, None, r"2 factorized layers")
    for name in copied:
        if name not in p.stdout:
            fail("inspect does not list " + name)
    run(["inspect", out, "--json"], 0, None, r'"factorized_layers"')
    # a 0-element 2-D tensor selected for factorization is an error naming it
    bad = os.path.join(WORK, "zero.safetensors")
    write_st(bad, [("layer.weight", "F32", (0, 8), b"")])
    run(["quantize", bad, "-o", os.path.join(WORK, "zero_out.safetensors")], 1, r"tensor 'layer.weight' has 0 elements")
    run(["quantize", model, "-o", os.path.join(WORK, "x.safetensors"), "--include", "("], 2, r"regular expression")


def quantize_kept_dense():
    """A selected 2-D tensor too small for the budget is kept dense (byte-identical) next to a real
    one that is factorized; bad --bpw values are usage errors before any work."""
    import numpy as np
    q = np.load(os.path.join(DATA, "use_lite_L0_attn_q.npy"))
    tiny = np.arange(16, dtype="<f4").reshape(4, 4) / 7.0
    small_bf16 = (np.linspace(-1, 1, 6, dtype=np.float32).view(np.uint32) >> 16).astype("<u2")
    tensors = [
        ("layers.0.tiny.weight", "F32", (4, 4), tiny.tobytes()),
        ("layers.0.q_proj.weight", "F32", q.shape, q.astype("<f4").tobytes()),
        ("layers.0.small.weight", "BF16", (2, 3), small_bf16.tobytes()),
        ("layers.0.norm.weight", "F32", (4,), np.ones(4, np.float32).tobytes()),
    ]
    model = os.path.join(WORK, "model.safetensors")
    write_st(model, tensors)
    out = os.path.join(WORK, "out.safetensors")
    for d in ["", ".parts/options.json"]:
        if os.path.exists(out + d):
            os.remove(out + d)
    opts = ["--include", r"^layers\.", "--bpw", "0.8", "--iters", "8"]
    p = run(["quantize", model, "-o", out] + opts, 0, None,
            r"4 tensors, 1 to factorize at 0\.8 bpw, 2 kept dense \(too small for the budget\), 1 to copy")
    # the reason with the numbers, in each tensor's progress line: 0.8 bpw of a 4x4 matrix is
    # 12.8 bits, its two scale vectors need 16*(4+4) = 128 bits, one rank 8 more: (128+8)/16 = 8.5 bpw
    if not re.search(r"layers\.0\.tiny\.weight +4x4 +kept dense: bpw = 0\.8 gives 12\.8 bits for a 4x4 matrix, "
                     r"but its 2 scale vectors alone need 128 bits and each rank 8 more: the smallest budget is "
                     r"8\.5 bpw", p.stdout):
        fail("no kept-dense progress line with the numbers for the 4x4 tensor")
    if not re.search(r"layers\.0\.small\.weight +2x3 +kept dense: .*the smallest budget is", p.stdout):
        fail("no kept-dense progress line for the 2x3 tensor")
    if not re.search(r"1 factorized, 1 copied, 2 kept dense", p.stdout):
        fail("the summary does not count the kept-dense tensors")
    header, data = read_st(out)
    for name, dt, shape, raw in [tensors[0], tensors[2], tensors[3]]:
        if header.get(name, {}).get("dtype") != dt or header[name]["shape"] != list(shape) or \
                raw_of(header, data, name) != raw:
            fail("tensor %s is not byte-identical in the output" % name)
    name = "layers.0.q_proj.weight"
    if name in header or name + ".u" not in header:
        fail(name + " was not replaced by its factorization")
    info = json.loads(header["__metadata__"]["nanoquant.layer." + name])
    W_hat = load_snippet()(out, name)
    err = np.linalg.norm(q - W_hat) / np.linalg.norm(q)
    print(f"{name}: rank {info['rank']} bpw {info['bpw']:.4f}, rel_error from the file {err:.5f}")
    if not (0 < err < 1) or info["bpw"] > 0.8 or abs(err - info["rel_error"]) > 0.01:
        fail("the factorized layer is inconsistent with its metadata")
    run(["inspect", out], 0, None, r"1 factorized layer")
    # -q: the summary alone, with the same counts
    run(["quantize", model, "-o", os.path.join(WORK, "quiet.safetensors"), "-q"] + opts, 0, None,
        r"1 factorized, 1 copied, 2 kept dense")
    # a budget no selected tensor can hold is not a usage error: everything is kept dense
    run(["quantize", model, "-o", os.path.join(WORK, "all_dense.safetensors"), "--include", r"^layers\.",
         "--bpw", "0.01", "--iters", "2", "-q"], 0, None, r"0 factorized, 1 copied, 3 kept dense")
    # genuinely bad values: exit code 2 before any work (no output, no parts directory)
    bad_out = os.path.join(WORK, "bad.safetensors")
    for v in ["0", "-1", "-0.5", "nan", "inf"]:
        run(["quantize", model, "-o", bad_out, "--bpw", v], 2, r"--bpw must be a positive number, got")
        if os.path.exists(bad_out) or os.path.exists(bad_out + ".parts"):
            fail("--bpw %s: a usage error left files behind" % v)
    run(["quantize", model, "-o", bad_out, "--iters", "0"], 2, r"--iters must be >= 1, got 0")


def install_demo():
    """`cmake --install` into a fresh prefix; the installed binary runs the demo from an empty
    directory, without NANOQUANT_DATA_DIR, and must use the installed data."""
    global NQ
    import shutil
    prefix = os.path.join(WORK, "prefix")
    shutil.rmtree(prefix, ignore_errors=True)
    p = subprocess.run([os.environ["NQ_CMAKE"], "--install", os.environ["NQ_BUILD_DIR"], "--prefix", prefix],
                       capture_output=True, text=True)
    print(p.stdout[-3000:], p.stderr[-3000:])
    if p.returncode != 0:
        fail("cmake --install failed with exit code %d" % p.returncode)
    NQ = os.path.join(prefix, "bin", "nanoquant")
    data = os.path.join(prefix, "share", "nanoquant", "data")
    for f in ["use_lite_L0_attn_q.npy", "use_lite_L0_ffn_up.npy", "use_lite_L1_ffn_down.npy", "LICENSE"]:
        if not os.path.isfile(os.path.join(data, f)):
            fail("not installed: " + os.path.join(data, f))
    readme = open(os.path.join(data, "README.md"), encoding="utf-8").read()
    if "Universal Sentence Encoder Lite" not in readme or "Apache-2.0" not in readme:
        fail("the installed data README lacks the attribution")
    empty = os.path.join(WORK, "empty_cwd")
    os.makedirs(empty, exist_ok=True)
    env = sanitizer_env()
    env.pop("NANOQUANT_DATA_DIR", None)
    p = run(["demo", "--iters", "5", "--no-gemv"], 0, None, r"real weight matrices from ", cwd=empty, env=env)
    used = re.search(r"real weight matrices from (.*)", p.stdout).group(1).strip()
    if os.path.realpath(used) != os.path.realpath(data):
        fail("the installed demo used %s, not the installed data %s" % (used, data))
    rows = re.findall(r"^use_lite_\S+ +\d+x\d+ +[\d.]+ +\d+ +[\d.]+ +([\d.]+)", p.stdout, re.M)
    if len(rows) != 9 or not all(0 < float(e) < 1 for e in rows):
        fail("expected 9 table rows with 0 < rel_error < 1, got %r" % rows)


def factorize_roundtrip():
    import numpy as np
    W = np.load(os.path.join(DATA, "use_lite_L0_attn_q.npy")).astype(np.float64)
    out = os.path.join(WORK, "q.safetensors")
    p = run(["factorize", os.path.join(DATA, "use_lite_L0_attn_q.npy"), "--bpw", "1.0", "--iters", "30",
             "--export", "three-scale", "--refit-scales", "--json", "-o", out], 0)
    j = json.loads(p.stdout)
    for key in ["rows", "cols", "rank", "bpw", "iterations", "seconds", "rel_error", "status"]:
        if key not in j:
            fail("--json lacks " + key)
    if (j["rows"], j["cols"], j["rank"], j["iterations"]) != (256, 256, 96, 30):
        fail("unexpected --json values %r" % j)
    W_hat = load_snippet()(out, "use_lite_L0_attn_q")
    err = np.linalg.norm(W - W_hat) / np.linalg.norm(W)
    if abs(err - j["rel_error_stored"]) > 1e-4 or abs(err - j["rel_error"]) > 5e-3:
        fail(f"numpy sees rel_error {err}, nanoquant reported {j['rel_error']} / {j['rel_error_stored']}")
    print(f"rel_error {j['rel_error']:.5f}, stored {j['rel_error_stored']:.5f}, numpy {err:.5f}")
    # the same tensor through FILE.safetensors:TENSOR gives the same factorization
    st_path = os.path.join(WORK, "one.safetensors")
    write_st(st_path, [("q", "F32", W.shape, W.astype("<f4").tobytes()), ("n", "F32", (4,), b"\0" * 16)])
    p2 = run(["factorize", st_path + ":q", "--bpw", "1.0", "--iters", "30", "--export", "three-scale",
              "--refit-scales", "--json"], 0)
    if json.loads(p2.stdout)["rel_error"] != j["rel_error"]:
        fail("safetensors input gives a different result than .npy input")


JSON_KEYS = ["rows", "cols", "rank", "bpw", "iterations", "seconds", "rel_error", "method", "status"]


def factorize_json(args):
    p = run(["factorize"] + args + ["--json"], 0)
    j = json.loads(p.stdout)
    for key in JSON_KEYS:
        if key not in j:
            fail("--json lacks " + key)
    return j


def factorize_methods():
    """Every --method on a real matrix: the JSON fields and the expected ordering of the errors."""
    import numpy as np
    q = os.path.join(DATA, "use_lite_L0_attn_q.npy")
    W = np.load(q).astype(np.float64)
    res = {}
    for method, extra in [("admm", ["--iters", "30"]), ("dbf", ["--iters", "30"]), ("sign", []),
                          ("residual-2", []), ("residual-3", []), ("svd", [])]:
        j = factorize_json([q, "--method", method] + extra)
        if j["method"] != method or (j["rows"], j["cols"]) != (256, 256):
            fail("unexpected --json values %r" % j)
        res[method] = j
        print(f"{method}: rank {j['rank']} bpw {j['bpw']:.4f} rel_error {j['rel_error']:.5f}")
    # admm and dbf at the default 1 bpw: rank 96 from the same rule (multiples of 32; dbf: three scales)
    for m in ["admm", "dbf"]:
        if res[m]["rank"] != 96 or not (0.8 < res[m]["bpw"] <= 1.0) or res[m]["iterations"] != 30 or not (0 < res[m]["rel_error"] < 1):
            fail(m + ": unexpected %r" % res[m])
    if abs(res["dbf"]["rel_error"] - res["admm"]["rel_error"]) > 0.05:
        fail("dbf (%.4f) is not close to admm (%.4f)" % (res["dbf"]["rel_error"], res["admm"]["rel_error"]))
    # full-size sign paths: K bits + 16-bit scales, no rank; more paths, less error
    for m, K in [("sign", 1), ("residual-2", 2), ("residual-3", 3)]:
        if res[m]["rank"] is not None or res[m]["paths"] != K or abs(res[m]["bpw"] - (K + 16 * K * 512 / 65536)) > 1e-9:
            fail(m + ": unexpected %r" % res[m])
    if not (res["residual-3"]["rel_error"] < res["residual-2"]["rel_error"] < res["sign"]["rel_error"] < 1):
        fail("errors do not fall with the number of sign paths")
    # svd: the largest rank whose 16-bit factors fit 1 bpw, k = floor(65536 / (16 * 512)) = 8
    sv = res["svd"]
    if sv["rank"] != 8 or abs(sv["bpw"] - 1.0) > 1e-9 or not (0 < sv["rel_error"] < 1):
        fail("svd: unexpected %r" % sv)
    # ... and its error is that of the rank-8 truncated SVD (up to the 16-bit rounding)
    s = np.linalg.svd(W, compute_uv=False)
    ref = np.sqrt((s[8:] ** 2).sum() / (s ** 2).sum())
    if abs(sv["rel_error"] - ref) > 2e-3:
        fail("svd rel_error %.5f, numpy's rank-8 truncation %.5f" % (sv["rel_error"], ref))
    # svd with --rank, residual-2 with a compatible --bpw
    if factorize_json([q, "--method", "svd", "--rank", "16"])["rank"] != 16:
        fail("svd --rank 16 not honoured")
    if factorize_json([q, "--method", "residual-2", "--bpw", "2.25"])["rel_error"] != res["residual-2"]["rel_error"]:
        fail("residual-2 --bpw 2.25 differs from residual-2")
    # dbf writes a factorized layer that reads back with its error
    out = os.path.join(WORK, "dbf.safetensors")
    j = factorize_json([q, "--method", "dbf", "--iters", "30", "--scale-dtype", "f32", "-o", out])
    W_hat = load_snippet()(out, "use_lite_L0_attn_q")
    err = np.linalg.norm(W - W_hat) / np.linalg.norm(W)
    if abs(err - j["rel_error"]) > 1e-4:
        fail(f"numpy sees rel_error {err} in the dbf file, nanoquant reported {j['rel_error']}")


def outlier_activations(tokens, n, seed):
    """N(0, I) tokens + a shared rank-8 component, 4 outlier channels scaled by 20..100 (float32)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((tokens, n)) + rng.standard_normal((tokens, 8)) @ rng.standard_normal((8, n)) * 0.5
    ch = rng.choice(n, 4, replace=False)
    X[:, ch] *= rng.uniform(20, 100, 4)
    return X.astype(np.float32)


def factorize_calib():
    """--calib: layer reconstruction lowers the output error; -o writes the refined layer; bad X."""
    import numpy as np
    q = os.path.join(DATA, "use_lite_L0_attn_q.npy")
    W = np.load(q).astype(np.float64)
    X = outlier_activations(1024, 256, 7)
    xp = os.path.join(WORK, "x.npy")
    np.save(xp, X)
    out = os.path.join(WORK, "refined.safetensors")
    common = [q, "--bpw", "1", "--iters", "30", "--calib", xp, "--epochs", "3"]
    j = factorize_json(common + ["--scale-dtype", "f32", "-o", out])
    for key in ["out_rel_error", "out_rel_error_before", "rel_error_init", "tokens", "epochs"]:
        if key not in j:
            fail("--json with --calib lacks " + key)
    print(f"admm: output rel_error {j['out_rel_error_before']:.5f} -> {j['out_rel_error']:.5f}")
    if not (0 < j["out_rel_error"] < j["out_rel_error_before"] < 1) or j["tokens"] != 1024 or j["epochs"] != 3:
        fail("reconstruction did not lower the output error: %r" % j)
    # the file holds the refined layer: numpy's output error of it is the reported one
    W_hat = load_snippet()(out, "use_lite_L0_attn_q")
    Xd = X.astype(np.float64)
    e_out = np.linalg.norm(Xd @ (W - W_hat).T) / np.linalg.norm(Xd @ W.T)
    if abs(e_out - j["out_rel_error"]) > 1e-4 or abs(np.linalg.norm(W - W_hat) / np.linalg.norm(W) - j["rel_error"]) > 1e-4:
        fail(f"numpy sees output rel_error {e_out} in the file, nanoquant reported {j['out_rel_error']}")
    # float16 calibration inputs read as well; dbf is refined too
    x16 = os.path.join(WORK, "x16.npy")
    np.save(x16, X.astype(np.float16))
    j16 = factorize_json([q, "--method", "dbf", "--iters", "30", "--calib", x16, "--epochs", "2"])
    print(f"dbf: output rel_error {j16['out_rel_error_before']:.5f} -> {j16['out_rel_error']:.5f}")
    if not (j16["out_rel_error"] < j16["out_rel_error_before"]):
        fail("dbf + reconstruction did not lower the output error: %r" % j16)
    # bad calibration inputs: one line naming the file and the numbers
    bad = os.path.join(WORK, "x_wide.npy")
    np.save(bad, X[:, :100])
    run(["factorize"] + common[:-4] + ["--calib", bad], 1, re.escape(bad) + r": calibration inputs have 100 columns .*n = 256")
    run(["factorize", q, "--calib", bad, "--iters", "2"], 1, r"100 columns \(shape \(1024, 100\)\)")
    nan = os.path.join(WORK, "x_nan.npy")
    Xn = X.copy()
    Xn[5, 9] = np.inf
    np.save(nan, Xn)
    run(["factorize", q, "--calib", nan, "--iters", "2"], 1, re.escape(nan) + r": .*1 non-finite value \(first at row 5, col 9")
    empty = os.path.join(WORK, "x_empty.npy")
    np.save(empty, np.zeros((0, 256), np.float32))
    run(["factorize", q, "--calib", empty, "--iters", "2"], 1, re.escape(empty) + r": .*0 tokens")
    run(["factorize", q, "--calib", os.path.join(WORK, "missing.npy"), "--iters", "2"], 1, r"missing\.npy")
    run(["factorize", q, "--calib", xp, "--epochs", "-1"], 2, r"--epochs must be >= 0, got -1")
    run(["factorize", q, "--calib", xp, "--method", "svd"], 2, r"--calib .*--method svd is not supported")


def factorize_method_usage():
    q = os.path.join(DATA, "use_lite_L0_attn_q.npy")
    for bad in ["frobnicate", "residual", "residual-", "residual-x", "ADMM", "sign2"]:
        run(["factorize", q, "--method", bad], 2, r"--method: unknown method '" + re.escape(bad) + "'")
    run(["factorize", q, "--method", "residual-0"], 2, r"--method residual-0: K must be in \[1, 8\], got 0")
    run(["factorize", q, "--method", "residual-9"], 2, r"K must be in \[1, 8\], got 9")
    run(["factorize", q, "--method", "sign", "--bpw", "0.5"], 2, r"--bpw 0.5 does not fit --method sign: .*1.125 bpw")
    run(["factorize", q, "--method", "residual-2", "--bpw", "1"], 2, r"--bpw 1 does not fit --method residual-2.*\[2, 3\)")
    run(["factorize", q, "--method", "residual-2", "--rank", "32"], 2, r"--rank 32 does not apply to --method residual-2")
    run(["factorize", q, "--method", "svd", "--bpw", "0.05"], 2, r"--bpw 0.05 is below the smallest svd budget.*0.125 bpw")
    run(["factorize", q, "--method", "svd", "--rank", "300"], 2, r"--rank must be in \[1, min\(m, n\)\] = \[1, 256\], got 300")
    run(["factorize", q, "--method", "dbf", "--bpw", "0.001"], 2, r"smallest budget is")
    for m in ["sign", "residual-2", "svd"]:
        run(["factorize", q, "--method", m, "-o", os.path.join(WORK, "x.safetensors")], 2,
            r"-o writes a low-rank binary factorization .*--method " + m + r" does not produce")
        run(["factorize", q, "--method", m, "--iters", "5"], 2, r"--iters applies to --method admm and dbf only")
    run(["factorize", q, "--method", "dbf", "--schedule", "cubic"], 2, r"--schedule applies to --method admm only")
    run(["factorize", q, "--method", "dbf", "--export", "three-scale"], 2, r"dbf always exports three scales")
    run(["factorize", q, "--epochs", "3"], 2, r"--epochs needs --calib")
    run(["factorize", q, "--calib", q.replace(".npy", ".txt")], 2, r"--calib expects a \.npy file")


# ---------------------------------------------------------------- error paths and options --------
def gauss_f32(rows, cols, seed):
    """Seeded Gaussian float32 bytes (standard library only)."""
    import random
    rng = random.Random(seed)
    return struct.pack("<%df" % (rows * cols), *[rng.gauss(0.0, 1.0) for _ in range(rows * cols)])


SUBCOMMANDS = {"bench-gemv": "--bpw", "demo": "--no-gemv", "factorize": "--calib", "inspect": "--json",
               "quantize": "--exclude", "version": None}


def usage_help():
    """--help on the tool and on every subcommand: exit code 0, the usage line and the options."""
    p = run(["--help"], 0, None, r"Usage: .*nanoquant")
    for sub in SUBCOMMANDS:
        if not re.search(r"(?m)^\s+" + re.escape(sub) + r"\s", p.stdout):
            fail("nanoquant --help does not list " + sub)
    for sub, flag in SUBCOMMANDS.items():
        p = run([sub, "--help"], 0, None, r"Usage: .*nanoquant " + re.escape(sub))
        if flag and flag not in p.stdout:
            fail(f"nanoquant {sub} --help does not document {flag}")
        if p.stderr.strip():
            fail(f"nanoquant {sub} --help wrote to stderr")
    run(["--version"], 0, None, r"^nanoquant \d+\.\d+\.\d+\n$")
    q = os.path.join(DATA, "use_lite_L0_attn_q.npy")
    run(["factorize", q, "--frobnicate"], 2, r"^nanoquant: .*--frobnicate.*\(see --help\)$")
    run(["factorize"], 2, r"^nanoquant: input is required \(see --help\)$")


def usage_bad_options():
    """Every numeric option no other test passes, with a bad value: exit code 2, one line naming it."""
    q = os.path.join(DATA, "use_lite_L0_attn_q.npy")
    x = os.path.join(DATA, "use_lite_L0_ffn_up.npy")  # any .npy for --calib: values are checked first
    run(["factorize", q, "--threads", "-1"], 2, r"^nanoquant factorize: --threads must be >= 0, got -1$")
    run(["demo", "--threads", "-2"], 2, r"^nanoquant demo: --threads must be >= 0, got -2$")
    run(["demo", "--iters", "-1"], 2, r"^nanoquant demo: --iters must be >= 1, got -1$")
    for flag, value, msg in [("--batch-size", "0", r"--batch-size must be >= 1, got 0"),
                             ("--lr", "-1", r"--lr must be a number >= 0, got -1"),
                             ("--lr", "nan", r"--lr must be a number >= 0, got nan"),
                             ("--lr-scale", "-0.5", r"--lr-scale must be a number >= 0, got -0.5"),
                             ("--polish-rounds", "-1", r"--polish-rounds must be >= 0, got -1"),
                             ("--refit-rounds", "-3", r"--refit-rounds must be >= 0, got -3")]:
        run(["factorize", q, "--calib", x, flag, value], 2, r"^nanoquant factorize: " + msg + "$")
        run(["factorize", q, flag, "1"], 2, r"^nanoquant factorize: " + re.escape(flag) + r" needs --calib")
    run(["bench-gemv", "--rows", "10", "--cols", "10", "--threads", "-1"], 2, r"^nanoquant: --threads")


def index_errors():
    """A sharded checkpoint's index: every malformation is exit code 1 and one line naming the index
    and the entry (docs/format.md: shard names relative, no absolute paths, no '..')."""
    shard = os.path.join(WORK, "a.safetensors")
    write_st(shard, [("w", "F32", (8, 6), f32(48))])
    write_st(os.path.join(WORK, "b.safetensors"), [("w", "F32", (8, 6), f32(48))])
    cases = [
        ("absolute", json.dumps({"weight_map": {"w": shard}}),
         r"weight_map entry 'w' names shard '" + re.escape(shard) + r"', which is not a relative path"),
        ("dotdot", json.dumps({"weight_map": {"w": "../a.safetensors"}}),
         r"weight_map entry 'w' names shard '\.\./a\.safetensors', which is not a relative path"),
        ("inner_dotdot", json.dumps({"weight_map": {"w": "sub/../a.safetensors"}}),
         r"names shard 'sub/\.\./a\.safetensors', which is not a relative path"),
        ("empty_name", json.dumps({"weight_map": {"w": ""}}), r"names shard '', which is not a relative path"),
        ("two_shards", '{"weight_map": {"w": "a.safetensors", "w": "b.safetensors"}}',
         r"tensor 'w' is listed twice in the weight_map \(shards 'a\.safetensors' and 'b\.safetensors'\)"),
        ("no_weight_map", json.dumps({"metadata": {"total_size": 0}}), r'checkpoint index has no "weight_map" object'),
        ("weight_map_list", json.dumps({"weight_map": ["w"]}), r'checkpoint index has no "weight_map" object'),
        ("invalid_json", '{"weight_map": {"w": "a.safetensors"', r"not a valid JSON checkpoint index"),
        ("not_a_name", json.dumps({"weight_map": {"w": 3}}), r"weight_map entry 'w' is not a file name"),
        ("not_in_shard", json.dumps({"weight_map": {"w": "a.safetensors", "v": "a.safetensors"}}),
         r"tensor 'v' is listed in shard .*a\.safetensors, which does not contain it"),
        ("missing_shard", json.dumps({"weight_map": {"w": "gone.safetensors"}}),
         re.escape(os.path.join(WORK, "gone.safetensors")) + r": cannot open"),
    ]
    out = os.path.join(WORK, "index_out.safetensors")
    for name, text, pattern in cases:
        index = os.path.join(WORK, name + ".index.json")
        with open(index, "w") as f:
            f.write(text)
        # the index names itself first, except where the shard it names cannot be opened
        named = "" if name == "missing_shard" else re.escape(index) + r": "
        run(["quantize", index, "-o", out, "--iters", "2"], 1, r"^nanoquant quantize: " + named + r".*" + pattern)
        if os.path.exists(out) or os.path.exists(out + ".parts"):
            fail(name + ": a rejected index left " + out + " or its parts directory")
        run(["factorize", index + ":w", "--iters", "2"], 1, r"^nanoquant factorize: " + named + r".*" + pattern)
    # the same shard through a valid index is fine
    index = os.path.join(WORK, "good.index.json")
    with open(index, "w") as f:
        json.dump({"weight_map": {"w": "a.safetensors"}}, f)
    run(["factorize", index + ":w", "--iters", "2", "--rank", "2"], 0, None, r"rel_error")


def header_cap():
    """The 100 MB cap on a safetensors header (sparse files: nothing is written but the length).
    100000000 bytes is allowed (then fails as JSON: all zero bytes), 100000001 is refused by size."""
    for n, pattern in [(100000001, r"header length 100000001 exceeds the limit of 100000000 bytes"),
                       (100000000, r"header is not valid UTF-8 JSON")]:
        path = os.path.join(WORK, "cap_%d.safetensors" % n)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", n))
            f.truncate(8 + n)
        for command in ["inspect", "factorize"]:
            run([command, path] + (["--iters", "2"] if command == "factorize" else []), 1,
                r"^nanoquant " + command + r": " + re.escape(path) + r": " + pattern)
        os.remove(path)


def small_model(path):
    tensors = [("layers.0.q_proj.weight", "F32", (96, 64), gauss_f32(96, 64, 1)),
               ("layers.0.k_proj.weight", "F32", (64, 64), gauss_f32(64, 64, 2)),
               ("layers.0.norm.weight", "F32", (64,), gauss_f32(64, 1, 3))]
    write_st(path, tensors)
    return tensors


def quantize_restart():
    """An interrupted run resumed with other options starts over (and says so); the result is the
    uninterrupted run's with the new options, byte for byte. --exclude replaces the default list."""
    model = os.path.join(WORK, "model.safetensors")
    tensors = small_model(model)
    out, fresh = os.path.join(WORK, "out.safetensors"), os.path.join(WORK, "fresh.safetensors")
    for p in [out, out + ".parts/options.json", fresh]:
        if os.path.exists(p):
            os.remove(p)
    # another seed: a part of the first run, if reused, would make the output differ from a fresh run
    a = ["--bpw", "0.8", "--iters", "4", "--seed", "1"]
    b = ["--bpw", "1.0", "--iters", "4", "--seed", "2"]
    env = sanitizer_env()
    env["NANOQUANT_TEST_STOP_AFTER"] = "1"
    run(["quantize", model, "-o", out] + a, 1, r"^nanoquant quantize: .*interrupted after 1 tensors", env=env)
    if not os.path.exists(os.path.join(out + ".parts", "options.json")):
        fail("the interrupted run left no parts directory")
    p = run(["quantize", model, "-o", out] + b, 0, None, r"options differ from the interrupted run; starting over")
    if "done before, reused" in p.stdout:
        fail("a part made with other options was reused")
    run(["quantize", model, "-o", fresh, "-q"] + b, 0, None, r"2 factorized, 1 copied")
    if open(out, "rb").read() != open(fresh, "rb").read():
        fail("the restarted run differs from an uninterrupted run with the same options")
    # --exclude replaces the default list: excluding k_proj copies it byte for byte, q_proj is factorized
    excl = os.path.join(WORK, "excl.safetensors")
    p = run(["quantize", model, "-o", excl, "--exclude", "k_PROJ"] + b, 0, None, r"1 factorized, 2 copied")
    header, data = read_st(excl)
    name, dt, shape, raw = tensors[1]
    if header.get(name, {}).get("dtype") != dt or raw_of(header, data, name) != raw:
        fail("--exclude k_PROJ (case-insensitive): k_proj was not copied byte for byte")
    if tensors[0][0] in header or tensors[0][0] + ".u" not in header:
        fail("q_proj was not factorized")
    # an empty --exclude factorizes every 2-D tensor, a 1-D one is still copied
    run(["quantize", model, "-o", os.path.join(WORK, "all.safetensors"), "--exclude", "", "-q"] + b, 0, None,
        r"2 factorized, 1 copied")
    run(["quantize", model, "-o", os.path.join(WORK, "x.safetensors"), "--exclude", "[z-a]"], 2,
        r"^nanoquant quantize: --include/--exclude: invalid regular expression")


def factorize_options():
    """The options no other test passes change what they say: --fine-rank, --threads, and the
    calibration options --lr, --lr-scale, --batch-size, --polish-rounds and --refit-rounds."""
    q = os.path.join(DATA, "use_lite_L0_attn_q.npy")
    base = factorize_json([q, "--iters", "20"])
    fine = factorize_json([q, "--iters", "20", "--fine-rank"])
    # 1 bpw of 256x256: 65536 bits; scales 16·512 bits, each rank 512 bits: rank <= 112; 96 with the
    # multiple-of-32 rule, 112 with the fine one (fills the budget: bpw 1.0 exactly)
    if base["rank"] != 96 or fine["rank"] != 112 or abs(fine["bpw"] - 1.0) > 1e-9:
        fail("--fine-rank: ranks %r and %r, expected 96 and 112" % (base["rank"], fine["rank"]))
    if not fine["rel_error"] < base["rel_error"]:
        fail("a larger rank did not lower the error")
    # the result does not depend on the thread count
    t1 = factorize_json([q, "--iters", "20", "--threads", "1"])
    t2 = factorize_json([q, "--iters", "20", "--threads", "2"])
    if t1["rel_error"] != t2["rel_error"] or t1["rel_error"] != base["rel_error"]:
        fail("--threads changed the result: %r %r %r" % (t1["rel_error"], t2["rel_error"], base["rel_error"]))
    x = os.path.join(WORK, "calib.npy")
    write_npy_f32(x, 256, 256, 11)
    common = [q, "--iters", "20", "--calib", x, "--epochs", "2"]
    # nothing may move: the output error is the starting one exactly
    frozen = factorize_json(common + ["--lr", "0", "--lr-scale", "0", "--polish-rounds", "0", "--refit-rounds", "0"])
    if frozen["out_rel_error"] != frozen["out_rel_error_before"]:
        fail("--lr 0 --lr-scale 0 --polish-rounds 0 --refit-rounds 0 still changed the layer: %r" % frozen)
    results = {}
    for name, extra in [("default", []), ("lr", ["--lr", "0.02"]), ("batch", ["--batch-size", "32"]),
                        ("polish", ["--polish-rounds", "0"]), ("refit", ["--refit-rounds", "0"])]:
        j = factorize_json(common + extra)
        if not (0 < j["out_rel_error"] < j["out_rel_error_before"] < 1):
            fail(name + ": reconstruction did not lower the output error: %r" % j)
        results[name] = j["out_rel_error"]
        print(f"--calib {' '.join(extra) or '(defaults)'}: output rel_error {j['out_rel_error']:.6f}")
    for name in ["lr", "batch", "polish", "refit"]:
        if results[name] == results["default"]:
            fail("the option of case '%s' did not change the result" % name)
    # the polish never raises the loss: without it the output error is not lower
    if results["polish"] < results["default"]:
        fail("turning the sign polish off lowered the output error")


def write_npy_f32(path, rows, cols, seed):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    pad = 64 - (10 + len(header) + 1) % 64
    with open(path, "wb") as f:
        f.write(npy(header + " " * pad, gauss_f32(rows, cols, seed)))


def demo_gemv():
    """The demo with its GEMV columns: every row has dense and packed times and a speedup, and the
    footer names the float32 kernel that was timed."""
    p = run(["demo", "--iters", "5", "--threads", "1"], 0, None, r"real weight matrices from ")
    rows = re.findall(r"^use_lite_\S+ +\d+x\d+ +[\d.]+ +\d+ +[\d.]+ +([\d.]+) +[\d.]+s +([\d.]+) +([\d.]+) +([\d.]+)x$",
                      p.stdout, re.M)
    if len(rows) != 9:
        fail("expected 9 table rows with GEMV columns, got %d" % len(rows))
    for err, dense, packed, speedup in rows:
        if not (0 < float(err) < 1 and float(dense) > 0 and float(packed) > 0):
            fail("a demo row has a bad value: %r" % ((err, dense, packed, speedup),))
        if abs(float(dense) / float(packed) - float(speedup)) > 0.02 * float(speedup) + 0.01:
            fail("speedup %s is not dense/packed = %s/%s" % (speedup, dense, packed))
    if not re.search(r"packed = best kernel \((scalar|avx2|avx512|amx|neon)-f32\)", p.stdout):
        fail("the GEMV footer does not name the kernel")


def factorize_numerical_failure():
    """A finite matrix too large for float arithmetic (entries up to 3e38: the squares overflow) is a
    numerical failure, not a usage error: exit code 1 and one line naming the solver and the cause."""
    import random
    rng = random.Random(1)
    path = os.path.join(WORK, "huge.npy")
    vals = [rng.choice([-1.0, 1.0]) * 3e38 * rng.random() for _ in range(64 * 64)]
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (64, 64), }"
    with open(path, "wb") as f:
        f.write(npy(header + " " * (64 - (10 + len(header) + 1) % 64), struct.pack("<4096f", *vals)))
    run(["factorize", path, "--iters", "5"], 1,
        r"^nanoquant factorize: .*AdmmSolver::solve: numerical-issue after 1 iterations \(a NaN or infinity "
        r"appeared; W may be too large for the scalar type\)$")
    run(["factorize", path, "--method", "dbf", "--iters", "5"], 1,
        r"^nanoquant factorize: dbf_factorize: a NaN or infinity appeared after 5 iterations$")
# ---------------------------------------------------------------- USE-Lite (quantize, encode) ---
def use_lite_model():
    """dist/model.json of the USE-Lite package (NANOQUANT_USE_LITE_MODEL, set by CMake with the rule
    of scripts/fetch-use-lite.sh); a missing package fails the test, never skips it."""
    path = os.environ.get("NANOQUANT_USE_LITE_MODEL", "")
    if not path or not os.path.isfile(path):
        fail("USE-Lite model %r not found: run scripts/fetch-use-lite.sh" % path)
    return path


def golden_sentences():
    path = os.path.join(os.path.dirname(__file__), "..", "data", "use_lite", "golden_sentences.json")
    return json.load(open(path, encoding="utf-8"))


def write_lines(name, lines, ending="\n"):
    path = os.path.join(WORK, name)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(s + ending for s in lines))
    return path


def fresh(path):
    """`path` removed, so that a test can check that a failed run did not write it."""
    if os.path.exists(path):
        os.remove(path)
    return path


def calib_sentences(n):
    """n ordinary sentences (no line breaks) from the golden set."""
    return [s for s in golden_sentences() if s.strip() and "\n" not in s and "\r" not in s][:n]


def package_copy(name, shard_edit=None, manifest_edit=None, drop=None):
    """A copy of the package in WORK/name: model.json (edited by manifest_edit(json)), vocab.json and
    the shards as symbolic links, except `drop` (left out) and the shard given to shard_edit(bytes)."""
    import shutil
    src = os.path.dirname(use_lite_model())
    dst = os.path.join(WORK, name)
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    manifest = json.load(open(os.path.join(src, "model.json"), encoding="utf-8"))
    for f in os.listdir(src):
        if f == "model.json" or f == drop or not (f.startswith("group") or f == "vocab.json"):
            continue
        if shard_edit and f == shard_edit[0]:
            with open(os.path.join(src, f), "rb") as i, open(os.path.join(dst, f), "wb") as o:
                o.write(shard_edit[1](i.read()))
        else:
            os.symlink(os.path.join(src, f), os.path.join(dst, f))
    if manifest_edit:
        manifest_edit(manifest)
    with open(os.path.join(dst, "model.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    return os.path.join(dst, "model.json")


def load_npy_rows(path):
    import numpy as np
    E = np.load(path)
    if E.dtype != np.float32 or E.ndim != 2 or E.shape[1] != 512:
        fail("%s: expected float32 [n, 512], got %s %r" % (path, E.dtype, E.shape))
    return E


QUANT_JSON_KEYS = ["model", "output", "calib", "pipeline", "bpw", "seed", "threads", "calibration", "options",
                   "stages", "seconds", "sizes", "layers"]
SIZE_KEYS = ["input_bytes", "output_bytes", "sign_bytes", "scale_bytes", "float_bytes", "embedding_bytes",
             "tokenizer_bytes", "header_bytes"]
LINEARS = ["layer0.qkv", "layer0.out", "layer0.dense", "layer0.up", "layer0.down", "layer1.qkv", "layer1.out",
           "layer1.up", "layer1.down", "head.dense"]


def use_lite_quantize_encode():
    """quantize --pipeline admm on 20 sentences (a few ADMM iterations), then encode with the result
    and with the float model.json: shapes, unit norms, the float model equal to TF.js's golden
    embeddings, the quantized file's embeddings agreeing with the pipeline's own calibration metric."""
    import numpy as np
    model = use_lite_model()
    sents = calib_sentences(20)
    # CRLF endings and empty lines in the calibration file: the empty lines are skipped
    calib = write_lines("calib.txt", sents[:10] + ["", ""] + sents[10:], "\r\n")
    q = fresh(os.path.join(WORK, "q.safetensors"))
    # --holdout 0: every calibration sentence is trained on and measured (compared with encode below)
    args = ["quantize", model, "-o", q, "--bpw", "0.8", "--calib", calib, "--pipeline", "admm", "--iters", "10",
            "--seed", "5", "--threads", "2", "--holdout", "0"]
    p = run(args + ["--json"], 0)
    if not re.search(r"stage admm: .*calibration cosine", p.stderr):
        fail("no progress line for stage admm on stderr")
    j = json.loads(p.stdout)
    for k in QUANT_JSON_KEYS:
        if k not in j:
            fail("--json lacks " + k)
    for k in SIZE_KEYS:
        if k not in j["sizes"]:
            fail("--json sizes lack " + k)
    cal = j["calibration"]
    if cal["train_sentences"] != 20 or cal["holdout_sentences"] != 0 or "holdout_cosine" in j["stages"][0]:
        fail("--holdout 0: expected 20 training sentences, none held out, got %r" % cal)
    if j["pipeline"] != "admm" or j["bpw"] != 0.8 or j["seed"] != 5 or j["calibration"]["sentences"] != 20:
        fail("unexpected --json values %r" % {k: j[k] for k in ["pipeline", "bpw", "seed", "calibration"]})
    if [s["stage"] for s in j["stages"]] != ["admm"]:
        fail("expected one stage admm, got %r" % j["stages"])
    st_ = j["stages"][0]
    if not (-1 <= st_["calib_cosine"] <= 1 and 0 <= st_["calib_recall_at_10"] <= 1 and st_["seconds"] >= 0):
        fail("stage metrics out of range: %r" % st_)
    if [l["name"] for l in j["layers"]] != LINEARS:
        fail("layers %r, expected %r" % ([l["name"] for l in j["layers"]], LINEARS))
    for l in j["layers"]:
        if not (l["rank"] >= 1 and 0 < l["bpw"] <= 0.8):
            fail("layer %r: expected a factorization within 0.8 bpw" % l)
    sz = j["sizes"]
    dist = os.path.dirname(model)
    manifest = json.load(open(model, encoding="utf-8"))
    in_bytes = os.path.getsize(model) + sum(os.path.getsize(os.path.join(dist, s))
                                            for g in manifest["weightsManifest"] for s in g["paths"])
    if sz["input_bytes"] != in_bytes or sz["output_bytes"] != os.path.getsize(q):
        fail("sizes %r: input %d, output %d bytes on disk" % (sz, in_bytes, os.path.getsize(q)))
    if sum(sz[k] for k in ["sign_bytes", "scale_bytes", "float_bytes", "tokenizer_bytes", "header_bytes"]) != \
            sz["output_bytes"]:
        fail("the bytes by kind do not add up to the file: %r" % sz)
    if sz["embedding_bytes"] != 8002 * 256 * 4 or sz["tokenizer_bytes"] != os.path.getsize(os.path.join(dist, "vocab.json")):
        fail("embedding or tokenizer bytes %r" % sz)
    # the same options give the same bytes (no timings in the file)
    q2 = fresh(os.path.join(WORK, "q2.safetensors"))
    run(["quantize", model, "-o", q2] + args[4:] + ["-q"], 0, None, r"wrote .*q2\.safetensors: USE-Lite")
    if open(q, "rb").read() != open(q2, "rb").read():
        fail("two runs with the same seed and options wrote different files")
    # inspect lists it
    p = run(["inspect", q], 0, None, r"10 factorized layers")
    for needle in ["use-lite", "embeddings", "layer0.ln_attn.gamma", "head.dense.bias", "layer1.down"]:
        if needle not in p.stdout:
            fail("inspect does not show " + needle)
    ji = json.loads(run(["inspect", q, "--json"], 0).stdout)
    if ji.get("architecture") != "use-lite" or len(ji["factorized_layers"]) != 10:
        fail("inspect --json: architecture %r, %d factorized layers" % (ji.get("architecture"), len(ji["factorized_layers"])))

    # encode with the float package equals TF.js on golden sentences (no line breaks in them; the
    # empty sentence, double spaces, non-ASCII and a very long line included)
    gold = golden_sentences()
    G = np.load(os.path.join(os.path.dirname(__file__), "..", "data", "use_lite", "golden_embeddings.npy"))
    pick = [i for i, s in enumerate(gold) if "\n" not in s and "\r" not in s]
    pick = pick[:6] + [i for i in pick if gold[i] == ""][:1] + [i for i in pick if "  " in gold[i]][:1] + \
        [i for i in pick if any(ord(c) > 127 for c in gold[i])][:3] + [max(pick, key=lambda i: len(gold[i]))]
    text = write_lines("golden.txt", [gold[i] for i in pick])
    emb_f = fresh(os.path.join(WORK, "float.npy"))
    run(["encode", model, text, "-o", emb_f, "--threads", "2"], 0, None, r"%d x 512 float32" % len(pick))
    F = load_npy_rows(emb_f)
    if F.shape[0] != len(pick):
        fail("float encode: %d rows for %d lines" % (F.shape[0], len(pick)))
    diff = np.abs(F - G[pick]).max()
    print("float encode vs TF.js on %d golden sentences: max abs difference %.3g" % (len(pick), diff))
    if diff > 1e-5:
        fail("float encode differs from the golden TF.js embeddings by %g" % diff)

    # encode with the quantized file: unit rows, one per line (an empty line counts), batch-independent
    emb_q = fresh(os.path.join(WORK, "quant.npy"))
    run(["encode", q, text, "-o", emb_q], 0, None, r"quantized model")
    Q = load_npy_rows(emb_q)
    if Q.shape[0] != len(pick) or np.abs(np.linalg.norm(Q, axis=1) - 1).max() > 1e-5:
        fail("quantized encode: shape %r, norms %r" % (Q.shape, np.linalg.norm(Q, axis=1)))
    emb_b = fresh(os.path.join(WORK, "quant_b3.npy"))
    run(["encode", q, text, "-o", emb_b, "--batch", "3", "--threads", "1", "-q"], 0)
    if np.abs(load_npy_rows(emb_b) - Q).max() > 1e-5:
        fail("quantized embeddings depend on the batch size or thread count")
    # the pipeline's calibration cosine is that of the saved file's embeddings against the float ones
    plain = write_lines("calib_plain.txt", sents)
    ef, eq = fresh(os.path.join(WORK, "calib_f.npy")), fresh(os.path.join(WORK, "calib_q.npy"))
    run(["encode", model, plain, "-o", ef, "-q"], 0)
    run(["encode", q, plain, "-o", eq, "-q"], 0)
    A, B = load_npy_rows(ef).astype(np.float64), load_npy_rows(eq).astype(np.float64)
    cos = float(np.mean(np.sum(A * B, axis=1) / (np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1))))
    print("calibration cosine: pipeline %.6f, from the files %.6f" % (st_["calib_cosine"], cos))
    if abs(cos - st_["calib_cosine"]) > 1e-4:
        fail("the quantized file's calibration cosine %.6f differs from the pipeline's %.6f" % (cos, st_["calib_cosine"]))
    # every line counts in encode, the trailing newline adds none; CRLF reads as LF
    crlf = write_lines("crlf.txt", ["a", "", "b"], "\r\n")
    e3 = fresh(os.path.join(WORK, "three.npy"))
    run(["encode", model, crlf, "-o", e3, "-q"], 0)
    E3 = load_npy_rows(e3)
    lf = write_lines("lf.txt", ["a", "", "b"])
    e3b = fresh(os.path.join(WORK, "three_lf.npy"))
    run(["encode", model, lf, "-o", e3b, "-q"], 0)
    if E3.shape[0] != 3 or not np.array_equal(E3, load_npy_rows(e3b)):
        fail("CRLF and LF files of 3 lines must give the same 3 rows")
    empty_row = F[pick.index([i for i in pick if gold[i] == ""][0])]
    if not np.allclose(E3[1], empty_row, atol=1e-6):
        fail("an empty line is not the embedding of the empty sentence")


def use_lite_bad(kind):
    """Bad input as a new user would try it: exit code 1, one line naming the file, no output."""
    model = use_lite_model()
    good_calib = write_lines("calib.txt", calib_sentences(4))
    out = fresh(os.path.join(WORK, "out.safetensors"))
    npy_out = fresh(os.path.join(WORK, "out.npy"))

    def quantize(m, calib=good_calib):
        return ["quantize", m, "-o", out, "--calib", calib, "--pipeline", "admm", "--iters", "2"]

    def encode(m, text=good_calib):
        return ["encode", m, text, "-o", npy_out]

    def expect(args, name, pattern):
        run(args, 1, r"^nanoquant (quantize|encode): " + re.escape(name) + r": .*" + pattern)
        for o in (out, npy_out):
            if os.path.exists(o):
                fail("a rejected input left " + o)

    if kind == "truncated_shard":
        m = package_copy(kind, shard_edit=("group1-shard7of7", lambda b: b[:-1000]))
        for args in (quantize(m), encode(m)):
            expect(args, m, r"weightsManifest group 0: the \d+ weights need \d+ bytes but the 7 shards .*"
                            r"group1-shard1of7 .. .*group1-shard7of7 hold \d+ .*; truncated or missing data")
    elif kind == "missing_shard":
        m = package_copy(kind, drop="group1-shard3of7")
        for args in (quantize(m), encode(m)):
            expect(args, m, r"shard 3 of 7 \(\"group1-shard3of7\"\): .*group1-shard3of7: cannot open")
    elif kind == "wrong_byte_count":
        def edit(j):  # one weight declared a row smaller than its bytes in the shards
            w = next(w for w in j["weightsManifest"][0]["weights"] if w["shape"] and w["shape"][0] >= 2)
            w["shape"] = [w["shape"][0] - 1] + w["shape"][1:]
        m = package_copy(kind, manifest_edit=edit)
        for args in (quantize(m), encode(m)):
            expect(args, m, r"the \d+ weights need \d+ bytes but the 7 shards .* hold \d+ .*; trailing data")
    elif kind == "other_tfjs_model":
        def edit(j):
            j["weightsManifest"][0]["weights"][0]["name"] = "some/other/model/weight"
        m = package_copy(kind, manifest_edit=edit)
        for args in (quantize(m), encode(m)):
            expect(args, m, r"not the USE-Lite model \(no weight named ")
    elif kind == "empty_text":
        e = write_lines("empty.txt", [])
        expect(quantize(model, e), e, r"empty file \(0 bytes\)")
        expect(encode(model, e), e, r"empty file \(0 bytes\)")
    elif kind == "binary_text":
        b = os.path.join(WORK, "binary.txt")
        with open(b, "wb") as f:
            f.write(b"a first line\nsecond\x00line\n")
        expect(quantize(model, b), b, r"line 2: a NUL byte at byte 7 of the line")
        expect(encode(model, b), b, r"line 2: a NUL byte")
        with open(b, "wb") as f:
            f.write(b"one\ntwo\nthr\xe9e in Latin-1\n")
        expect(quantize(model, b), b, r"line 3: invalid UTF-8 at byte 4 of the line")
        expect(encode(model, b), b, r"line 3: invalid UTF-8 at byte 4")
    elif kind == "one_line":
        one = write_lines("one.txt", ["Just one sentence here.", "", ""])
        expect(quantize(model, one), one,
               r"1 sentence \(non-empty lines\) in 3 lines; the pipeline needs at least 2 calibration sentences")
        blank = write_lines("blank.txt", ["", ""])
        expect(quantize(model, blank), blank, r"0 sentences .* at least 2 calibration sentences")
    elif kind == "other_architecture":
        # a file of `nanoquant factorize` and one of `nanoquant quantize` of a checkpoint
        f = os.path.join(WORK, "factorized.safetensors")
        run(["factorize", os.path.join(DATA, "use_lite_L0_attn_q.npy"), "--iters", "2", "-o", f], 0)
        expect(encode(f), f, r"a nanoquant factorized file without \"nanoquant.architecture\" metadata .*"
                              r"not a USE-Lite model")
        ck = os.path.join(WORK, "ck.safetensors")
        write_st(ck, [("w", "F32", (2, 2), struct.pack("<4f", 1, 2, 3, 4))])
        expect(encode(ck), ck, r"a safetensors file without \"nanoquant.architecture\" metadata")
    elif kind == "missing_file":
        gone = os.path.join(WORK, "no_such_model.json")
        expect(quantize(gone), gone, r"cannot open")
        expect(encode(gone), gone, r"cannot open")
        gone_t = os.path.join(WORK, "no_such.txt")
        expect(quantize(model, gone_t), gone_t, r"cannot open")
        expect(encode(model, gone_t), gone_t, r"cannot open")
        # the package's vocab.json missing beside model.json
        m = package_copy(kind, drop="vocab.json")
        vocab = os.path.join(os.path.dirname(m), "vocab.json")
        expect(quantize(m), vocab, r"cannot open")
        expect(encode(m), vocab, r"cannot open")
    else:
        fail("unknown bad-input kind " + kind)


def use_lite_usage():
    """Usage errors: exit code 2, one line, nothing written."""
    model = use_lite_model()
    calib = write_lines("calib.txt", calib_sentences(4))
    out = fresh(os.path.join(WORK, "out.safetensors"))
    base = ["quantize", model, "-o", out]
    run(base + ["--pipeline", "admm"], 2, r"--calib TEXT.txt is required")
    run(base + ["--calib", calib, "--pipeline", "fast"], 2, r"pipeline must be admm, layer, block or full, got 'fast'")
    run(base + ["--calib", calib, "--schedule", "cubic"], 2, r"--schedule applies to safetensors checkpoints")
    run(base + ["--calib", calib, "--include", "qkv"], 2, r"--include applies to safetensors checkpoints")
    run(base + ["--calib", calib, "--layer-epochs", "-1"], 2, r"--layer-epochs must be >= 0, got -1")
    run(base + ["--calib", calib, "--batch-sentences", "0"], 2, r"--batch-sentences must be >= 1, got 0")
    run(base + ["--calib", calib, "--holdout", "0.7"], 2, r"--holdout must be in \[0, 0.5\], got 0.7")
    run(base + ["--calib", calib, "--bpw", "0"], 2, r"--bpw must be a positive number, got 0")
    run(base + ["--calib", calib, "--bpw", "0.01"], 2, r"--bpw 0.01 does not fit 'layer0.qkv' \(768x256\)")
    run(base + ["--calib", calib, "--threads", "-2"], 2, r"--threads must be >= 0, got -2")
    # the USE-Lite options on a checkpoint
    ck = os.path.join(WORK, "ck.safetensors")
    write_st(ck, [("w", "F32", (2, 2), struct.pack("<4f", 1, 2, 3, 4))])
    run(["quantize", ck, "-o", out, "--calib", calib], 2, r"--calib applies to a TF.js model.json \(USE-Lite\) only")
    run(["quantize", ck, "-o", out, "--json"], 2, r"--json applies to a TF.js model.json")
    if os.path.exists(out):
        fail("a usage error wrote " + out)
    npy_out = fresh(os.path.join(WORK, "out.npy"))
    run(["encode", model, calib], 2, r"--output is required")
    run(["encode", model, calib, "-o", npy_out, "--threads", "-1"], 2, r"--threads must be >= 0, got -1")
    run(["encode", model, calib, "-o", npy_out, "--batch", "0"], 2, r"--batch must be >= 1, got 0")
    if os.path.exists(npy_out):
        fail("a usage error wrote " + npy_out)


if CASE.startswith("hostile:"):
    _, command, kind = CASE.split(":")
    hostile(command, kind)
elif CASE == "usage:unknown_command":
    run(["frobnicate"], 2, r"nanoquant: ")
elif CASE == "quantize:checkpoint":
    quantize_checkpoint()
elif CASE == "quantize:kept_dense":
    quantize_kept_dense()
elif CASE == "install:demo":
    install_demo()
elif CASE == "factorize:roundtrip":
    factorize_roundtrip()
elif CASE == "factorize:methods":
    factorize_methods()
elif CASE == "factorize:calib":
    factorize_calib()
elif CASE == "usage:factorize_methods":
    factorize_method_usage()
elif CASE == "usage:factorize_bad_values":
    q = os.path.join(DATA, "use_lite_L0_attn_q.npy")
    run(["factorize", q, "--bpw", "0.001"], 2, r"smallest budget is")
    run(["factorize", q, "--rank", "0"], 2, r"--rank must be >= 1, got 0")
    run(["factorize", q, "--rank", "-1"], 2, r"--rank must be >= 1, got -1")  # -1 once meant "not given"
    run(["factorize", q, "--bpw", "-1"], 2, r"--bpw must be a positive number, got -1")
    run(["factorize", q, "--bpw", "nan"], 2, r"--bpw must be a positive number, got nan")
    run(["factorize", q, "--rank", "300"], 2, r"rank must be in \[1, min\(m, n\)\] = \[1, 256\]")
    run(["factorize", q, "--schedule", "zigzag"], 2, r"unknown schedule 'zigzag'")
    run(["factorize", q, "--export", "four-scale"], 2, r"four-scale")
    run(["factorize", q, "--bpw", "1", "--rank", "32"], 2, r"excludes")
elif CASE == "usage:help":
    usage_help()
elif CASE == "usage:bad_options":
    usage_bad_options()
elif CASE == "index:errors":
    index_errors()
elif CASE == "io:header_cap":
    header_cap()
elif CASE == "quantize:restart":
    quantize_restart()
elif CASE == "factorize:options":
    factorize_options()
elif CASE == "factorize:numerical_failure":
    factorize_numerical_failure()
elif CASE == "demo:gemv":
    demo_gemv()
elif CASE == "use_lite:quantize_encode":
    use_lite_quantize_encode()
elif CASE.startswith("use_lite:bad:"):
    use_lite_bad(CASE.split(":")[2])
elif CASE == "use_lite:usage":
    use_lite_usage()
elif CASE == "inspect:npy":
    run(["inspect", os.path.join(DATA, "use_lite_L0_attn_q.npy")], 0, None, r"float32 \(<f4\), 256 x 256, C order")
else:
    fail("unknown case " + CASE)
print("ok")
