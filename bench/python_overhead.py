#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The cost of calling nanoquant from Python, against C++ in the same run (issue 26's targets).

1. factorize: nanoquant.factorize() wall time against `nanoquant factorize --json`'s own `seconds`
   (the solve inside the tool, file loading excluded) on a 1024x1024 float32 matrix, same seed and
   threads, runs alternated; the best of each side. Target: Python <= 1.02x the CLI.
2. GEMV: layer(x) on a packed 4096x4096 layer from Python against a C++ loop of kernels::gemv on
   the same layer and vector (PackedLayer._time_gemv_cpp); best of several rounds of each.
   Target: at most 5 us more per call.

    PYTHONPATH=build/python python3 bench/python_overhead.py [--cli build/tools/nanoquant/nanoquant]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import nanoquant


def bench_factorize(cli, n, iters, rounds, threads):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((n, n), dtype=np.float32)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "w.npy")
        np.save(path, W)
        py_times, cli_times = [], []
        for _ in range(rounds):
            p = subprocess.run([cli, "factorize", path, "--bpw", "1", "--iters", str(iters), "--threads", str(threads),
                                "--json"], capture_output=True, text=True, check=True)
            j = json.loads(p.stdout)
            cli_times.append(j["seconds"])
            t0 = time.perf_counter()
            r = nanoquant.factorize(W, bpw=1.0, iters=iters, threads=threads)
            py_times.append(time.perf_counter() - t0)
            assert r.rel_error == j["rel_error"], (r.rel_error, j["rel_error"])
    return min(py_times), min(cli_times)


def bench_gemv(n, rounds, calls, precision, threads):
    rng = np.random.default_rng(1)
    W = rng.standard_normal((n, n), dtype=np.float32)
    # One ADMM iteration is enough: the kernels' cost depends on the shape and rank only.
    layer = nanoquant.factorize(W, bpw=1.0, iters=1).pack()
    x = rng.standard_normal(n).astype(np.float32)
    py, cpp = [], []
    for _ in range(rounds):
        cpp.append(layer._time_gemv_cpp(x, calls, precision=precision, threads=threads))
        t0 = time.perf_counter()
        for _ in range(calls):
            layer(x, precision=precision, threads=threads)
        py.append((time.perf_counter() - t0) / calls)
    return min(py), min(cpp), layer


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default=os.path.join("build", "tools", "nanoquant", "nanoquant"))
    ap.add_argument("--iters", type=int, default=100, help="ADMM iterations of the 1024x1024 solve (default 100)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calls", type=int, default=500, help="GEMV calls per round (default 500)")
    a = ap.parse_args()

    print(f"nanoquant {nanoquant.__version__}, kernel {nanoquant.kernel()}, threads {a.threads}")
    if os.path.exists(a.cli):
        py, cli = bench_factorize(a.cli, 1024, a.iters, a.rounds, a.threads)
        print(f"factorize 1024x1024, 1 bpw, {a.iters} iterations (best of {a.rounds}): python {py:.3f} s, "
              f"CLI {cli:.3f} s, ratio {py / cli:.4f} (target <= 1.02)")
    else:
        print(f"factorize: skipped ({a.cli} not found; --cli PATH)", file=sys.stderr)
    gemv_rounds = 5 * a.rounds
    for n in (4096, 64):
        for precision in ("float32", "int8"):
            py, cpp, layer = bench_gemv(n, gemv_rounds, a.calls, precision, a.threads)
            note = "(target <= +5)" if n == 4096 else "(the binding's own cost, kernels negligible)"
            print(f"GEMV {n}x{n} rank {layer.rank} {precision} (best of {gemv_rounds} x {a.calls} calls): "
                  f"python {py * 1e6:.2f} us, C++ {cpp * 1e6:.2f} us, difference {(py - cpp) * 1e6:+.2f} us per call "
                  f"{note}")


if __name__ == "__main__":
    main()
