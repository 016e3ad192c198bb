#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Notebook-style example: factorize a real weight matrix at three bit budgets and plot the ADMM
convergence traces (docs/python.md). Writes docs/img/python_traces.png.

    PYTHONPATH=build/python python3 examples/python_factorize.py [--iters 400] [--out PNG]
"""
import argparse
import os

import numpy as np
import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402

import nanoquant  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

ap = argparse.ArgumentParser()
ap.add_argument("--matrix", default=os.path.join(ROOT, "tests", "data", "use_lite_L1_attn_q.npy"))
ap.add_argument("--iters", type=int, default=400)
ap.add_argument("--threads", type=int, default=0, help="0 = all cores")
ap.add_argument("--out", default=os.path.join(ROOT, "docs", "img", "python_traces.png"))
a = ap.parse_args()

# %% A real attention projection (512 x 512, float32; tests/data/README.md gives its source).
W = np.load(a.matrix)
print(f"{os.path.basename(a.matrix)}: {W.shape[0]} x {W.shape[1]} {W.dtype}")

# %% Three budgets, the same seed; the trace records every iteration.
results = {}
for bpw in (1.0, 0.8, 0.55):
    r = nanoquant.factorize(W, bpw=bpw, iters=a.iters, seed=0, threads=a.threads)
    results[bpw] = r
    print(f"  bpw {bpw:4.2f}: rank {r.rank:3d} ({r.bpw:.4f} bpw), rel_error {r.rel_error:.6f}, "
          f"{r.iterations} iterations in {r.seconds:.2f} s ({r.status})")

# %% Convergence: the solver's objective, the residuals and the penalty schedule.
fig, ax = plt.subplots(1, 3, figsize=(14, 4.2))
for bpw, r in results.items():
    t = r.trace
    label = f"{bpw} bpw (rank {r.rank}, final rel_error {r.rel_error:.3f})"
    ax[0].plot(t["iteration"], np.sqrt(t["error"]), label=label)
    ax[1].semilogy(t["iteration"], t["primal_residual"], label=f"primal, {bpw} bpw")
    on = t["rho"] > 0  # the dual residual is rho * (change of Z): 0 in the first iteration (rho = 0)
    ax[1].semilogy(t["iteration"][on], t["dual_residual"][on], "--", label=f"dual, {bpw} bpw")
    ax[2].plot(t["seconds"], np.sqrt(t["error"]), label=f"{bpw} bpw")
ax[0].set(xlabel="iteration", ylabel="sqrt(objective) = relative error of the ADMM iterate", title="error")
ax[1].set(xlabel="iteration", ylabel="residual", title="primal / dual residuals")
ax[2].set(xlabel="seconds", ylabel="sqrt(objective)", title="error against wall time")
ax[0].legend(fontsize=8)
ax[1].legend(fontsize=7, ncol=2)
ax[2].legend(fontsize=8)
for x in ax:
    x.grid(alpha=0.3)
fig.suptitle(f"nanoquant ADMM on {os.path.basename(a.matrix)} ({a.iters} iterations, linear rho schedule, seed 0)")
fig.tight_layout()
os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
fig.savefig(a.out, dpi=110)
print(f"wrote {a.out}")

# %% The packed layer on a vector, against the dense reconstruction.
r = results[1.0]
layer = r.pack()
x = np.random.default_rng(0).standard_normal(W.shape[1]).astype(np.float32)
ref = r.reconstruct() @ x
for precision in ("float32", "int8"):
    y = layer(x, precision=precision)
    print(f"  packed layer ({layer}), {precision}: ||y - W_hat x|| / ||W_hat x|| = "
          f"{np.linalg.norm(y - ref) / np.linalg.norm(ref):.2e}; vs W x: "
          f"{np.linalg.norm(y - W @ x) / np.linalg.norm(W @ x):.4f}")
