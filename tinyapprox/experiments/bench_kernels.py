"""Benchmark of the C kernels against the peer a user would pick and against the machine's peak.

``run()`` measures each kernel and, in the same process, the library a user would
reach for instead, and prints one row per kernel and shape:

* CSR x dense (float32): ``scipy.sparse`` (when importable) and the dense NumPy float32
  product; rate in GFLOP/s counting only stored nonzeros (2 * nnz * N).
* int8 GEMM (prepacked weights): torch's fbgemm ``quantized.Linear`` (when torch is
  importable) and the NumPy float32 product of the same shape; rate in GOP/s
  (2 * M * K * N integer operations).
* XNOR GEMM on packed bits: the NumPy float32 product of the +-1 matrices; rate in
  G bit-MAC/s (M * N * K binary multiply-adds).

ratio = peer time / kernel time (> 1: the kernel is faster), from median wall-clock
times after a warm-up; the JSON also holds ``cpu_ratio`` from median CPU times, which
vary less when other processes share the machine.

Fraction of peak: each kernel's rate divided by the measured peak of the instruction
sequence it relies on, times the threads it used: ``ta_fma_loop`` (vfmadd, for CSR),
``ta_vnni_loop`` (vpdpbusd) or ``ta_int8_chain_loop`` (vpmaddubsw + vpmaddwd + vpaddd)
for int8, ``ta_popcnt_loop`` (xor + vpopcntq / vpshufb nibble counts + add) for XNOR.
Each loop runs independent chains from registers on one thread and is timed in CPU
time (best of a few runs), so it is the ceiling of that instruction on one core.
Loops the loaded extension does not have are reported as missing.

Threads: every kernel, peer and the BLAS behind NumPy get the same thread count
(``threads``, default 1), except scipy.sparse, which has none; a kernel without a
``threads=`` argument runs on one thread. Each row and peer records its threads.

The report names the CPU (``/proc/cpuinfo``), its SIMD features, the live kernel
paths (:func:`tinyapprox.kernels.info`) and the OpenBLAS kernel NumPy runs
(threadpoolctl, if installed). It warns when ``OPENBLAS_CORETYPE`` (or the BLAS
build) makes NumPy run an older kernel than the CPU supports: the float32 baseline is
then slower than it should be and every ratio against it flattered. It never changes
an environment variable (importing threadpoolctl sets ``KMP_DUPLICATE_LIB_OK`` if
unset; that is threadpoolctl's doing); to measure without such a setting, start the
command under ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``.

Command line: ``tinyapprox bench kernels [--json FILE] [--quick] [--threads N[,N...]]`` or
``python -m tinyapprox.experiments.bench_kernels [--json FILE] [--quick] [--threads N[,N...]]``.
"""
import ctypes
import inspect
import json
import os
import platform
import time
import warnings

import numpy as np

from ..kernels import _ext, csr_matmul, gemm_int8, info, prepare_int8, unpack_bits, xnor_gemm
from .harness import median_wall_cpu, write_json

