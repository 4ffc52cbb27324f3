"""Benchmark of the C kernels against NumPy float32 matmul (and scipy.sparse), same run.

``run()`` prints, for each kernel and shape, the median wall-clock time after a
warm-up call, the speedup against the float32 NumPy product of the same shape
(and against ``scipy.sparse`` CSR when scipy is importable) measured in the same
process, and the achieved rate as a fraction of this machine's single-thread
FMA peak, measured by a calibration loop in the extension.

Speedup = baseline time / kernel time (> 1 means the kernel is faster), from
median wall-clock times; the JSON also holds ``cpu_speedup_*`` ratios of median
CPU times, which vary less when other processes share the machine.
Rates count 2 operations per multiply-add: CSR counts only stored nonzeros
(2 * nnz * N), int8 counts 2 * M * K * N integer ops and XNOR counts 2 * M * N * K
binary ops. The fraction of peak divides each by the float32 FMA peak, so an
int8 or binary kernel can exceed 1.

Single thread: the C kernels are single-threaded, and ``threads`` limits the
BLAS behind NumPy for the baseline (through threadpoolctl if installed, else
OpenBLAS's own ``set_num_threads``; failing both, set ``OPENBLAS_NUM_THREADS=1``
and ``OMP_NUM_THREADS=1`` before starting Python).

Command line: ``tinyapprox bench kernels [--json FILE] [--quick] [--threads N]``.
"""
import ctypes
import os
import platform
import time

import numpy as np

from ..kernels import _ext, csr_matmul, gemm_int8, info, pack_bits, prepare_int8, xnor_gemm
from .harness import median_wall_cpu, write_json

