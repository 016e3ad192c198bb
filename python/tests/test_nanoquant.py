# SPDX-License-Identifier: Apache-2.0
"""Tests of the nanoquant Python module (run by CTest as python.pytest; docs/python.md).

The round trips compare against the `nanoquant` tool (NANOQUANT_CLI, set by CTest) for the same
seed and thread count: factors, scales and rel_error must be bit-identical.
"""
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import _thread

import numpy as np
import pytest

import nanoquant

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("NANOQUANT_DATA_DIR", os.path.join(HERE, "..", "..", "tests", "data"))
CLI = os.environ.get("NANOQUANT_CLI")


def data(name):
    return os.path.join(DATA, name + ".npy")


def same_factors(a, b):
    """Bit-identical factorizations (signs, scales and the error)."""
    np.testing.assert_array_equal(a.U, b.U)
    np.testing.assert_array_equal(a.V, b.V)
    np.testing.assert_array_equal(a.s_out, b.s_out)
    np.testing.assert_array_equal(a.s_in, b.s_in)
    assert (a.s_mid is None) == (b.s_mid is None)
    if a.s_mid is not None:
        np.testing.assert_array_equal(a.s_mid, b.s_mid)
    assert a.rel_error == b.rel_error


def run_cli(args):
    p = subprocess.run([CLI, "factorize", *args, "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


needs_cli = pytest.mark.skipif(not CLI or not os.path.exists(CLI), reason="NANOQUANT_CLI (the nanoquant tool) not built")


# -- round trips against `nanoquant factorize` ------------------------------------------------------

CASES = [
    # (matrix, python kwargs, extra CLI flags)
    ("use_lite_L1_attn_q", dict(bpw=1.0, iters=30, seed=3), ["--bpw", "1", "--iters", "30", "--seed", "3"]),
    ("use_lite_L1_ffn_down", dict(bpw=0.8, iters=20, seed=1, export="three-scale", refit_scales=True),
     ["--bpw", "0.8", "--iters", "20", "--seed", "1", "--export", "three-scale", "--refit-scales"]),
    ("use_lite_L0_attn_q", dict(rank=40, iters=25, schedule="cubic", refit_scales=True),
     ["--rank", "40", "--iters", "25", "--schedule", "cubic", "--refit-scales"]),
    ("use_lite_L0_attn_q", dict(bpw=1.0, iters=15, fine_rank=True, method="dbf"),
     ["--bpw", "1", "--iters", "15", "--fine-rank", "--method", "dbf"]),
]


@needs_cli
@pytest.mark.parametrize("name,kwargs,flags", CASES, ids=["admm-2scale", "admm-3scale-refit-wide", "admm-rank-cubic", "dbf"])
def test_matches_cli(tmp_path, name, kwargs, flags):
    out = str(tmp_path / "cli.safetensors")
    j = run_cli([data(name), *flags, "--threads", "1", "--scale-dtype", "f32", "-o", out])
    r = nanoquant.factorize(np.load(data(name)), threads=1, **kwargs)
    assert r.rel_error == j["rel_error"]  # bit-identical, not approximately
    assert (r.rank, r.bpw, r.iterations, r.status) == (j["rank"], j["bpw"], j["iterations"], j["status"])
    cli = nanoquant.load(out)
    np.testing.assert_array_equal(r.U, cli.U)
    np.testing.assert_array_equal(r.V, cli.V)
    np.testing.assert_array_equal(r.s_out, cli.s_out)  # f32 scales in the file: exact
    np.testing.assert_array_equal(r.s_in, cli.s_in)
    if r.s_mid is not None:
        np.testing.assert_array_equal(r.s_mid, cli.s_mid)
    assert cli.info["solver"]["rank"] == r.rank


@needs_cli
def test_calibration_matches_cli(tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((300, 256)) + 0.5 * rng.standard_normal((300, 4)) @ rng.standard_normal((4, 256)))
    X[:, :3] *= 20
    X = X.astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    j = run_cli([data("use_lite_L0_attn_q"), "--bpw", "1", "--iters", "20", "--threads", "1", "--calib",
                 str(tmp_path / "x.npy"), "--epochs", "2", "--batch-size", "64"])
    r = nanoquant.factorize(np.load(data("use_lite_L0_attn_q")), bpw=1, iters=20, threads=1, calib=X, epochs=2,
                            batch_size=64)
    assert r.rel_error == j["rel_error"]
    assert r.info["out_rel_error"] == j["out_rel_error"]
    assert r.info["out_rel_error_before"] == j["out_rel_error_before"]
    assert r.info["out_rel_error"] < r.info["out_rel_error_before"]


# -- layouts: read in place, same results -----------------------------------------------------------

@pytest.mark.parametrize("name", ["use_lite_L1_attn_q", "use_lite_L1_ffn_down"])
def test_layouts_give_the_same_result(name):
    W = np.load(data(name))
    kw = dict(bpw=1.0, iters=12, refit_scales=True, export="three-scale")
    ref = nanoquant.factorize(np.ascontiguousarray(W), **kw)
    big = np.zeros((2 * W.shape[0], 3 * W.shape[1]), np.float32)
    big[::2, ::3] = W
    bigf = np.asfortranarray(np.zeros((W.shape[0] + 5, W.shape[1]), np.float32))
    bigf[3:-2] = W
    views = {
        "fortran": np.asfortranarray(W),
        "strided": big[::2, ::3],
        "fortran-rows-slice": bigf[3:-2],  # column-major with an outer stride > rows
        "c-cols-slice": np.ascontiguousarray(np.hstack([W, W]))[:, W.shape[1]:],  # row-major, outer stride > cols
        "negative-stride (copied)": W[::-1][::-1],
    }
    for label, V in views.items():
        np.testing.assert_array_equal(V, W)
        r = nanoquant.factorize(V, **kw)
        try:
            same_factors(r, ref)
        except AssertionError as e:
            raise AssertionError(f"{label}: {e}") from None


def test_float64_input_is_solved_in_double():
    W = np.load(data("use_lite_L0_attn_q"))
    r32 = nanoquant.factorize(W, bpw=1.0, iters=20)
    r64 = nanoquant.factorize(W.astype(np.float64), bpw=1.0, iters=20)
    assert r64.dtype == np.float64 and r64.s_out.dtype == np.float64 and r64.reconstruct().dtype == np.float64
    assert r32.dtype == np.float32 and r32.s_out.dtype == np.float32
    assert abs(r64.rel_error - r32.rel_error) < 0.02
    W64 = W.astype(np.float64)
    assert abs(np.linalg.norm(W64 - r64.reconstruct()) / np.linalg.norm(W64) - r64.rel_error) < 1e-12


_MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys, numpy as np, nanoquant
    W = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)
    if sys.argv[1] == "fortran": W = W.T  # a Fortran-order view (of the transposed matrix)
    view = W[::-1] if sys.argv[1] == "copy" else W   # negative strides: the module must copy
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = nanoquant.factorize(view, rank=32, iters=1)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) / 1024.0)
""")


def _peak_growth_mib(mode):
    p = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, mode], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return float(p.stdout)


def test_4096_input_is_not_copied():
    # Peak RSS growth of one factorize() in a fresh process. The solver itself holds the
    # preconditioned copy W~ (64 MiB for 4096x4096 float32) and, with the AVX-512 packed sign
    # products, a row-major copy of it; a copy made by the binding would add 64 MiB more, as the
    # negative-stride view (which Eigen cannot map, so the module copies it) shows.
    mib = 4096 * 4096 * 4 / 2**20
    c_order, fortran, copied = (_peak_growth_mib(m) for m in ("c", "fortran", "copy"))
    assert copied > c_order + 0.75 * mib, (c_order, copied)
    assert copied > fortran + 0.75 * mib, (fortran, copied)
    assert c_order < 2.5 * mib and fortran < 2.5 * mib, (c_order, fortran)


# -- bad inputs ---------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
    W = np.load(data("use_lite_L0_attn_q"))
    bad = W.copy()
    bad[5, 7] = np.nan
    with pytest.raises(ValueError, match=r"W has 1 non-finite value \(first at row 5, col 7: nan\)"):
        nanoquant.factorize(bad, bpw=1.0)
    with pytest.raises(ValueError, match=r"W must be a 2-D array .* 3-D array of shape \(2, 256, 256\)"):
        nanoquant.factorize(np.stack([W, W]), bpw=1.0)
    with pytest.raises(ValueError, match=r"W must be float32 or float64, got int64"):
        nanoquant.factorize(np.ones((8, 8), np.int64), bpw=1.0)
    with pytest.raises(ValueError, match=r"W must be float32 or float64, got float16"):
        nanoquant.factorize(W.astype(np.float16), bpw=1.0)
    with pytest.raises(TypeError):
        nanoquant.factorize([[1.0, 2.0], [3.0, 4.0]], bpw=1.0)
    with pytest.raises(ValueError, match=r"bpw = 0\.1 .* the smallest budget is"):
        nanoquant.factorize(W, bpw=0.1)
    with pytest.raises(ValueError, match=r"bpw must be a positive number, got -1"):
        nanoquant.factorize(W, bpw=-1)
    with pytest.raises(ValueError, match=r"rank must be in \[1, min\(m, n\)\] = \[1, 256\] .* got 300"):
        nanoquant.factorize(W, rank=300)
    with pytest.raises(ValueError, match=r"rank must be >= 1, got 0"):
        nanoquant.factorize(W, rank=0)
    with pytest.raises(ValueError, match=r"give bpw or rank, not both"):
        nanoquant.factorize(W, bpw=1.0, rank=32)
    with pytest.raises(ValueError, match=r"iters must be >= 1, got 0"):
        nanoquant.factorize(W, bpw=1.0, iters=0)
    with pytest.raises(ValueError, match=r"unknown schedule 'quadratic'"):
        nanoquant.factorize(W, bpw=1.0, schedule="quadratic")
    with pytest.raises(ValueError, match=r"unknown export mode 'four-scale'"):
        nanoquant.factorize(W, bpw=1.0, export="four-scale")
    with pytest.raises(ValueError, match=r"method must be 'admm' or 'dbf'"):
        nanoquant.factorize(W, bpw=1.0, method="svd")
    with pytest.raises(ValueError, match=r"W must be non-empty, got 0x8"):
        nanoquant.factorize(np.zeros((0, 8), np.float32), rank=1)
    with pytest.raises(ValueError, match=r"calib has 10 columns"):
        nanoquant.factorize(W, bpw=1.0, calib=np.ones((4, 10), np.float32))
    with pytest.raises(ValueError, match=r"epochs, batch_size, .* need calib"):
        nanoquant.factorize(W, bpw=1.0, epochs=3)
    with pytest.raises(ValueError, match=r"importance_in must be 256x1, got 3x1"):
        nanoquant.factorize(W, bpw=1.0, importance=np.ones(3, np.float32))
    with pytest.raises(RuntimeError, match=r"no/such/file\.safetensors"):
        nanoquant.load("no/such/file.safetensors")
    with pytest.raises(ValueError, match=r"rank_for_bpw: bpw = 0\.01"):
        nanoquant.rank_for_bpw(64, 64, 0.01)


def test_packed_layer_bad_inputs():
    layer = nanoquant.factorize(np.load(data("use_lite_L0_attn_q")), rank=32, iters=2).pack()
    with pytest.raises(ValueError, match=r"x has 3 entries, expected n = 256"):
        layer(np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"X has 3 rows, expected n = 256"):
        layer(np.ones((3, 256), np.float32))
    with pytest.raises(ValueError, match=r"precision must be 'float32' or 'int8'"):
        layer(np.ones(256, np.float32), precision="int4")
    with pytest.raises(ValueError, match=r"non-finite|finite"):
        x = np.ones(256, np.float32)
        x[3] = np.inf
        layer(x, precision="int8")


# -- results, files, layers ---------------------------------------------------------------------

def test_result_and_trace():
    W = np.load(data("use_lite_L1_ffn_down"))
    r = nanoquant.factorize(W, bpw=1.0, iters=25, seed=7)
    m, n = W.shape
    assert r.rank == nanoquant.rank_for_bpw(m, n, 1.0)
    assert r.bpw == nanoquant.bpw_for_rank(m, n, r.rank) <= 1.0
    assert r.U.shape == (m, r.rank) and r.V.shape == (n, r.rank) and r.U.dtype == np.int8
    assert set(np.unique(r.U)) == {-1, 1} and set(np.unique(r.V)) == {-1, 1}
    hat = (r.s_out[:, None] * r.U) @ (r.V.T * r.s_in[None, :])
    np.testing.assert_allclose(r.reconstruct(), hat, rtol=1e-4, atol=1e-6 * np.abs(hat).max())
    W64 = W.astype(np.float64)
    assert abs(np.linalg.norm(W64 - r.reconstruct()) / np.linalg.norm(W64) - r.rel_error) < 1e-6
    t = r.trace
    assert set(t) == {"iteration", "error", "primal_residual", "dual_residual", "rho", "seconds"}
    np.testing.assert_array_equal(t["iteration"], np.arange(1, 26))
    assert np.all(np.diff(t["seconds"]) >= 0) and np.all(t["error"] >= 0)
    assert t["rho"][0] == 0 and np.all(np.diff(t["rho"]) > 0)  # the linear schedule
    assert t["error"][-1] < t["error"][0]
    assert r.status == "max-iterations" and r.iterations == 25
    assert len(nanoquant.factorize(W, bpw=1.0, iters=5, trace_every=0).trace["error"]) == 0
    np.testing.assert_array_equal(nanoquant.factorize(W, bpw=1.0, iters=25, seed=7, trace_every=10).trace["iteration"],
                                  [10, 20, 25])


@pytest.mark.parametrize("dtype", ["f16", "f32"])
def test_save_load_round_trip(tmp_path, dtype):
    r = nanoquant.factorize(np.load(data("use_lite_L0_attn_q")), bpw=1.0, iters=10, export="three-scale")
    path = str(tmp_path / "l.safetensors")
    r.save(path, name="q", scale_dtype=dtype)
    assert nanoquant.layer_names(path) == ["q"]
    back = nanoquant.load(path)
    np.testing.assert_array_equal(back.U, r.U)
    np.testing.assert_array_equal(back.V, r.V)
    cast = (lambda v: v.astype(np.float16).astype(np.float32)) if dtype == "f16" else (lambda v: v)
    for a, b in ((back.s_out, r.s_out), (back.s_mid, r.s_mid), (back.s_in, r.s_in)):
        np.testing.assert_array_equal(a, cast(b))
    assert back.rel_error == r.rel_error and back.status == "loaded" and back.info["solver"]["export"] == "three-scale"


def test_packed_layer_matches_reconstruct():
    W = np.load(data("use_lite_L1_ffn_up"))
    r = nanoquant.factorize(W, bpw=0.8, iters=10, export="three-scale")
    layer = r.pack()
    assert layer.shape == W.shape and layer.rank == r.rank
    hat = r.reconstruct().astype(np.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(W.shape[1]).astype(np.float32)
    ref = hat @ x
    y = layer(x)
    assert y.dtype == np.float32 and y.shape == (W.shape[0],)
    assert np.linalg.norm(y - ref) <= 1e-5 * np.linalg.norm(ref)
    assert np.linalg.norm(layer(x, precision="int8") - ref) <= 0.05 * np.linalg.norm(ref)
    np.testing.assert_array_equal(layer(x, threads=2), y)  # the kernels' results do not depend on threads
    X = rng.standard_normal((9, W.shape[1])).astype(np.float32)  # tokens x n; layer takes n x tokens
    Y = layer(X.T)
    assert Y.shape == (W.shape[0], 9)
    assert np.linalg.norm(Y - hat @ X.T) <= 1e-5 * np.linalg.norm(hat @ X.T)
    np.testing.assert_array_equal(layer(np.ascontiguousarray(X.T)), Y)
    np.testing.assert_array_equal(layer(x.astype(np.float64)), y)
    Yi = layer(X.T, precision="int8", threads=2)
    assert np.linalg.norm(Yi - hat @ X.T) <= 0.05 * np.linalg.norm(hat @ X.T)


# -- GIL and Ctrl-C -------------------------------------------------------------------------------

def test_keyboard_interrupt_stops_a_long_solve():
    W = np.load(data("use_lite_L1_ffn_up"))
    timer = threading.Timer(0.5, _thread.interrupt_main)
    t0 = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        nanoquant.factorize(W, bpw=1.0, iters=1_000_000)  # hours without the interrupt
    assert time.monotonic() - t0 < 10
    timer.cancel()
    # The module still works afterwards.
    assert nanoquant.factorize(W, rank=32, iters=2).iterations == 2


def test_gil_is_released_during_a_solve():
    W = np.load(data("use_lite_L1_ffn_up"))
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    th = threading.Thread(target=count)
    th.start()
    try:
        t0 = time.monotonic()
        nanoquant.factorize(W, bpw=1.0, iters=60)
        t1 = time.monotonic()
    finally:
        done.set()
        th.join()
    during = [t for t in ticks if t0 < t < t1]
    assert t1 - t0 > 0.3 and len(during) >= 0.3 * (t1 - t0) / 0.01  # the other thread ran