_OPENBLAS_SET = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                 "scipy_openblas_set_num_threads", "openblas_set_num_threads")
_OPENBLAS_GET = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                 "scipy_openblas_get_num_threads", "openblas_get_num_threads")
_OPENBLAS_CORE = ("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                  "scipy_openblas_get_corename", "openblas_get_corename")

# Default problem sizes; ``run(shapes=...)`` replaces any of them.
SHAPES = {
    "csr": [(300, 784, 256, s) for s in (0.5, 0.7, 0.9, 0.95)],   # (M, K, N, sparsity)
    "int8": [(256, 1024, 1024), (256, 4096, 4096)],                # (M, K, N)
    "xnor": [(4096, 4096, 4096), (8192, 8192, 8192)],              # (M, N, K)
}
QUICK_SHAPES = {
    "csr": [(300, 784, 256, 0.5), (300, 784, 256, 0.9)],
    "int8": [(256, 1024, 1024)],
    "xnor": [(1024, 1024, 1024)],
}


# ----------------------------------------------------------------- BLAS threads and kernel

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


def blas_kernel(corename=None):
    """Which BLAS NumPy calls and which of its CPU kernels runs, as a dict.

    Keys: ``library`` (e.g. ``"openblas"``), ``architecture`` (OpenBLAS's core name,
    e.g. ``"SkylakeX"``, ``"Haswell"``), ``version``, ``source`` (``"threadpoolctl"``,
    ``"openblas_get_corename"`` or ``"unknown"``). Values are ``"unknown"`` when
    neither threadpoolctl nor the OpenBLAS symbol (`corename`, from
    :class:`_BlasThreads`) tells.
    """
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return {"library": pool.get("internal_api", "unknown"),
                        "architecture": pool.get("architecture") or "unknown",
                        "version": pool.get("version") or "unknown", "source": "threadpoolctl"}
    except ImportError:
        pass
    if corename:
        return {"library": "openblas", "architecture": corename, "version": "unknown",
                "source": "openblas_get_corename"}
    return {"library": "unknown", "architecture": "unknown", "version": "unknown", "source": "unknown"}


# OpenBLAS x86 core names by the widest vector ISA their kernels use:
# 3 = AVX-512, 2 = AVX2 + FMA, 1 = AVX, 0 = SSE.
_CORE_RANK = {
    "skylakex": 3, "cooperlake": 3, "sapphirerapids": 3,
    "haswell": 2, "zen": 2,
    "sandybridge": 1, "bulldozer": 1, "piledriver": 1, "steamroller": 1, "excavator": 1,
    "prescott": 0, "core2": 0, "penryn": 0, "dunnington": 0, "nehalem": 0, "atom": 0,
    "barcelona": 0, "opteron": 0, "opteron_sse3": 0, "athlon": 0, "katmai": 0,
    "coppermine": 0, "northwood": 0, "banias": 0, "nano": 0, "bobcat": 0,
}
_RANK_NAME = {3: "AVX-512 (SkylakeX)", 2: "AVX2 + FMA (Haswell)", 1: "AVX (Sandybridge)", 0: "SSE"}


def cpu_rank(flags):
    """Widest BLAS kernel family the CPU supports (3 AVX-512, 2 AVX2+FMA, 1 AVX, 0 SSE).

    flags: set of lower-case CPU feature names (``/proc/cpuinfo`` spelling)."""
    if {"avx512f", "avx512bw", "avx512vl"} <= flags or {"avx512f", "avx512bw"} <= flags:
        return 3
    if {"avx2", "fma"} <= flags:
        return 2
    return 1 if "avx" in flags else 0


def coretype_warning(flags, architecture, coretype):
    """A warning (str) if NumPy's BLAS runs an older kernel than the CPU supports, else None.

    flags: the CPU's feature names; architecture: the live OpenBLAS core name (or
    ``"unknown"``); coretype: the value of ``OPENBLAS_CORETYPE`` or None. With the
    live core unknown, the forced core type is judged instead. Core names OpenBLAS
    does not have on x86 (or unknown ones) give no warning.
    """
    best = cpu_rank(flags)
    live = _CORE_RANK.get(str(architecture).lower())
    forced = _CORE_RANK.get(str(coretype).lower()) if coretype else None
    rank = live if live is not None else forced
    if rank is None or rank >= best:
        return None
    running = architecture if live is not None else coretype
    why = (f"OPENBLAS_CORETYPE={coretype} forces it" if coretype
           else "the BLAS build or its CPU detection chose it")
    return (f"numpy's OpenBLAS runs its {running} kernel ({_RANK_NAME[rank]}) although this CPU "
            f"supports {_RANK_NAME[best]}: {why}. The float32 baseline is slower than it should be, "
            "so ratios against numpy are flattered; rerun under "
            "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` for a fair baseline.")


def cpu_name():
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor(), else 'unknown'."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags():
    """Lower-case CPU feature names: /proc/cpuinfo ``flags`` if readable, else kernels.info()'s."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("flags"):
                    return set(line.split(":", 1)[1].lower().split())
    except OSError:
        pass
    return {name.replace(".", "_") for name, present in info()["cpu"].items() if present}


# ----------------------------------------------------------------- timing

def _timed(fn, budget=0.4, min_repeats=5):
    """(median wall seconds, median CPU seconds) of fn() after one warm-up call, with enough
    repeats (at least ``min_repeats``) to fill about ``budget`` seconds. CPU time counts
    every thread of the process, so for a multi-threaded call it exceeds the wall time."""
    return median_wall_cpu(fn, repeat=min_repeats, warmup=1, budget=budget)


def _peer(kernel_times, fn, threads, budget, min_repeats=5):
    """{seconds, ratio, cpu_ratio, threads} of peer fn() (run on `threads` threads) against
    the kernel's (wall, cpu) times."""
    wall, cpu = _timed(fn, budget, min_repeats)
    return {"seconds": wall, "ratio": wall / kernel_times[0],
            "cpu_ratio": cpu / max(kernel_times[1], 1e-12), "threads": threads}


# ----------------------------------------------------------------- peaks of the instructions

# name: (extension function, sink C type, unit of the count it returns)
PEAK_LOOPS = {
    "fma": ("ta_fma_loop", "float *", "GFLOP/s"),
    "int8_chain": ("ta_int8_chain_loop", "int32_t *", "GOP/s"),
    "vnni": ("ta_vnni_loop", "int32_t *", "GOP/s"),
    "popcnt": ("ta_popcnt_loop", "int64_t *", "G bit-MAC/s"),
}
_LEVELS = {"scalar": 0, "avx2": 1}  # any other path name starts with avx512: level 2
_INSTRUCTIONS = {
    ("fma", 0): "scalar float multiply-add", ("fma", 1): "vfmadd (AVX2)",
    ("fma", 2): "vfmadd (AVX-512)",
    ("int8_chain", 0): "scalar int multiply-add", ("int8_chain", 1): "vpmaddubsw + vpmaddwd + vpaddd (AVX2)",
    ("int8_chain", 2): "vpmaddubsw + vpmaddwd + vpaddd (AVX-512BW)",
    ("vnni", 2): "vpdpbusd (AVX-512 VNNI)",
    ("popcnt", 0): "xor + popcnt + add", ("popcnt", 1): "xor + vpshufb nibble counts + add (AVX2)",
    ("popcnt", 2): "xor + vpopcntq + add (AVX-512)",
}


def measure_peak(name, isa=-1, seconds=0.05, rounds=5):
    """Single-thread peak of calibration loop `name` (a key of PEAK_LOOPS), in its unit (1e9/s).

    Runs the extension's loop on SIMD level `isa` (-1: the best) long enough to
    time, and keeps the best of `rounds` runs of about `seconds` of CPU time (CPU
    time, so that other processes sharing the core do not lower it). None if the
    extension or that loop is absent, or the level is unavailable. Every loop
    returns the operations it ran: 2 per multiply-add (fma, int8_chain, vnni), or
    binary multiply-adds (popcnt).
    """
    lib, ffi = _ext.lib, _ext.ffi
    func_name, sink_type = PEAK_LOOPS[name][:2]
    if lib is None or not hasattr(lib, func_name):
        return None
    loop, sink = getattr(lib, func_name), ffi.new(sink_type)
    iters = 1000
    while True:  # grow until one run lasts long enough to time
        t0 = time.process_time()
        count = loop(isa, iters, sink)
        dt = time.process_time() - t0
        if count < 0:
            return None
        if dt > seconds / 4 or iters > 10**10:
            break
        iters *= 4
    iters = int(iters * seconds / max(dt, 1e-9)) + 1
    best = 0.0
    for _ in range(rounds):
        t0 = time.process_time()
        count = loop(isa, iters, sink)
        best = max(best, count / max(time.process_time() - t0, 1e-9))
    return best / 1e9


def fma_peak_gflops(seconds=0.05, rounds=5):
    """Single-thread float32 FMA peak in GFLOP/s on the widest path; None without the extension."""
    return measure_peak("fma", -1, seconds, rounds)


def peak_for(kernel, path):
    """(peak loop name, SIMD level) of the instruction sequence `kernel` relies on when it
    runs `path` (a name from :func:`tinyapprox.kernels.info`); None for the NumPy twin."""
    if path == "numpy":
        return None
    level = _LEVELS.get(path, 2)
    if kernel == "csr_matmul":
        return "fma", level
    if kernel == "gemm_int8":
        return ("vnni", 2) if "vnni" in path else ("int8_chain", level)
    return "popcnt", level


def _measure_peaks(kinfo, seconds):
    """{key: {loop, level, instruction, unit, per_thread}} for each kernel's live path, plus
    the AVX2 int8 chain (the ceiling of the AVX2 int8 GEMM) where the CPU runs it."""
    wanted = {k: peak_for(k, kinfo[k]) for k in ("csr_matmul", "gemm_int8", "xnor_gemm")}
    if _ext.lib is not None and int(_ext.lib.ta_best_isa(0)) >= 1:
        wanted["int8_chain_avx2"] = ("int8_chain", 1)
    peaks = {}
    for key, spec in wanted.items():
        if spec is None:
            continue
        name, level = spec
        peaks[key] = {"loop": PEAK_LOOPS[name][0], "level": level,
                      "instruction": _INSTRUCTIONS.get((name, level), name),
                      "unit": PEAK_LOOPS[name][2],
                      "per_thread": measure_peak(name, level, seconds)}
    return peaks


def _peak_entry(peaks, kernel, rate, threads):
    """The kernel's peak (see _measure_peaks) with ``fraction`` = rate / (peak * threads)."""
    entry = dict(peaks.get(kernel) or {"loop": None, "instruction": "none (NumPy twin)",
                                        "per_thread": None})
    entry["fraction"] = rate / (entry["per_thread"] * threads) if entry["per_thread"] else None
    return entry


# ----------------------------------------------------------------- threads

def _accepts_threads(fn):
    try:
        return "threads" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _with_threads(fn, threads):
    """(callable taking fn's arguments, threads it will use): threads= passed if fn takes it."""
    if _accepts_threads(fn):
        return (lambda *a, **k: fn(*a, threads=threads, **k)), threads
    return fn, 1


# ----------------------------------------------------------------- problems

def _random_csr(rng, M, K, sparsity):
    nnz = int(round(M * K * (1.0 - sparsity)))
    mask = np.zeros(M * K, dtype=bool)
    mask[rng.permutation(M * K)[:nnz]] = True
    dense = np.where(mask.reshape(M, K), rng.standard_normal((M, K)), 0).astype(np.float32)
    rows, cols = np.nonzero(dense)
    indptr = np.concatenate([[0], np.cumsum(np.count_nonzero(dense, axis=1))]).astype(np.int64)
    return dense, indptr, cols.astype(np.int32), dense[rows, cols]


def _fmt_peers(row):
    shown = [f"{name} {p['ratio']:.2f}x" for name, p in row["peers"].items()]
    shown += [f"{name}: {why}" for name, why in row.get("peers_missing", {}).items()]
    return "  ".join(shown)


def _fmt_peak(row):
    peak = row["peak"]
    if peak["fraction"] is not None:
        return f"{peak['fraction']:.0%} of the {peak['instruction']} peak"
    return f"peak of {peak['instruction']} unknown ({peak['loop'] or 'no loop'} not in this build)"


def _bench_csr(rng, shapes, threads, peaks, budget, scipy_sparse, out):
    kernel, used = _with_threads(csr_matmul, threads)
    print("\nCSR (M x K, float32) @ dense (K x N); rate counts stored nonzeros; "
          "ratio = peer time / CSR time")
    for M, K, N, s in shapes:
        X = rng.standard_normal((K, N)).astype(np.float32)
        dense, indptr, indices, data = _random_csr(rng, M, K, s)
        times = _timed(lambda: kernel(indptr, indices, data, X), budget)
        rate = 2.0 * data.size * N / times[0] / 1e9
        row = {"kernel": "csr_matmul", "shape": {"M": M, "K": K, "N": N}, "sparsity": s,
               "nnz": int(data.size), "path": info()["csr_matmul"], "threads": used,
               "threads_requested": threads, "seconds": times[0], "cpu_seconds": times[1],
               "rate": rate, "unit": "GFLOP/s", "peers": {}}
        if scipy_sparse is not None:
            S = scipy_sparse.csr_matrix((data, indices, indptr), shape=(M, K))
            row["peers"]["scipy.sparse"] = _peer(times, lambda: S @ X, 1, budget)  # no threads
        row["peers"]["numpy fp32 dense"] = _peer(times, lambda: dense @ X, threads, budget)
        row["peak"] = _peak_entry(peaks, "csr_matmul", rate, used)
        out.append(row)
        print(f"  {M}x{K} @ {K}x{N} at {s:.0%} zeros: {times[0] * 1e3:.3f} ms, {rate:.1f} GFLOP/s, "
              f"{used} thread(s); vs {_fmt_peers(row)}; {_fmt_peak(row)}")


def _torch_fbgemm(A, B, threads):
    """(call, restore) running torch's fbgemm ``quantized.Linear`` on A (M, K) int8 with
    weights B (K, N) int8 on `threads` threads, or (None, reason) when torch is unusable.

    The input is quint8 with zero point 128 (so it carries A exactly), the weights
    qint8 with zero point 0; fbgemm requantizes its int32 sums to quint8, as a
    quantized layer does. restore() puts back torch's engine and thread count."""
    try:
        import torch
    except ImportError:
        return None, "torch not importable"
    engine, before = torch.backends.quantized.engine, torch.get_num_threads()

    def restore():
        torch.backends.quantized.engine = engine
        torch.set_num_threads(before)

    try:
        try:
            from torch.ao.nn.quantized import Linear as QuantizedLinear
        except ImportError:  # torch < 1.13
            from torch.nn.quantized import Linear as QuantizedLinear
        if "fbgemm" not in torch.backends.quantized.supported_engines:
            return None, "torch has no fbgemm engine"
        torch.backends.quantized.engine = "fbgemm"
        torch.set_num_threads(threads)
        K, N = B.shape
        with warnings.catch_warnings():  # recent torch deprecates quantized tensors
            warnings.simplefilter("ignore", UserWarning)
            layer = QuantizedLinear(K, N, bias_=False, dtype=torch.qint8)
            w = torch.quantize_per_tensor(
                torch.from_numpy(np.ascontiguousarray(B.T, dtype=np.float32)), 1.0, 0, torch.qint8)
            layer.set_weight_bias(w, None)
            layer.scale, layer.zero_point = float(K * 128), 128
            x = torch.quantize_per_tensor(torch.from_numpy(A.astype(np.float32) + 128.0), 1.0, 128,
                                          torch.quint8)

        def call():
            with torch.inference_mode():
                layer(x)

        call()
        return call, restore
    except Exception as exc:  # noqa: BLE001 - a peer that fails is reported, not fatal
        restore()
        return None, f"torch fbgemm failed: {type(exc).__name__}: {exc}"


def _bench_int8(rng, shapes, threads, peaks, budget, out):
    kernel, used = _with_threads(gemm_int8, threads)
    path = info()["gemm_int8"]
    print("\nint8 GEMM (M x K) @ prepacked (K x N) -> int32; ratio = peer time / int8 time")
    for M, K, N in shapes:
        A = rng.integers(-128, 128, (M, K), dtype=np.int8)
        B = rng.integers(-127, 128, (K, N), dtype=np.int8)
        weights = prepare_int8(B)
        times = _timed(lambda: kernel(A, weights), budget, min_repeats=3)
        rate = 2.0 * M * K * N / times[0] / 1e9
        row = {"kernel": "gemm_int8", "shape": {"M": M, "K": K, "N": N}, "weights": "prepacked",
               "path": path, "threads": used, "threads_requested": threads, "seconds": times[0],
               "cpu_seconds": times[1], "rate": rate, "unit": "GOP/s", "peers": {}}
        call, extra = _torch_fbgemm(A, B, threads)
        if call is not None:
            try:
                row["peers"]["torch fbgemm quantized.Linear"] = _peer(times, call, threads, budget, 3)
            finally:
                extra()
        else:
            row["peers_missing"] = {"torch fbgemm quantized.Linear": extra}
        Af, Bf = A.astype(np.float32), B.astype(np.float32)
        row["peers"]["numpy fp32"] = _peer(times, lambda: Af @ Bf, threads, budget, 3)
        row["peak"] = _peak_entry(peaks, "gemm_int8", rate, used)
        out.append(row)
        print(f"  {M}x{K}x{N} [{path}]: {times[0] * 1e3:.2f} ms, {rate:.0f} GOP/s, {used} thread(s); "
              f"vs {_fmt_peers(row)}; {_fmt_peak(row)}")


def _random_bits(rng, rows, K):
    """(rows, ceil(K/64)) uint64 of random signs, padding bits beyond K zero."""
    W = (K + 63) // 64
    bits = rng.integers(0, np.iinfo(np.uint64).max, (rows, W), dtype=np.uint64, endpoint=True)
    if K % 64 and W:
        bits[:, -1] &= np.uint64((1 << (K % 64)) - 1)
    return bits


_XNOR_NUMPY_LIMIT = 4096**3  # above it one float32 product takes several seconds per call


def _bench_xnor(rng, shapes, threads, peaks, budget, out):
    kernel, used = _with_threads(xnor_gemm, threads)
    print("\nXNOR GEMM on packed bits; rate in binary multiply-adds; ratio = peer time / XNOR time")
    for M, N, K in shapes:
        A_bits, B_bits = _random_bits(rng, M, K), _random_bits(rng, N, K)
        times = _timed(lambda: kernel(A_bits, B_bits, K), budget, min_repeats=3)
        rate = float(M) * N * K / times[0] / 1e9
        row = {"kernel": "xnor_gemm", "shape": {"M": M, "N": N, "K": K}, "path": info()["xnor_gemm"],
               "threads": used, "threads_requested": threads, "seconds": times[0],
               "cpu_seconds": times[1], "rate": rate, "unit": "G bit-MAC/s", "peers": {}}
        if float(M) * N * K <= _XNOR_NUMPY_LIMIT:
            Sa = unpack_bits(A_bits, K)
            SbT = np.ascontiguousarray(unpack_bits(B_bits, K).T)
            row["peers"]["numpy fp32 (+-1)"] = _peer(times, lambda: Sa @ SbT, threads, budget, 3)
            del Sa, SbT
        else:
            row["peers_missing"] = {"numpy fp32 (+-1)": "skipped above 4096^3 (seconds per call)"}
        row["peak"] = _peak_entry(peaks, "xnor_gemm", rate, used)
        out.append(row)
        print(f"  {M}x{N}x{K}: {times[0] * 1e3:.1f} ms, {rate:.0f} G bit-MAC/s, {used} thread(s); "
              f"vs {_fmt_peers(row)}; {_fmt_peak(row)}")


# ----------------------------------------------------------------- the report

def machine_report(threads=1, peak_seconds=0.05):
    """The machine section of the report: CPU, features, kernel paths, BLAS, peaks, warnings.

    threads: the thread count (or list of counts) the run uses, recorded as given.
    Measures, on one thread, the peak of the instruction sequence each kernel's live
    path relies on (see :func:`peak_for`, :func:`measure_peak`) and of the AVX2 int8
    chain. Returns a dict of plain values (JSON-ready).
    """
    kinfo = info()
    flags = cpu_flags()
    with _BlasThreads(threads[0] if isinstance(threads, list) else threads) as blas:
        blas_how, corename = blas.how, blas.corename
    blas_info = blas_kernel(corename)
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    warning = coretype_warning(flags, blas_info["architecture"], coretype)
    found = [warning] if warning else []
    if kinfo.get("simd_emulated"):
        found.append("the loaded C extension is the SIMDe test build: its SIMD paths are "
                     "emulated in plain C, so its rates and peaks say nothing about this CPU")
    peaks = _measure_peaks(kinfo, peak_seconds)
    try:
        import scipy
        scipy_version = scipy.__version__
    except ImportError:
        scipy_version = None
    return {
        "cpu": cpu_name(), "cpu_features": dict(kinfo["cpu"]),
        "kernels": {k: v for k, v in kinfo.items() if k != "cpu"},
        "threads": threads, "usable_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "blas": {**blas_info, "threads": blas_how}, "openblas_coretype_env": coretype,
        "openblas_l2_size_env": os.environ.get("OPENBLAS_L2_SIZE"),
        "warnings": found,
        "peaks_per_thread": peaks,
        "platform": platform.platform(), "numpy": np.__version__, "scipy": scipy_version,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _thread_counts(threads):
    """[n, ...] from an int, a sequence of ints or a string like ``"1,2"``; ValueError if any
    count is not an int in [1, 64]."""
    items = threads.split(",") if isinstance(threads, str) else (
        list(threads) if isinstance(threads, (list, tuple)) else [threads])
    counts = []
    for item in items:
        try:
            n = int(item.strip()) if isinstance(item, str) else item
        except ValueError:
            n = item
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
            raise ValueError(f"bench kernels: threads must be an int in [1, 64] or a list of them, "
                             f"got {threads!r}")
        counts.append(n)
    if not counts:
        raise ValueError("bench kernels: threads is empty")
    return counts


def _scaling(result, base):
    """Add ``scaling`` = rate / rate at `base` threads to each row, and print it."""
    print(f"\nscaling: rate / rate at {base} thread(s), same shapes, same run")
    for group in ("csr", "int8", "xnor"):
        rows = result[group]
        ref = {json.dumps([r["shape"], r.get("sparsity")]): r["rate"]
               for r in rows if r["threads_requested"] == base}
        for row in rows:
            key = json.dumps([row["shape"], row.get("sparsity")])
            row["scaling"] = row["rate"] / ref[key] if key in ref else None
            if row["threads_requested"] != base and row["scaling"] is not None:
                extra = f" at {row['sparsity']:.0%} zeros" if "sparsity" in row else ""
                print(f"  {row['kernel']} {'x'.join(str(v) for v in row['shape'].values())}{extra}: "
                      f"{row['threads_requested']} threads {row['scaling']:.2f}x"
                      + ("" if row["threads"] > 1 else " (the kernel ran on 1 thread)"))


def run(json_path=None, quick=False, threads=1, shapes=None, budget=None, peak_seconds=0.05):
    """Run the kernel benchmark, print a report and return it as a dict.

    json_path: also write the dict there as JSON. quick: smaller shapes and fewer
    repeats (seconds instead of minutes). threads: threads for every kernel that takes
    ``threads=``, for the peers and for the BLAS behind NumPy; a list (or ``"1,2"``)
    measures every shape at each count and adds ``scaling`` (rate / rate at the first
    count) to the rows. shapes: replaces
    entries of :data:`SHAPES` (``{"csr": [(M, K, N, sparsity)], "int8": [(M, K, N)],
    "xnor": [(M, N, K)]}``). budget: seconds of repeats per timing. peak_seconds: CPU
    seconds per calibration run.
    Keys: ``machine`` (see :func:`machine_report`), ``csr``, ``int8``, ``xnor`` (one
    dict per shape: kernel, shape, path, threads, seconds, rate, unit, peers {name:
    {seconds, ratio, cpu_ratio, threads}}, peak {loop, instruction, per_thread, fraction}).
    Raises ValueError for a thread count outside [1, 64] or an unknown shape group.
    """
    counts = _thread_counts(threads)
    unknown = set(shapes or {}) - set(SHAPES)
    if unknown:
        raise ValueError(f"bench kernels: unknown shape groups {sorted(unknown)}; "
                         f"expected some of {sorted(SHAPES)}")
    try:
        import scipy.sparse as scipy_sparse
    except ImportError:
        scipy_sparse = None
    chosen = dict(QUICK_SHAPES if quick else SHAPES)
    chosen.update(shapes or {})
    if budget is None:
        budget = 0.2 if quick else 0.6
    result = {"machine": machine_report(counts[0] if len(counts) == 1 else counts, peak_seconds),
              "csr": [], "int8": [], "xnor": []}
    machine = result["machine"]
    machine["quick"] = quick
    print(info())
    print(f"  CPU: {machine['cpu']}; {', '.join(map(str, counts))} thread(s) for kernels, peers "
          f"and BLAS ({machine['usable_cores']} usable cores)")
    print(f"  numpy BLAS: {machine['blas']['library']} {machine['blas']['version']}, kernel "
          f"{machine['blas']['architecture']} ({machine['blas']['source']}); "
          f"OPENBLAS_CORETYPE={machine['openblas_coretype_env']}")
    peaks = machine["peaks_per_thread"]
    print("  measured peaks per thread: " + "; ".join(
        f"{p['instruction']} {p['per_thread']:.0f} {p['unit']}" if p["per_thread"]
        else f"{p['instruction']}: {p['loop']} not in this build" for p in peaks.values()))
    print(f"  load average at start: {machine['load_average_at_start']} "
          "(cpu_ratio in the JSON uses CPU time, steadier on a busy machine)")
    for text in machine["warnings"]:
        print(f"  WARNING: {text}")
        warnings.warn(text, RuntimeWarning, stacklevel=2)
    for n in counts:
        if len(counts) > 1:
            print(f"\n=== {n} thread(s) ===")
        rng = np.random.default_rng(0)  # the same problems for every thread count
        with _BlasThreads(n):
            _bench_csr(rng, chosen["csr"], n, peaks, budget, scipy_sparse, result["csr"])
            _bench_int8(rng, chosen["int8"], n, peaks, budget, result["int8"])
            _bench_xnor(rng, chosen["xnor"], n, peaks, budget, result["xnor"])
    if len(counts) > 1:
        _scaling(result, counts[0])
    if json_path:
        write_json(json_path, result)
        print(f"\nwrote {json_path}")
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Benchmark the tinyapprox C kernels.")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--quick", action="store_true", help="small shapes, a few seconds")
    parser.add_argument("--threads", default="1",
                        help="threads for the kernels, their peers and the BLAS baseline; "
                             "a list like 1,2 measures each and the scaling")
    ns = parser.parse_args()
    run(ns.json, ns.quick, ns.threads)
