"""Timing binary matrix products three ways (the paper's Figure 3 on a CPU).

* ``float32``: the +-1 values as float32 through NumPy's BLAS (``A @ B.T``);
* ``xnor``: bit-packed operands through ``kernels.xnor_gemm`` (XOR + popcount);
* ``int8``: the plain baseline -- the unpacked +-1 values as int8 through NumPy's integer
  matmul (a simple loop, no BLAS, no bit tricks). It is slow, so for large products it
  is timed on the first ``baseline_rows`` rows of A and scaled linearly to all rows
  (every row costs the same); results report that as ``int8_extrapolated``.

All three produce the same integers, checked on every run. Times are medians of
``repeat`` runs, wall clock, on whatever threads the BLAS uses: run ``python -m
tinyapprox.experiments.bench_bnn`` under ``OPENBLAS_NUM_THREADS=1`` (as ``single_thread`` does) for
single-thread figures.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from .. import kernels
from ..bnn.packing import int8_matmul, pack_bool
from .harness import median_time, to_jsonable

__all__ = ["result_and_time", "gemm_times", "layer_times", "single_thread"]


def result_and_time(fn, repeat: int = 3):
    """(median seconds per call, result) of ``fn()``.

    One untimed call produces the result (and warms caches); ``harness.median_time``
    then times ``repeat`` further calls, so ``fn`` runs ``repeat + 1`` times in all.
    """
    out = fn()
    return median_time(fn, repeat=max(1, repeat), warmup=0), out


def layer_times(x_bits, w_bits, repeat: int = 3, baseline_rows: int = 256, backend=None) -> dict:
    """Time x (M, K) times w (N, K).T for bool matrices (True = +1) with the three kernels.

    Returns seconds for ``float32``, ``xnor`` (kernel only, operands already packed, as
    inside a packed network), ``xnor_with_packing`` (packing x included), ``int8``
    (measured on ``baseline_rows`` rows, scaled to M) and the ratios against float32.

    Raises:
        AssertionError: the kernels disagree (they must be exact).
    """
    x_bits, w_bits = np.asarray(x_bits, dtype=bool), np.asarray(w_bits, dtype=bool)
    m, k = x_bits.shape
    xf = x_bits.astype(np.float32) * 2 - 1
    wf = w_bits.astype(np.float32) * 2 - 1
    t_float, ref = result_and_time(lambda: xf @ wf.T, repeat)
    wp = pack_bool(w_bits)
    t_pack, xp = result_and_time(lambda: pack_bool(x_bits), repeat)
    t_xnor, got = result_and_time(lambda: kernels.xnor_gemm(xp, wp, k, backend=backend), repeat)
    if not np.array_equal(got, ref.astype(np.int32)):
        raise AssertionError("layer_times: xnor_gemm disagrees with the float32 product")
    rows = min(m, baseline_rows)
    xi, wi = xf[:rows].astype(np.int8), wf.astype(np.int8)
    t_rows, base = result_and_time(lambda: int8_matmul(xi, wi), 1)
    if not np.array_equal(base, got[:rows]):
        raise AssertionError("layer_times: the int8 baseline disagrees with xnor_gemm")
    out = {"M": m, "K": k, "N": int(w_bits.shape[0]), "float32_s": t_float, "xnor_s": t_xnor,
           "pack_s": t_pack, "xnor_with_packing_s": t_xnor + t_pack, "int8_s": t_rows * m / max(rows, 1),
           "int8_rows_timed": rows, "int8_extrapolated": rows < m,
           "xnor_backend": backend or kernels.info()["xnor_gemm"]}
    out["speedup_xnor_vs_float32"] = t_float / t_xnor
    out["speedup_xnor_with_packing_vs_float32"] = t_float / (t_xnor + t_pack)
    out["speedup_xnor_vs_int8"] = out["int8_s"] / t_xnor
    return out


def gemm_times(n: int, seed: int = 0, repeat: int = 3, baseline_rows: int = 128, backend=None) -> dict:
    """Time an n x n x n product of random +-1 matrices with the three kernels (``layer_times``)."""
    rng = np.random.default_rng(seed)
    return layer_times(rng.random((n, n)) < 0.5, rng.random((n, n)) < 0.5, repeat=repeat,
                       baseline_rows=baseline_rows, backend=backend)


def single_thread(task: dict, timeout: float = 1800) -> dict:
    """Run a benchmark task in a fresh interpreter with one BLAS/OpenMP thread; returns its result.

    ``task`` is {"gemm": n} or {"layer": path-to-npz with bool arrays x, w} (plus optional
    "repeat", "baseline_rows"). The child prints JSON on its last line.

    Raises:
        RuntimeError: the child failed (its stderr is included).
    """
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "tinyapprox.experiments.bench_bnn", json.dumps(task)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"single_thread: benchmark {task} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="time binary matrix products (JSON task on the command line)")
    parser.add_argument("task", help='e.g. \'{"gemm": 4096}\' or \'{"layer": "layer.npz"}\'')
    task = json.loads(parser.parse_args(argv).task)
    opts = {k: task[k] for k in ("repeat", "baseline_rows") if k in task}
    if "gemm" in task:
        result = gemm_times(int(task["gemm"]), **opts)
    else:
        with np.load(task["layer"]) as z:
            result = layer_times(z["x"], z["w"], **opts)
    print(json.dumps(to_jsonable(result)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
