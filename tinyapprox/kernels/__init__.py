"""Python face of the C kernels, with NumPy twins that define the right answer.

Three hot paths of approximate deep learning, each with a plain NumPy twin of
the same name in :mod:`tinyapprox.kernels.reference`:

* :func:`csr_matmul` -- float32 CSR sparse (M, K) times dense (K, N) (pruned layers);
* :func:`gemm_int8` -- exact int8 x int8 -> int32 product (quantized layers), with a
  prepacked-weight form (:func:`prepare_int8`) and a requantizing companion
  (:func:`gemm_int8_requant`); :func:`int8_linear` is the fused integer layer
  (bias, integer requantization with round-half-even, ReLU, int8 / int32 / float32
  output) and :func:`quantize_int8` turns a float activation into int8 codes;
* :func:`xnor_gemm` -- +-1 products of bit-packed matrices by XOR and popcount
  (binarized layers), with :func:`pack_bits` / :func:`unpack_bits`.

and fused inference entry points that take row-major activations (N, features):
:func:`csr_linear` (pruned layer: ``x @ W.T + b``, ReLU) and :func:`binary_linear`
(binary layer: dot products, or thresholds straight to packed bits).

Every public function validates dtype, shape, C-contiguity, alignment and index
ranges before any C call and raises ``TypeError`` / ``ValueError`` naming the
operation, what it expected and what it got. The C code checks sizes again and
never runs an instruction the CPU lacks.

Backends: ``backend=None`` uses C when the extension is loaded, else NumPy;
``"numpy"`` forces the twin; ``"c"`` forces C (``RuntimeError`` if absent);
``"c-scalar"``, ``"c-avx2"``, ``"c-avx512"`` cap the SIMD level of the C path (see
:func:`c_paths`); the int8 kernels also take ``"c-avx512bw"`` (the AVX-512BW kernel
even on a VNNI CPU, see :func:`int8_c_paths`). :func:`info` tells which path each
kernel uses. The C calls release the GIL.

Threads: ``gemm_int8``, ``int8_linear``, ``quantize_int8``, ``csr_matmul``, ``xnor_gemm``,
``csr_linear``, ``binary_linear`` and ``im2col`` take ``threads=`` (None:
:func:`default_threads`); the C code splits the work over that many threads started for
the call (fewer when the work is too small to pay for them) and the result is the same
bits for every count.
"""
import os
import threading

import numpy as np

from . import _ext, reference
from .reference import INT8_MAX_K

__all__ = ["info", "backends", "c_paths", "csr_matmul", "gemm_int8", "prepare_int8",
           "Int8Weights", "gemm_int8_requant", "int8_linear", "quantize_int8", "int8_c_paths", "xnor_gemm",
           "pack_bits", "unpack_bits", "reference", "INT8_MAX_K", "MAX_THREADS", "default_threads", "csr_linear",
           "binary_linear"]

_INT32_MAX = 2**31 - 1
_KERNEL_IDS = {"csr_matmul": 0, "gemm_int8": 1, "xnor_gemm": 2}
_KERNEL_OF = {"csr_linear": "csr_matmul", "binary_linear": "xnor_gemm"}  # fused op -> its kernel
_PATH_NAMES = {
    "csr_matmul": ("scalar", "avx2", "avx512"),
    "gemm_int8": ("scalar", "avx2", "avx512-vnni"),  # "avx512bw" on AVX-512 without VNNI
    "xnor_gemm": ("scalar", "avx2", "avx512-vpopcntdq"),
}
_CPU_FLAGS = ("sse4.2", "popcnt", "avx2", "fma", "avx512f", "avx512bw", "avx512vnni",
              "avx512vpopcntdq")
_C_ERRORS = {
    1: (ValueError, "sizes are negative or their product overflows"),
    2: (ValueError, "CSR indptr/indices out of range or not monotone"),
    3: (RuntimeError, "the requested SIMD path is not supported by this CPU"),
    4: (MemoryError, "scratch allocation failed"),
    5: (ValueError, "packed weights do not match K, N or layout"),
    6: (ValueError, f"K exceeds {INT8_MAX_K}, the exact int32 accumulation bound"),
    7: (ValueError, "nonzero bits beyond K in a packed operand"),
    8: (ValueError, "NULL pointer for a non-empty array"),
    9: (ValueError, "array not aligned for its dtype"),
    10: (ValueError, "thread count out of range"),
    11: (ValueError, "an argument value is out of range or the input holds NaN"),
}

MAX_THREADS = 64


# ----------------------------------------------------------------- introspection

class KernelInfo(dict):
    """The dict returned by :func:`info`; ``str()`` gives a readable summary."""

    def __str__(self):
        lines = ["tinyapprox kernels",
                 f"  C extension loaded : {self['extension_loaded']}"
                 + (f" ({self['extension_path']})" if self.get("extension_path") else ""),
                 f"  forced NumPy       : {self['forced_numpy']}"]
        if self.get("load_error"):
            lines.append(f"  load error         : {self['load_error']}")
        if self.get("simd_emulated"):
            lines.append("  SIMD paths         : emulated by SIMDe (test build, slow)")
        for name in _KERNEL_IDS:
            lines.append(f"  {name:<19}: {self[name]}")
        flags = [k for k, v in self["cpu"].items() if v]
        lines.append(f"  CPU features       : {' '.join(flags) if flags else '(not probed)'}")
        return "\n".join(lines)


def _best_level(kernel):
    """Best TA_ISA_* level of `kernel` on this CPU, lowered to the TINYAPPROX_KERNELS cap."""
    level = int(_ext.lib.ta_best_isa(_KERNEL_IDS[kernel]))
    if _ext.isa_cap is not None:
        level = min(level, _ext.isa_cap)
    return level


