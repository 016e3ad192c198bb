# SPDX-License-Identifier: Apache-2.0
"""Drives the nanoquant binary for the CLI ctests.

usage: cli_test.py NANOQUANT WORKDIR CASE

Hostile-file cases (`hostile:<command>:<kind>`) build a malformed file with the standard library
only, run `nanoquant <command> FILE`, and require exit code 1 and exactly one line on stderr that
names the file and matches the expected message. Other cases are documented below.
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


def run(args, expect_rc, stderr_re=None, stdout_re=None):
    p = subprocess.run([NQ] + args, capture_output=True, text=True, errors="replace")
    print("$ nanoquant " + " ".join(args))
    print(p.stdout[-4000:], end="")
    print(p.stderr[-4000:], end="", file=sys.stderr)
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
    run(args, 1, r"^nanoquant " + command + r": .*" + re.escape(path) + r".*" + pattern)


if CASE.startswith("hostile:"):
    _, command, kind = CASE.split(":")
    hostile(command, kind)
elif CASE == "usage:unknown_command":
    run(["frobnicate"], 2, r"nanoquant: ")
elif CASE == "inspect:npy":
    run(["inspect", os.path.join(DATA, "use_lite_L0_attn_q.npy")], 0, None, r"float32 \(<f4\), 256 x 256, C order")
else:
    fail("unknown case " + CASE)
print("ok")
