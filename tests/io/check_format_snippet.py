# SPDX-License-Identifier: Apache-2.0
"""Runs the numpy snippet of docs/format.md, verbatim, on files written by nanoquant.

usage: check_format_snippet.py docs/format.md DIR
DIR holds *.safetensors factorized files and NAME.expected.npy (float32 of nanoquant's
reconstruct() of layer NAME as loaded by nanoquant). Every layer must match bit for bit.
"""
import glob
import json
import os
import re
import struct
import sys

import numpy as np

doc, folder = sys.argv[1], sys.argv[2]
text = open(doc, encoding="utf-8").read()
m = re.search(r"<!-- snippet:load_layer[^>]*-->\s*```python\n(.*?)```", text, re.S)
if not m:
    sys.exit(f"{doc}: no '<!-- snippet:load_layer -->' python block found")
namespace = {}
exec(compile(m.group(1), doc + ":snippet", "exec"), namespace)
load_layer = namespace["load_layer"]

checked = 0
for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        meta = json.loads(f.read(n))["__metadata__"]
    for key in sorted(meta):
        if not key.startswith("nanoquant.layer."):
            continue
        name = key[len("nanoquant.layer."):]
        got = load_layer(path, name).astype(np.float32)
        want = np.load(os.path.join(folder, name + ".expected.npy"))
        if got.shape != want.shape:
            sys.exit(f"{path}:{name}: snippet gives shape {got.shape}, nanoquant {want.shape}")
        diff = np.count_nonzero(got.view(np.uint32) != want.view(np.uint32))
        if diff:
            sys.exit(f"{path}:{name}: {diff} of {got.size} entries differ "
                     f"(max abs diff {np.max(np.abs(got - want))})")
        print(f"{path}:{name}: {got.shape} identical")
        checked += 1
if checked < 2:
    sys.exit(f"only {checked} layers found under {folder}")
print(f"{checked} layers identical")