def info():
    """Which backend and SIMD path each kernel uses, and what the CPU offers.

    Returns a :class:`KernelInfo` (a dict) with keys ``extension_loaded``,
    ``forced_numpy``, ``extension_path``, ``load_error``, ``simd_emulated``
    (True only for the test build whose SIMD paths SIMDe emulates in plain C,
    see ``c_kernels/simde_check.sh``), one key per kernel
    (``"csr_matmul"``, ``"gemm_int8"``, ``"xnor_gemm"``) whose value is
    ``"numpy"``, ``"scalar"``, ``"avx2"``, ``"avx512"``, ``"avx512-vnni"`` or
    ``"avx512-vpopcntdq"``, and ``cpu``: {feature: bool} as seen at run time.
    """
    loaded = _ext.lib is not None
    out = KernelInfo(extension_loaded=loaded, forced_numpy=_ext.forced_numpy,
                     extension_path=_ext.path, load_error=_ext.load_error,
                     simd_emulated=loaded and hasattr(_ext.lib, "ta_simd_emulated")
                     and bool(_ext.lib.ta_simd_emulated()))
    for name in _KERNEL_IDS:
        out[name] = _PATH_NAMES[name][_best_level(name)] if loaded else "numpy"
    if loaded and out["gemm_int8"] == "avx512-vnni" and not _int8_vnni():
        out["gemm_int8"] = "avx512bw"
    cpu = {flag: False for flag in _CPU_FLAGS}
    if loaded:
        feats = _ext.ffi.new("int[8]")
        _ext.lib.ta_cpu_features(feats)
        cpu = {flag: bool(feats[i]) for i, flag in enumerate(_CPU_FLAGS)}
    out["cpu"] = cpu
    return out


def backends():
    """Available backend names: ``["numpy", "c"]``, or ``["numpy"]`` without the extension."""
    return ["numpy", "c"] if _ext.lib is not None else ["numpy"]


def c_paths():
    """Names of the C paths this CPU can run, e.g. ``["c-scalar", "c-avx2"]``.

    Passing one as ``backend=`` caps the SIMD level (a kernel without a path at
    that level uses its best lower one). Empty without the extension.
    """
    if _ext.lib is None:
        return []
    top = max(int(_ext.lib.ta_best_isa(k)) for k in _KERNEL_IDS.values())
    return [f"c-{_ext.ISA_NAMES[level]}" for level in range(top + 1)]


def _resolve(op, backend):
    """None for the NumPy twin, else the SIMD level for the C call."""
    kernel = _KERNEL_OF.get(op, op)
    if backend is None:
        return None if _ext.lib is None else _best_level(kernel)
    if backend == "numpy":
        return None
    if backend == "c" or (isinstance(backend, str) and backend[2:] in _ext.ISA_NAMES
                          and backend.startswith("c-")):
        if _ext.lib is None:
            why = "TINYAPPROX_KERNELS=numpy" if _ext.forced_numpy else (_ext.load_error or "not built")
            raise RuntimeError(f"{op}: backend={backend!r} requested but the C extension is not "
                               f"loaded ({why})")
        if backend == "c":
            return _best_level(kernel)
        return min(_ext.ISA_NAMES.index(backend[2:]), int(_ext.lib.ta_best_isa(_KERNEL_IDS[kernel])))
    raise ValueError(f"{op}: unknown backend {backend!r}; expected None, 'numpy', 'c' or one of "
                     f"{['c-' + n for n in _ext.ISA_NAMES]}")


def _check_rc(op, rc):
    """Raise the exception mapped to C return code `rc` (see _C_ERRORS); nothing for 0."""
    if rc != 0:
        exc, what = _C_ERRORS.get(rc, (RuntimeError, f"unknown error code {rc}"))
        raise exc(f"{op}: the C kernel refused its input: {what}")


def _ptr(ctype, arr):
    """A cffi `ctype *` view of arr's buffer (no copy; arr must stay alive during the call)."""
    return _ext.ffi.from_buffer(ctype + "[]", arr)


# ----------------------------------------------------------------- validation