_OPENBLAS_SET = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                 "scipy_openblas_set_num_threads", "openblas_set_num_threads")
_OPENBLAS_GET = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                 "scipy_openblas_get_num_threads", "openblas_get_num_threads")
_OPENBLAS_CORE = ("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                  "scipy_openblas_get_corename", "openblas_get_corename")


# ----------------------------------------------------------------- BLAS threads

class _BlasThreads:
    """Context manager limiting the BLAS behind NumPy to `n` threads, restoring it after."""

    def __init__(self, n):
        self.n = n
        self.how = "not limited"
        self.corename = None
        self._undo = []

    def _openblas_libs(self):
        try:
            with open("/proc/self/maps", encoding="utf-8") as fh:
                paths = {line.split()[-1] for line in fh if "openblas" in line.lower()}
        except OSError:
            return []
        return [ctypes.CDLL(p) for p in sorted(paths) if p.startswith("/")]

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
            ctx = threadpool_limits(limits=self.n, user_api="blas")
            self._undo.append(ctx.restore_original_limits)
            self.how = f"threadpoolctl: {self.n}"
        except ImportError:
            pass
        for lib in self._openblas_libs():
            setter = next((getattr(lib, s) for s in _OPENBLAS_SET if hasattr(lib, s)), None)
            getter = next((getattr(lib, s) for s in _OPENBLAS_GET if hasattr(lib, s)), None)
            core = next((getattr(lib, s) for s in _OPENBLAS_CORE if hasattr(lib, s)), None)
            if core is not None:
                core.restype = ctypes.c_char_p
                self.corename = core().decode(errors="replace")
            if setter is None:
                continue
            if getter is not None:
                before = getter()
                self._undo.append(lambda s=setter, b=before: s(b))
            setter(self.n)
            if self.how == "not limited":
                self.how = f"openblas_set_num_threads({self.n})"
        if self.how == "not limited":
            env = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
            self.how = f"environment at start: {env}"
        return self

    def __exit__(self, *exc):
        for undo in reversed(self._undo):
            undo()
        return False


# ----------------------------------------------------------------- timing

def _timed(fn, budget=0.4, min_repeats=5):
    """(median wall seconds, median CPU seconds) of fn() after one warm-up call, repeated for about
    ``budget`` seconds (at least ``min_repeats`` times): ``harness.median_wall_cpu``."""
    return median_wall_cpu(fn, repeat=min_repeats, warmup=1, budget=budget)


def fma_peak_gflops(seconds=0.05, rounds=5):
    """Single-thread float32 FMA peak in GFLOP/s from the extension's calibration loop.

    Runs independent multiply-add chains on the widest SIMD path available and
    keeps the best of `rounds` runs of about `seconds` of CPU time (CPU time, so
    that other processes sharing the core do not lower the peak). None without
    the extension.
    """
    lib, ffi = _ext.lib, _ext.ffi
    if lib is None:
        return None
    sink = ffi.new("float *")
    iters = 100_000
    while True:  # grow until one run lasts long enough to time
        t0 = time.process_time()
        flops = lib.ta_fma_loop(-1, iters, sink)
        dt = time.process_time() - t0
        if dt > seconds / 4 or iters > 10**10:
            break
        iters *= 4
    iters = int(iters * seconds / dt) + 1
    best = 0.0
    for _ in range(rounds):
        t0 = time.process_time()
        flops = lib.ta_fma_loop(-1, iters, sink)
        best = max(best, flops / max(time.process_time() - t0, 1e-9))
    return best / 1e9


# ----------------------------------------------------------------- problems

def _random_csr(rng, M, K, sparsity):
    nnz = int(round(M * K * (1.0 - sparsity)))
    mask = np.zeros(M * K, dtype=bool)
    mask[rng.permutation(M * K)[:nnz]] = True
    dense = np.where(mask.reshape(M, K), rng.standard_normal((M, K)), 0).astype(np.float32)
    rows, cols = np.nonzero(dense)
    indptr = np.concatenate([[0], np.cumsum(np.count_nonzero(dense, axis=1))]).astype(np.int64)
    return dense, indptr, cols.astype(np.int32), dense[rows, cols]


def _bench_csr(rng, quick, peak, scipy_sparse, out):
    N = 256
    shapes = [(300, 784), (100, 300)]
    sparsities = [0.5, 0.9] if quick else [0.5, 0.7, 0.9, 0.95]
    budget = 0.15 if quick else 0.4
    print(f"\nCSR (M x K) @ dense (K x {N}) float32; speedup = baseline time / CSR time")
    print(f"  {'shape':>10} {'sparsity':>8} {'csr ms':>8} {'dense ms':>9} {'vs dense':>9} "
          f"{'scipy ms':>9} {'vs scipy':>9} {'of peak':>8}")
    for M, K in shapes:
        X = rng.standard_normal((K, N)).astype(np.float32)
        for s in sparsities:
            dense, indptr, indices, data = _random_csr(rng, M, K, s)
            t_csr, c_csr = _timed(lambda: csr_matmul(indptr, indices, data, X), budget)
            t_dense, c_dense = _timed(lambda: dense @ X, budget)
            row = {"M": M, "K": K, "N": N, "sparsity": s, "nnz": int(data.size),
                   "backend": info()["csr_matmul"], "csr_s": t_csr, "dense_s": t_dense,
                   "speedup_vs_dense": t_dense / t_csr, "cpu_speedup_vs_dense": c_dense / c_csr}
            if scipy_sparse is not None:
                S = scipy_sparse.csr_matrix((data, indices, indptr), shape=(M, K))
                row["scipy_s"], c_scipy = _timed(lambda: S @ X, budget)
                row["speedup_vs_scipy"] = row["scipy_s"] / t_csr
                row["cpu_speedup_vs_scipy"] = c_scipy / c_csr
            gflops = 2.0 * data.size * N / t_csr / 1e9
            row["gflops"] = gflops
            row["fraction_of_peak"] = gflops / peak if peak else None
            out.append(row)
            sc = (f"{row['scipy_s'] * 1e3:9.3f} {row['speedup_vs_scipy']:8.2f}x"
                  if "scipy_s" in row else f"{'-':>9} {'-':>9}")
            frac = f"{row['fraction_of_peak']:8.2f}" if peak else f"{'-':>8}"
            print(f"  {M:>4}x{K:<5} {s:8.2f} {t_csr * 1e3:8.3f} {t_dense * 1e3:9.3f} "
                  f"{row['speedup_vs_dense']:8.2f}x {sc} {frac}")


def _bench_int8(rng, quick, peak, out):
    shapes = [(256, 1024, 1024)] if quick else [(256, 1024, 1024), (256, 4096, 4096)]
    print("\nint8 GEMM (M x K) @ (K x N) -> int32 vs NumPy float32 matmul of the same shape")
    print(f"  {'shape':>16} {'weights':>18} {'int8 ms':>9} {'f32 ms':>9} {'speedup':>8} {'of peak':>8}")
    for M, K, N in shapes:
        A = rng.integers(-128, 128, (M, K), dtype=np.int8)
        Af = A.astype(np.float32)
        B_sym = rng.integers(-127, 128, (K, N), dtype=np.int8)
        Bf = B_sym.astype(np.float32)
        t_f32, c_f32 = _timed(lambda: Af @ Bf, 0.3 if quick else 1.0, min_repeats=3)
        variants = [("prepacked [-127,127]", prepare_int8(B_sym), B_sym)]
        B_min = B_sym.copy()
        B_min[0, 0] = -128
        variants.append(("prepacked with -128", prepare_int8(B_min), B_min))
        variants.append(("unpacked [-127,127]", B_sym, B_sym))
        for label, weights, _ in variants:
            t, c = _timed(lambda: gemm_int8(A, weights), 0.3 if quick else 1.0, min_repeats=3)
            gops = 2.0 * M * K * N / t / 1e9
            row = {"M": M, "K": K, "N": N, "weights": label, "backend": info()["gemm_int8"],
                   "int8_s": t, "f32_s": t_f32, "speedup_vs_f32": t_f32 / t,
                   "cpu_speedup_vs_f32": c_f32 / c, "gops": gops,
                   "fraction_of_peak": gops / peak if peak else None}
            out.append(row)
            frac = f"{row['fraction_of_peak']:8.2f}" if peak else f"{'-':>8}"
            print(f"  {M:>4}x{K:>5}x{N:<5} {label:>18} {t * 1e3:9.2f} {t_f32 * 1e3:9.2f} "
                  f"{row['speedup_vs_f32']:7.2f}x {frac}")


def _bench_xnor(rng, quick, peak, out):
    n = 1024 if quick else 4096
    M = N = K = n
    Xa = rng.standard_normal((M, K)).astype(np.float32)
    Xb = rng.standard_normal((K, N)).astype(np.float32)
    A_bits, B_bits = pack_bits(Xa), pack_bits(np.ascontiguousarray(Xb.T))
    Sa, Sb = np.sign(Xa) + (Xa == 0), np.sign(Xb) + (Xb == 0)
    print("\nXNOR GEMM on packed bits vs NumPy float32 matmul of the +-1 matrices")
    t_f32, c_f32 = _timed(lambda: Sa @ Sb, 0.3 if quick else 2.0, min_repeats=3)
    t, c = _timed(lambda: xnor_gemm(A_bits, B_bits, K), 0.3 if quick else 2.0, min_repeats=3)
    gops = 2.0 * M * N * K / t / 1e9
    row = {"M": M, "K": K, "N": N, "backend": info()["xnor_gemm"], "xnor_s": t, "f32_s": t_f32,
           "speedup_vs_f32": t_f32 / t, "cpu_speedup_vs_f32": c_f32 / c, "gops": gops,
           "fraction_of_peak": gops / peak if peak else None}
    out.append(row)
    frac = f"{row['fraction_of_peak']:.2f}" if peak else "-"
    print(f"  {M}x{K}x{N}: xnor {t * 1e3:.1f} ms, float32 {t_f32 * 1e3:.1f} ms, "
          f"speedup {row['speedup_vs_f32']:.2f}x, {gops:.0f} binary GOP/s = {frac} of fp32 peak")


def run(json_path=None, quick=False, threads=1):
    """Run the kernel benchmark, print a report and return it as a dict.

    json_path: also write the dict there as JSON. quick: smaller shapes and
    fewer repeats (seconds instead of a minute). threads: BLAS threads for the
    NumPy baseline (the C kernels are single-threaded).
    Keys: ``machine`` (kernel info, CPU, peak GFLOP/s, BLAS threading),
    ``csr``, ``int8``, ``xnor`` (one dict per measured shape).
    """
    try:
        import scipy.sparse as scipy_sparse
    except ImportError:
        scipy_sparse = None
    rng = np.random.default_rng(0)
    result = {"csr": [], "int8": [], "xnor": []}
    with _BlasThreads(threads) as blas:
        peak = fma_peak_gflops()
        kinfo = dict(info())
        result["machine"] = {
            "kernels": kinfo, "platform": platform.platform(), "processor": platform.processor(),
            "peak_fma_gflops": peak, "blas_threads": blas.how, "blas_core": blas.corename,
            "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
            "numpy": np.__version__, "scipy": getattr(scipy_sparse, "__version__", None)
            if scipy_sparse is None else __import__("scipy").__version__, "quick": quick,
        }
        print(info())
        print(f"  fp32 FMA peak (1 thread): {peak:.1f} GFLOP/s" if peak else "  fp32 FMA peak: n/a")
        print(f"  BLAS threads: {blas.how}; OpenBLAS core: {blas.corename}; "
              f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        result["machine"]["load_average_at_start"] = load
        print(f"  load average at start: {load} on {os.cpu_count()} CPUs "
              "(cpu_* ratios in the JSON use CPU time, steadier on a busy machine)")
        _bench_csr(rng, quick, peak, scipy_sparse, result["csr"])
        _bench_int8(rng, quick, peak, result["int8"])
        _bench_xnor(rng, quick, peak, result["xnor"])
    if json_path:
        write_json(json_path, result)
        print(f"\nwrote {json_path}")
    return result

