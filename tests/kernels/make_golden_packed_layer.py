#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes tests/kernels/golden_packed_layer.bin from the rules of docs/packed_format.md alone
(no nanoquant code), for the worked example there. Run once, by hand, when the layout version changes:

    python3 tests/kernels/make_golden_packed_layer.py tests/kernels/golden_packed_layer.bin

The test (test_packed_format.cpp, "packed layout: golden byte file") only reads the file and compares
every byte with what pack_layer() produces.
"""
import sys


def tiled(rows, cols, negative):
    """Bytes of a TiledSigns matrix: tile (c, R) at 64·(c·row_blocks + R), lane l = row 16R + l,
    bit b of the little-endian uint32 lane = column 32c + b, bit 1 = −1, padding 0."""
    row_blocks = (rows + 15) // 16
    col_words = 2 * ((cols + 63) // 64)
    out = bytearray(64 * row_blocks * col_words)
    for c in range(col_words):
        for R in range(row_blocks):
            for lane in range(16):
                i = 16 * R + lane
                word = 0
                for b in range(32):
                    j = 32 * c + b
                    if i < rows and j < cols and negative(i, j):
                        word |= 1 << b
                off = 64 * (c * row_blocks + R) + 4 * lane
                out[off:off + 4] = word.to_bytes(4, "little")
    return bytes(out)


def golden():
    # m = 3, n = 70, r = 5; Vᵀ(i, j) = −1 iff (i + 2j) mod 3 = 0; U(i, j) = −1 iff (i + j) odd
    vt = tiled(5, 70, lambda i, j: (i + 2 * j) % 3 == 0)
    u = tiled(3, 5, lambda i, j: (i + j) % 2 == 1)
    return vt + u


if __name__ == "__main__":
    data = golden()
    assert len(data) == 384
    with open(sys.argv[1], "wb") as f:
        f.write(data)