def _check_array(op, name, x, dtype=None, kind=None, ndim=None):
    """Raise unless x is an aligned C-contiguous ndarray of the given dtype / kind and ndim."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy.ndarray, got {type(x).__name__}")
    allowed = ndim if isinstance(ndim, tuple) else (ndim,)
    if ndim is not None and x.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{op}: {name} must be {want}, got shape {x.shape}")
    if dtype is not None and x.dtype != np.dtype(dtype):
        raise TypeError(f"{op}: {name} must have dtype {np.dtype(dtype)}, got {x.dtype}")
    if kind == "int" and (x.dtype.kind not in "iu"):
        raise TypeError(f"{op}: {name} must have an integer dtype, got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{op}: {name} must be C-contiguous (use np.ascontiguousarray), "
                         f"got strides {x.strides} for shape {x.shape}")
    if not x.flags.aligned:
        raise ValueError(f"{op}: {name} must be aligned for dtype {x.dtype} (copy it with np.array)")


def _out_array(op, out, shape, dtype, inputs):
    """A fresh (shape, dtype) array, or `out` after checking it can receive the result."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    _check_array(op, "out", out, dtype=dtype)
    if out.shape != tuple(shape):
        raise ValueError(f"{op}: out must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.writeable:
        raise ValueError(f"{op}: out is read-only")
    if any(np.may_share_memory(out, x) for x in inputs):
        raise ValueError(f"{op}: out must not overlap an input")
    return out


def _check_int(op, name, value, lo, hi):
    """value as an int; TypeError unless an int (bool refused), ValueError outside [lo, hi]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{op}: {name} must be in [{lo}, {hi}], got {value}")
    return int(value)


def default_threads():
    """Threads a kernel uses when ``threads=None``: ``TINYAPPROX_NUM_THREADS`` if set, else
    the number of cores this process may run on (``os.sched_getaffinity``), capped at
    MAX_THREADS. Raises ValueError naming the variable if it is not an int in [1, MAX_THREADS]."""
    env = os.environ.get("TINYAPPROX_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"TINYAPPROX_NUM_THREADS must be an int in [1, {MAX_THREADS}], got {env!r}") from None
        if not 1 <= n <= MAX_THREADS:
            raise ValueError(f"TINYAPPROX_NUM_THREADS must be an int in [1, {MAX_THREADS}], got {n}")
        return n
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_THREADS))


def _threads(op, threads):
    """The thread count for one call: ``default_threads()`` for None, else an int in [1, MAX_THREADS]."""
    if threads is None:
        return default_threads()
    return _check_int(op, "threads", threads, 1, MAX_THREADS)


# ----------------------------------------------------------------- CSR x dense

def csr_matmul(indptr, indices, data, X, backend=None, shape=None, out=None, threads=None):
    """Y = A @ X for a CSR matrix A (M, K) and a dense X (K, N).

    indptr: (M+1,) integer, starts at 0, non-decreasing, ends at nnz;
    indices: (nnz,) integer column of each stored value, in [0, K), any order,
    duplicates add up; data: (nnz,) float32; X: (K, N) float32 C-contiguous.
    shape: optional (M, K) of A, checked against indptr and X.
    out: optional (M, N) float32 C-contiguous array to write Y into (saves the
    allocation, which matters for small products); it must not overlap X.
    threads: None (``default_threads()``) or int in [1, MAX_THREADS]; each
    element of Y is summed by one thread in a fixed order, so Y is the same bits
    for any thread count.
    Returns Y: (M, N) float32, equal to ``reference.csr_matmul`` up to float32
    rounding (the summation order differs).

    NaN and infinity in data or X are allowed and follow IEEE arithmetic over
    the stored entries: a stored NaN makes its whole row of Y NaN, and a
    non-finite X[k] spreads only into rows that store column k (an unstored
    zero never multiplies it, unlike in a dense ``A @ X``). They are not
    refused because a pruned layer with a diverged weight should show NaN,
    not hide it.

    Raises TypeError for wrong types/dtypes, ValueError for bad shapes, layout
    or index ranges, RuntimeError if ``backend`` asks for C that is absent.
    The column range of int32 indices is checked in one vectorized pass by the C
    kernel before it computes anything (it refuses the call, and the same
    ValueError is raised here); wider index dtypes are checked in NumPy first.
    """
    op = "csr_matmul"
    _check_array(op, "indptr", indptr, kind="int", ndim=1)
    _check_array(op, "indices", indices, kind="int", ndim=1)
    _check_array(op, "data", data, dtype=np.float32, ndim=1)
    _check_array(op, "X", X, dtype=np.float32, ndim=2)
    if indptr.size == 0:
        raise ValueError(f"{op}: indptr must have M+1 >= 1 entries, got 0")
    M, nnz = indptr.size - 1, indices.size
    K, N = X.shape
    if data.size != nnz:
        raise ValueError(f"{op}: indices and data must have the same length (nnz), "
                         f"got {nnz} and {data.size}")
    if shape is not None:
        if tuple(shape) != (M, K):
            raise ValueError(f"{op}: shape {tuple(shape)} does not match indptr (M={M}) and "
                             f"X (K={K} rows); expected ({M}, {K})")
    ip = indptr.astype(np.int64, copy=False)
    if indptr.dtype.kind == "u" and int(indptr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{op}: indptr values exceed int64")
    if ip[0] != 0 or ip[-1] != nnz:
        raise ValueError(f"{op}: indptr must start at 0 and end at nnz={nnz}, "
                         f"got {int(ip[0])} ... {int(ip[-1])}")
    if M and bool((ip[1:] < ip[:-1]).any()):
        row = int(np.argmax(ip[1:] < ip[:-1]))
        raise ValueError(f"{op}: indptr must be non-decreasing, but indptr[{row + 1}]="
                         f"{int(ip[row + 1])} < indptr[{row}]={int(ip[row])}")
    nt = _threads(op, threads)
    level = _resolve(op, backend)
    Y = _out_array(op, out, (M, N), np.float32, (indptr, indices, data, X))
    if level is None:
        _check_csr_columns(op, indices, K)
        Y[...] = reference.csr_matmul(ip, indices, data, X)
        return Y
    if K > _INT32_MAX:
        raise ValueError(f"{op}: K={K} exceeds the C kernel limit {_INT32_MAX}; use backend='numpy'")
    if indices.dtype.itemsize > 4 or indices.dtype == np.uint32:
        _check_csr_columns(op, indices, K)  # before narrowing to int32
    idx = indices.astype(np.int32, copy=False)
    scratch = _csr_scratch(M, K, nt)
    rc = _ext.lib.ta_csr_matmul_f32(level, M, K, N, nnz, _ptr("int64_t", ip), _ptr("int32_t", idx),
                                    _ptr("float", data), _ptr("float", X), _ptr("float", Y),
                                    _ptr("float", scratch), scratch.size, nt)
    if rc == _ext.lib.TA_ERR_INDEX:
        _check_csr_columns(op, indices, K)
    _check_rc(op, rc)
    return Y


_local = threading.local()
_SCRATCH_CAP = 1 << 23  # floats kept per Python thread between calls (32 MiB)


def _csr_scratch(R, K, threads):
    """Per-Python-thread float32 work space reused across CSR calls (fresh pages cost page
    faults); empty (the C code then allocates) if the call would need more than the cap."""
    need = int(_ext.lib.ta_csr_scratch_floats(R, K, threads))
    if need <= 0 or need > _SCRATCH_CAP:
        return np.empty(0, dtype=np.float32)
    buf = getattr(_local, "csr_scratch", None)
    if buf is None or buf.size < need:
        buf = np.empty(need, dtype=np.float32)
        _local.csr_scratch = buf
    return buf


def _check_csr_columns(op, indices, K):
    """Raise ValueError naming the first column index outside [0, K)."""
    if indices.size:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= K:
            bad = int(np.argmax((indices < 0) | (indices >= K)))
            raise ValueError(f"{op}: column indices must be in [0, K={K}), "
                             f"got indices[{bad}]={int(indices[bad])}")


# ----------------------------------------------------------------- int8 GEMM

class Int8Weights:
    """An int8 weight matrix B (K, N) prepared for repeated :func:`gemm_int8` calls.

    Holds a read-only copy of B (for the NumPy twin), its column sums (int64,
    for zero-point corrections), whether it contains -128, and the packed
    panels the C kernel reads, built once per layout on first use.
    Build it with :func:`prepare_int8`.
    """

    def __init__(self, B, _copy=True):
        _check_array("prepare_int8", "B", B, dtype=np.int8, ndim=2)
        if B.shape[0] > INT8_MAX_K:
            raise ValueError(f"prepare_int8: K={B.shape[0]} exceeds {INT8_MAX_K}, the largest K "
                             "for which int32 accumulation is exact (K * 128 * 128 < 2**31)")
        # A copy backed by immutable bytes: neither it nor a view of it can be made writable,
        # so the packed panels the C kernel caches always describe exactly ``B``.
        self._B = np.frombuffer(B.tobytes(), dtype=np.int8).reshape(B.shape) if _copy else B
        self._K, self._N = B.shape
        if _ext.lib is not None:
            self._has_min = bool(_ext.lib.ta_int8_has_min(_ptr("int8_t", self._B), self._B.size))
        else:
            self._has_min = bool(np.any(self._B == -128))
        self._colsum = None
        self._packed = {}

    @property
    def B(self):
        """(K, N) int8, read-only."""
        return self._B

    @property
    def K(self):
        return self._K

    @property
    def N(self):
        return self._N

    @property
    def has_min(self):
        """Whether B holds -128 (chooses the C layout)."""
        return self._has_min

    @property
    def shape(self):
        return (self.K, self.N)

    @property
    def colsum(self):
        """(N,) int64 column sums of B, computed on first use."""
        if self._colsum is None:
            self._colsum = self.B.sum(axis=0, dtype=np.int64)
        return self._colsum

    def _packed_for(self, level):
        """(layout, buffer) for the C kernel at SIMD `level`, packing on first use."""
        lib, ffi = _ext.lib, _ext.ffi
        layout = int(lib.ta_int8_choose_layout(level, int(self.has_min)))
        if layout not in self._packed:
            size = ffi.new("int64_t *")
            _check_rc("prepare_int8", lib.ta_int8_packed_size(layout, self.K, self.N, size))
            raw = np.empty(int(size[0]) + 64, dtype=np.uint8)  # 64-byte aligned: whole-line loads
            start = -raw.ctypes.data % 64
            buf = raw[start:start + int(size[0])]
            _check_rc("prepare_int8", lib.ta_int8_pack(layout, _ptr("int8_t", self.B), self.K,
                                                       self.N, _ptr("uint8_t", buf), buf.size))
            self._packed[layout] = buf
        return layout, self._packed[layout]

    def __repr__(self):
        return f"Int8Weights(K={self.K}, N={self.N}, has_min={self.has_min})"


def prepare_int8(B):
    """Prepare int8 weights B (K, N) for repeated :func:`gemm_int8` calls -> :class:`Int8Weights`.

    Raises TypeError unless B is an int8 ndarray, ValueError if it is not 2-D,
    not C-contiguous, or K > INT8_MAX_K.
    """
    return Int8Weights(B)


def gemm_int8(A, B, backend=None, out=None, threads=None):
    """C = A @ B exactly: A (M, K) int8, B (K, N) int8 or :class:`Int8Weights` -> (M, N) int32.

    The int32 accumulation is exact for K <= INT8_MAX_K = 131071 (since
    K * 128 * 128 < 2**31); larger K is refused with ValueError. Pass the
    result of :func:`prepare_int8` as B to reuse packed weights across calls.
    out: optional (M, N) int32 C-contiguous array to write C into.
    threads: None (``default_threads()``) or an int in [1, MAX_THREADS]; the C
    kernel splits column panels (or rows) over that many threads, and the result
    does not depend on it.
    Raises TypeError for wrong dtypes, ValueError for shapes/layout.
    """
    op = "gemm_int8"
    nthreads = _threads(op, threads)
    _check_array(op, "A", A, dtype=np.int8, ndim=2)
    if isinstance(B, Int8Weights):
        weights = B
    else:
        _check_array(op, "B", B, dtype=np.int8, ndim=2)
        weights = None
    K, N = B.shape
    if A.shape[1] != K:
        raise ValueError(f"{op}: inner dimensions differ: A is {A.shape}, B is {tuple(B.shape)}")
    if K > INT8_MAX_K:
        raise ValueError(f"{op}: K={K} exceeds {INT8_MAX_K}, the largest K for which int32 "
                         "accumulation is exact (K * 128 * 128 < 2**31); split K")
    level = _resolve_int8(op, backend)
    M = A.shape[0]
    C = _out_array(op, out, (M, N), np.int32, (A, weights.B if weights is not None else B))
    if level is None:
        C[...] = reference.gemm_int8(A, weights.B if weights is not None else B)
        return C
    if weights is None:
        weights = Int8Weights(B, _copy=False)
    _int8_c_call(op, level, nthreads, A, weights, None, None, None, -128, 127, False, 1, None, C)
    return C


def _check_scale(op, name, value):
    """value as a float; TypeError if not convertible, ValueError unless finite and > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} must be a positive float, got {type(value).__name__}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{op}: {name} must be a positive finite float, got {value}")
    return v


def gemm_int8_requant(A, B, a_scale, a_zero, b_scale, b_zero, out_scale, out_zero,
                      bias=None, relu=False, backend=None):
    """Quantized linear map with requantization: int8 A (M, K), B (K, N) -> int8 (M, N).

    Affine quantization, real = scale * (q - zero):
    A per tensor (a_scale float > 0, a_zero int in [-128, 127]); B per tensor or
    per output column (b_scale: float or (N,) floats > 0; b_zero: int or (N,)
    ints in [-128, 127]); bias: None or (N,) real-valued floats, added after
    dequantization; output per tensor (out_scale, out_zero).

    acc = sum_k (A - a_zero)(B - b_zero) is exact (int64, from the int32 GEMM); the
    bias is rounded (half to even) onto the accumulator grid a_scale * b_scale[j] and
    added; then out = clip(round(acc * M_j) + out_zero, -128, 127) with
    M_j = a_scale * b_scale[j] / out_scale, by :func:`reference.requantize` -- the
    library's one requantizer (integer multiplier and shift, round half to even) -- for
    every backend. With relu=True values below out_zero are raised to it.
    """
    op = "gemm_int8_requant"
    C = gemm_int8(A, B, backend=backend)
    N = C.shape[1]
    a_scale = _check_scale(op, "a_scale", a_scale)
    out_scale = _check_scale(op, "out_scale", out_scale)
    a_zero = _check_int(op, "a_zero", a_zero, -128, 127)
    out_zero = _check_int(op, "out_zero", out_zero, -128, 127)
    bs = np.asarray(b_scale, dtype=np.float64)
    if bs.ndim == 0:
        bs = np.full(N, float(bs))
    if bs.shape != (N,) or not np.all(np.isfinite(bs)) or np.any(bs <= 0):
        raise ValueError(f"{op}: b_scale must be a positive float or ({N},) positive floats, "
                         f"got shape {bs.shape}")
    bz = np.asarray(b_zero)
    if bz.dtype.kind not in "iu":
        raise TypeError(f"{op}: b_zero must be an int or an integer array, got dtype {bz.dtype}")
    bz = bz.astype(np.int64)
    if bz.ndim == 0:
        bz = np.full(N, int(bz), dtype=np.int64)
    if bz.shape != (N,) or np.any(bz < -128) or np.any(bz > 127):
        raise ValueError(f"{op}: b_zero must be an int or ({N},) ints in [-128, 127], "
                         f"got shape {bz.shape}")
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64)
        if bias.shape != (N,) or not np.all(np.isfinite(bias)):
            raise ValueError(f"{op}: bias must be None or ({N},) finite floats, got shape {bias.shape}")
    colsum = B.colsum if isinstance(B, Int8Weights) else B.sum(axis=0, dtype=np.int64)
    acc = reference.zero_point_accumulators(C, A, colsum, a_zero, bz)
    if bias is not None:
        b_q = np.rint(bias / (a_scale * bs))
        if np.any(np.abs(b_q) > _INT32_MAX):
            raise ValueError(f"{op}: bias / (a_scale * b_scale) must fit an int32 accumulator, "
                             f"got magnitudes up to {np.abs(b_q).max():.3g}")
        acc = acc + b_q.astype(np.int64)
    q = reference.requantize(acc, a_scale * bs / out_scale, -128 - out_zero, 127 - out_zero, bool(relu))
    return (q + out_zero).astype(np.int8)


# ----------------------------------------------------------------- fused int8 layer

_INT8_OUTS = ("int8", "int32", "float32")


def _per_channel_ints(op, name, value, M, lo, hi):
    """value (int or (M,) integer array) as an int or an int64 (M,) array, each in [lo, hi]."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be an int or an integer array, got bool")
    if isinstance(value, (int, np.integer)):
        if not lo <= int(value) <= hi:
            raise ValueError(f"{op}: {name} must lie in [{lo}, {hi}], got {int(value)}")
        return int(value)
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} must be an int or ({M},) integers, got dtype {arr.dtype}")
    if arr.ndim not in (0, 1) or (arr.ndim == 1 and arr.shape != (M,)):
        raise ValueError(f"{op}: {name} must be an int or ({M},) integers, got shape {arr.shape}")
    if arr.size:
        vmin, vmax = int(arr.min()), int(arr.max())
        if vmin < lo or vmax > hi:
            raise ValueError(f"{op}: {name} must lie in [{lo}, {hi}], got values from {vmin} to {vmax}")
    return arr if arr.ndim == 1 else int(arr)


_NO_VNNI = 256  # TA_INT8_NO_VNNI, OR-ed into the level: the AVX-512BW kernel even with VNNI


def _int8_vnni():
    """True if the C int8 kernel at the AVX-512 level uses VNNI (else AVX-512BW)."""
    return int(_ext.lib.ta_int8_choose_layout(2, 0)) == int(_ext.lib.TA_INT8_LAYOUT_K4)


def int8_c_paths():
    """C paths of the int8 kernels on this CPU: :func:`c_paths` plus ``"c-avx512bw"``
    (the AVX-512BW kernel, forced even where VNNI exists) when AVX-512 is usable."""
    paths = c_paths()
    if _ext.lib is not None and int(_ext.lib.ta_best_isa(_KERNEL_IDS["gemm_int8"])) >= 2:
        paths.append("c-avx512bw")
    return paths


def _resolve_int8(op, backend):
    """_resolve for the int8 kernels (errors name `op`); also takes ``"c-avx512bw"``."""
    if backend == "c-avx512bw":
        if "c-avx512bw" not in int8_c_paths():
            raise RuntimeError(f"{op}: backend='c-avx512bw' needs the C extension on a CPU with "
                               "AVX-512BW")
        return 2 | _NO_VNNI
    try:
        return _resolve("gemm_int8", backend)
    except (ValueError, RuntimeError) as exc:
        raise type(exc)(str(exc).replace("gemm_int8:", f"{op}:", 1)) from None


_OUT_KINDS = {"int8": (0, np.int8), "int32": (1, np.int32), "float32": (2, np.float32)}


def _int8_c_call(op, level, threads, x, weights, bias, mult, shift, lo, hi, relu, kind, scale, Y):
    """ta_int8_linear on checked arguments; Y (N, M) receives the result."""
    lib = _ext.lib
    null = _ext.ffi.NULL
    layout, buf = weights._packed_for(level)
    N, K = x.shape
    M = weights.N
    m_ptr = s_ptr = sc_ptr = null
    nq = nscale = 0
    keep = []  # arrays the pointers view, alive until the call returns
    if kind == 0 and np.ndim(mult) == 0 and np.ndim(shift) == 0:
        m_ptr, s_ptr, nq = _ext.ffi.new("int32_t[1]", [mult]), _ext.ffi.new("int32_t[1]", [shift]), 1
    elif kind == 0:  # per channel (a scalar one is broadcast)
        keep = [np.ascontiguousarray(v if np.ndim(v) else np.full(M, v), dtype=np.int32)
                for v in (mult, shift)]
        m_ptr, s_ptr, nq = _ptr("int32_t", keep[0]), _ptr("int32_t", keep[1]), M
    if kind == 2:
        keep = [np.ascontiguousarray(np.ravel(scale), dtype=np.float64)]
        sc_ptr, nscale = _ptr("double", keep[0]), keep[0].size
    ctype = {0: "int8_t", 1: "int32_t", 2: "float"}[kind]
    rc = lib.ta_int8_linear(
        level, threads, _ptr("int8_t", x), N, K, M, layout, _ptr("uint8_t", buf), buf.size,
        null if bias is None else _ptr("int32_t", bias), m_ptr, s_ptr, nq, sc_ptr, nscale,
        lo, hi, int(bool(relu)), kind, _ptr(ctype, Y))
    _check_rc(op, rc)


def _int8_weights(op, weights):
    """(Int8Weights, B) from an Int8Weights or a raw int8 (K, M) array (packed on the fly)."""
    if isinstance(weights, Int8Weights):
        return weights
    if not isinstance(weights, np.ndarray):
        raise TypeError(f"{op}: weights must be Int8Weights (see prepare_int8) or an int8 "
                        f"ndarray, got {type(weights).__name__}")
    _check_array(op, "weights", weights, dtype=np.int8, ndim=2)
    if weights.shape[0] > INT8_MAX_K:
        raise ValueError(f"{op}: K={weights.shape[0]} exceeds {INT8_MAX_K}, the largest K for "
                         "which int32 accumulation is exact (K * 128 * 128 < 2**31)")
    return Int8Weights(weights, _copy=False)


def int8_linear(x, weights, bias=None, multiplier=1, shift=0, lo=-128, hi=127, relu=False,
                out="int8", out_scale=None, threads=None, backend=None):
    """A quantized linear layer, y = requant(x @ B + bias), row-major in and out.

    x: (N, K) int8 C-contiguous activation codes; weights: :class:`Int8Weights`
    from ``prepare_int8(B)`` with B (K, M) int8 = W_codes.T (a raw int8 (K, M)
    array is packed on every call); bias: None or (M,) int32 on the accumulator
    grid. acc = x @ B + bias in an int32 accumulator (exact for a checked layer).

    out="int8" (default): ``round_half_to_even(acc * multiplier / 2**shift)``
    clipped to [max(lo, 0) if relu else lo, hi] -> (N, M) int8; multiplier int
    in [1, 2**31) and shift int in [0, 62], each a scalar or (M,) per output
    channel; -128 <= lo <= hi <= 127. Equal to ``quant.integer.requantize`` with
    ``(multiplier, shift) = quant.integer.multiplier(M_real)``.
    out="int32": acc (max(acc, 0) with relu) -> (N, M) int32.
    out="float32": float32(acc * out_scale) computed in float64, out_scale a
    positive float or (M,) positive floats, relu applied to acc first.

    threads: None (``default_threads()``) or an int in [1, MAX_THREADS]; the
    result does not depend on it. backend as for :func:`gemm_int8`.
    Raises TypeError / ValueError naming the argument on bad input.
    """
    op = "int8_linear"
    _check_array(op, "x", x, dtype=np.int8, ndim=2)
    w = _int8_weights(op, weights)
    K, M = w.shape
    N = x.shape[0]
    if x.shape[1] != K:
        raise ValueError(f"{op}: x has K={x.shape[1]} columns but the weights have K={K} rows "
                         f"(x {x.shape}, weights {w.shape})")
    if out not in _INT8_OUTS:
        raise ValueError(f"{op}: out must be one of {_INT8_OUTS}, got {out!r}")
    if bias is not None:
        _check_array(op, "bias", bias, dtype=np.int32, ndim=1)
        if bias.shape != (M,):
            raise ValueError(f"{op}: bias must have shape ({M},), got {bias.shape}")
    mult = _per_channel_ints(op, "multiplier", multiplier, M, 1, _INT32_MAX)
    shf = _per_channel_ints(op, "shift", shift, M, 0, 62)
    lo = _check_int(op, "lo", lo, -128, 127)
    hi = _check_int(op, "hi", hi, -128, 127)
    if lo > hi:
        raise ValueError(f"{op}: lo must be <= hi, got lo={lo}, hi={hi}")
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"{op}: relu must be a bool, got {type(relu).__name__}")
    scale = None
    if out == "float32":
        if out_scale is None:
            raise ValueError(f"{op}: out='float32' needs out_scale (a positive float or ({M},))")
        scale = np.asarray(out_scale, dtype=np.float64) if not isinstance(out_scale, str) else None
        if scale is None or scale.ndim not in (0, 1) or (scale.ndim == 1 and scale.shape != (M,)):
            raise ValueError(f"{op}: out_scale must be a positive float or ({M},) positive floats, "
                             f"got {out_scale!r}")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError(f"{op}: out_scale must be finite and > 0")
    elif out_scale is not None:
        raise ValueError(f"{op}: out_scale is only used with out='float32', got out={out!r}")
    nthreads = _threads(op, threads)
    level = _resolve_int8(op, backend)
    if level is None:
        return reference.int8_linear(x, w.B, bias, mult, shf, lo, hi, bool(relu), out, scale)
    kind, dtype = _OUT_KINDS[out]
    Y = np.empty((N, M), dtype=dtype)
    _int8_c_call(op, level, nthreads, x, w, bias, mult, shf, lo, hi, relu, kind, scale, Y)
    return Y


def quantize_int8(x, scale, lo=-128, hi=127, threads=None, backend=None):
    """int8 codes of a float32 activation: clip(round_half_to_even(x / scale), lo, hi).

    x: float32 C-contiguous ndarray of any shape (typically (N, K)); scale: a
    positive finite float (per tensor); -128 <= lo <= hi <= 127. The division is
    done in float64, so the codes equal ``quant.formats.Affine(8, scale).quantize(x)``
    bit for bit (that quantizer clips to [-127, 127]: pass lo=-127). +-inf
    saturates to hi / lo; NaN raises ValueError. Returns int8 of x's shape.
    """
    op = "quantize_int8"
    _check_array(op, "x", x, dtype=np.float32)
    s = _check_scale(op, "scale", scale)
    lo = _check_int(op, "lo", lo, -128, 127)
    hi = _check_int(op, "hi", hi, -128, 127)
    if lo > hi:
        raise ValueError(f"{op}: lo must be <= hi, got lo={lo}, hi={hi}")
    nthreads = _threads(op, threads)
    level = _resolve_int8(op, backend)
    nan_message = f"{op}: x contains NaN, which has no int8 code"
    if level is None:
        if np.isnan(x).any():
            raise ValueError(nan_message)
        return reference.quantize_int8(x, s, lo, hi)
    out = np.empty(x.shape, dtype=np.int8)
    rc = _ext.lib.ta_quantize_int8(level & ~_NO_VNNI, nthreads, _ptr("float", x), x.size, s, lo,
                                   hi, _ptr("int8_t", out))
    if rc == _ext.lib.TA_ERR_VALUE:
        raise ValueError(nan_message)
    _check_rc(op, rc)
    return out


# ----------------------------------------------------------------- XNOR / popcount

def _check_bits(op, name, bits, K, ndim):
    """Raise unless bits is C-contiguous uint64, ceil(K/64) words per row, zero padding."""
    _check_array(op, name, bits, dtype=np.uint64, ndim=ndim)
    W = (K + 63) // 64
    if bits.shape[-1] != W:
        raise ValueError(f"{op}: {name} must have ceil(K/64) = {W} words per row for K={K}, "
                         f"got shape {bits.shape}")
    tail = K % 64
    if tail and bits.size:
        last = bits[..., W - 1] >> np.uint64(tail)
        if np.any(last != 0):
            row = int(np.argmax(np.ravel(last) != 0))
            raise ValueError(f"{op}: {name} row {row} has nonzero padding bits beyond K={K}; "
                             "bits k >= K must be 0 (use pack_bits)")


def xnor_gemm(A_bits, B_bits, K, backend=None, out=None, threads=None):
    """+-1 matrix product on packed bits: C[i, j] = K - 2 * popcount(A_i XOR B_j).

    A_bits: (M, W) uint64 (rows of A), B_bits: (N, W) uint64 (rows of B^T, i.e.
    columns of B), W = ceil(K/64), bits beyond K zero (as :func:`pack_bits`
    makes them) -> (M, N) int32, equal to
    ``unpack_bits(A_bits, K) @ unpack_bits(B_bits, K).T`` exactly.
    K: int in [0, 2**31 - 1]. out: optional (M, N) int32 C-contiguous array
    to write C into. threads: None (``default_threads()``) or int in
    [1, MAX_THREADS]; the result is exact whatever the count.
    Raises TypeError/ValueError on bad input.
    """
    op = "xnor_gemm"
    K = _check_int(op, "K", K, 0, _INT32_MAX)
    _check_bits(op, "A_bits", A_bits, K, 2)
    _check_bits(op, "B_bits", B_bits, K, 2)
    nt = _threads(op, threads)
    level = _resolve(op, backend)
    M, N, W = A_bits.shape[0], B_bits.shape[0], (K + 63) // 64
    C = _out_array(op, out, (M, N), np.int32, (A_bits, B_bits))
    if level is None:
        C[...] = reference.xnor_gemm(A_bits, B_bits, K)
        return C
    rc = _ext.lib.ta_xnor_gemm(level, _ptr("uint64_t", A_bits), M, _ptr("uint64_t", B_bits), N,
                               W, K, _ptr("int32_t", C), nt)
    _check_rc(op, rc)
    return C


def pack_bits(X):
    """Signs of X as bits: (M, K) or (K,) real/int ndarray -> uint64 (M, ceil(K/64)) or (ceil(K/64),).

    Bit k % 64 of word k // 64 is 1 where X >= 0 (so sign(0) = +1) and 0 where
    X < 0; padding bits are 0. Raises TypeError for non-numeric dtypes and
    ValueError for NaN or a wrong number of dimensions.
    """
    op = "pack_bits"
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{op}: X must be a numpy.ndarray, got {type(X).__name__}")
    if X.dtype.kind not in "iuf":
        raise TypeError(f"{op}: X must have an integer or real floating dtype, got {X.dtype}")
    if X.ndim not in (1, 2):
        raise ValueError(f"{op}: X must be 1-D or 2-D, got shape {X.shape}")
    if X.dtype.kind == "f" and np.isnan(X).any():
        raise ValueError(f"{op}: X contains NaN, whose sign is undefined")
    return reference.pack_bits(X)


def unpack_bits(bits, K):
    """Inverse of :func:`pack_bits`: uint64 (M, W) or (W,) -> float32 (M, K) or (K,) of +1/-1.

    W must be ceil(K/64) and bits beyond K must be 0. Raises TypeError for a
    non-uint64 array or non-int K, ValueError for a wrong width, nonzero
    padding bits or K outside [0, 2**31 - 1].
    """
    op = "unpack_bits"
    K = _check_int(op, "K", K, 0, _INT32_MAX)
    _check_bits(op, "bits", bits, K, (1, 2))
    return reference.unpack_bits(bits, K)


# ----------------------------------------------------------------- fused layers

def _check_csr_weights(op, indptr, indices, data, K, shape):
    """Validate W (M, K) in CSR for a fused layer -> (M, indptr as int64).

    Same rules as :func:`csr_matmul`: indptr (M+1,) starting at 0, non-decreasing,
    ending at nnz; indices (nnz,) integer; data (nnz,) float32. The column range of
    indices is checked by the caller (in C for int32 indices).
    """
    _check_array(op, "indptr", indptr, kind="int", ndim=1)
    _check_array(op, "indices", indices, kind="int", ndim=1)
    _check_array(op, "data", data, dtype=np.float32, ndim=1)
    if indptr.size == 0:
        raise ValueError(f"{op}: indptr must have M+1 >= 1 entries, got 0")
    M, nnz = indptr.size - 1, indices.size
    if data.size != nnz:
        raise ValueError(f"{op}: indices and data must have the same length (nnz), "
                         f"got {nnz} and {data.size}")
    if shape is not None and tuple(shape) != (M, K):
        raise ValueError(f"{op}: shape {tuple(shape)} does not match indptr (M={M}) and "
                         f"x (K={K} columns); expected ({M}, {K})")
    if indptr.dtype.kind == "u" and int(indptr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{op}: indptr values exceed int64")
    ip = indptr.astype(np.int64, copy=False)
    if ip[0] != 0 or ip[-1] != nnz:
        raise ValueError(f"{op}: indptr must start at 0 and end at nnz={nnz}, "
                         f"got {int(ip[0])} ... {int(ip[-1])}")
    if M and bool((ip[1:] < ip[:-1]).any()):
        row = int(np.argmax(ip[1:] < ip[:-1]))
        raise ValueError(f"{op}: indptr must be non-decreasing, but indptr[{row + 1}]="
                         f"{int(ip[row + 1])} < indptr[{row}]={int(ip[row])}")
    return M, ip


def csr_linear(x, indptr, indices, data, bias=None, relu=False, shape=None, threads=None,
               backend=None):
    """Fused pruned layer: y = x @ W.T + bias, ReLU if asked, W sparse in CSR.

    x: (N, K) float32 C-contiguous row-major activations (one sample per row);
    W: (M, K) as indptr (M+1,) integer (starts at 0, non-decreasing, ends at nnz),
    indices (nnz,) integer columns in [0, K) (any order, duplicates add up), data
    (nnz,) float32 -- the layout of ``sparse.CSR`` of a ``Linear.weight``;
    bias: (M,) float32 or None; relu: bool; shape: optional (M, K), checked.
    Returns y: (N, M) float32. Each y[n, j] is summed by one thread in the order of
    row j's stored entries, then the bias is added and ReLU applied (max(y, 0)),
    so the result is the same bits for every ``threads``; it equals
    ``reference.csr_linear`` up to float32 rounding. NaN/inf follow IEEE over the
    stored entries (as in :func:`csr_matmul`).
    threads: None (``default_threads()``) or int in [1, MAX_THREADS].
    Raises TypeError for wrong types/dtypes, ValueError for bad shapes, layout,
    index ranges or threads, RuntimeError if ``backend`` asks for C that is absent.
    """
    op = "csr_linear"
    _check_array(op, "x", x, dtype=np.float32, ndim=2)
    N, K = x.shape
    M, ip = _check_csr_weights(op, indptr, indices, data, K, shape)
    if bias is not None:
        _check_array(op, "bias", bias, dtype=np.float32, ndim=1)
        if bias.shape != (M,):
            raise ValueError(f"{op}: bias must have shape ({M},) (one per output), got {bias.shape}")
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"{op}: relu must be a bool, got {type(relu).__name__}")
    nt = _threads(op, threads)
    level = _resolve(op, backend)
    if level is None:
        _check_csr_columns(op, indices, K)
        return reference.csr_linear(x, ip, indices, data, bias, bool(relu))
    if K > _INT32_MAX:
        raise ValueError(f"{op}: K={K} exceeds the C kernel limit {_INT32_MAX}; use backend='numpy'")
    if indices.dtype.itemsize > 4 or indices.dtype == np.uint32:
        _check_csr_columns(op, indices, K)  # before narrowing to int32; int32 is checked in C
    idx = indices.astype(np.int32, copy=False)
    y = np.empty((N, M), dtype=np.float32)
    scratch = _csr_scratch(M, K, nt)
    rc = _ext.lib.ta_csr_linear_f32(level, N, K, M, idx.size, _ptr("int64_t", ip), _ptr("int32_t", idx),
                                    _ptr("float", data), _ptr("float", x),
                                    _ext.ffi.NULL if bias is None else _ptr("float", bias), int(bool(relu)),
                                    _ptr("float", y), _ptr("float", scratch), scratch.size, nt)
    if rc == _ext.lib.TA_ERR_INDEX:
        _check_csr_columns(op, indices, K)
    _check_rc(op, rc)
    return y


def _check_thresholds(op, thresholds, flip, M, K):
    """thresholds (M,) integer -> int32 clipped to [-K-1, K+1] (same outcome for every
    dot in [-K, K]); flip None or (M,) bool -> uint8 (M,)."""
    _check_array(op, "thresholds", thresholds, kind="int", ndim=1)
    if thresholds.shape != (M,):
        raise ValueError(f"{op}: thresholds must have shape ({M},) (one per output channel), "
                         f"got {thresholds.shape}")
    if thresholds.dtype.kind == "u":
        t = np.minimum(thresholds, np.uint64(K + 1)).astype(np.int64)
    else:
        t = thresholds.astype(np.int64)
    t = np.clip(t, -K - 1, K + 1).astype(np.int32)
    if flip is None:
        return t, np.zeros(M, dtype=np.uint8)
    _check_array(op, "flip", flip, dtype=np.bool_, ndim=1)
    if flip.shape != (M,):
        raise ValueError(f"{op}: flip must have shape ({M},) (one per output channel), got {flip.shape}")
    return t, flip.view(np.uint8)


def binary_linear(x_bits, w_bits, K, thresholds=None, flip=None, threads=None, backend=None):
    """Fused binary layer on packed +-1 bits: dot products, or thresholds to packed bits.

    Bit convention (:func:`pack_bits`): bit k % 64 of word k // 64 of a row is 1 for
    +1 (a value >= 0, so sign(0) = +1) and 0 for -1; padding bits beyond K are 0.
    x_bits: (N, W) uint64 packed activations (one sample per row), w_bits: (M, W)
    uint64 packed weights (one row per output channel), W = ceil(K/64); K: int.
    dot[n, j] = K - 2 * popcount(x_bits[n] XOR w_bits[j]), the +-1 dot product.

    thresholds None: returns dot, (N, M) int32.
    thresholds (M,) integer (+ flip (M,) bool or None): returns the packed signs
    (N, ceil(M/64)) uint64, bit j of row n = 1 (+1) iff dot >= thresholds[j]
    (flip[j] False) or dot <= thresholds[j] (flip[j] True, a negative batch-norm
    gamma); padding bits beyond M are 0, so the result is the x_bits of the next
    binary layer. Thresholds of any integer dtype are accepted; values beyond
    [-K-1, K+1] decide the same way as the nearest end of that range.
    From ``bnn.packing.fold_threshold``'s (s, t) (bit = s * dot >= t):
    ``thresholds = s * t, flip = s < 0``.
    threads: None (``default_threads()``) or int in [1, MAX_THREADS]; the result
    does not depend on it. Raises TypeError/ValueError on bad input.
    """
    op = "binary_linear"
    K = _check_int(op, "K", K, 0, _INT32_MAX)
    _check_bits(op, "x_bits", x_bits, K, 2)
    _check_bits(op, "w_bits", w_bits, K, 2)
    N, M = x_bits.shape[0], w_bits.shape[0]
    if thresholds is None:
        if flip is not None:
            raise ValueError(f"{op}: flip given without thresholds")
    else:
        t, f = _check_thresholds(op, thresholds, flip, M, K)
    nt = _threads(op, threads)
    level = _resolve(op, backend)
    if level is None:
        if thresholds is None:
            return reference.binary_linear(x_bits, w_bits, K)
        return reference.binary_linear(x_bits, w_bits, K, t, f.view(np.bool_))
    if thresholds is None:
        dot = np.empty((N, M), dtype=np.int32)
        rc = _ext.lib.ta_xnor_gemm(level, _ptr("uint64_t", x_bits), N, _ptr("uint64_t", w_bits), M,
                                   (K + 63) // 64, K, _ptr("int32_t", dot), nt)
        _check_rc(op, rc)
        return dot
    out = np.empty((N, (M + 63) // 64), dtype=np.uint64)
    rc = _ext.lib.ta_binary_threshold(level, _ptr("uint64_t", x_bits), N, _ptr("uint64_t", w_bits),
                                      M, (K + 63) // 64, K, _ptr("int32_t", t), _ptr("uint8_t", f),
                                      _ptr("uint64_t", out), out.shape[1], nt)
    _check_rc(op, rc)
    return out


from .patches import im2col  # noqa: E402  (uses the helpers above)

__all__ += ["im2col"]
