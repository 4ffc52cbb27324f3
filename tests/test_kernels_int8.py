"""The fused int8 entry points (int8_linear, quantize_int8) and the threaded int8 GEMM.

The NumPy twins are pinned by hand and against the project's own quantizer and
requantizer (quant.formats.Affine, quant.integer); every backend is held to the
twins over drawn shapes, and every thread count gives the same bits.
"""
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinyapprox import kernels
from tinyapprox.kernels import _ext, reference
from tinyapprox.quant import integer
from tinyapprox.quant.formats import Affine

pytestmark = pytest.mark.kernels

BACKENDS = kernels.backends() + [p for p in kernels.int8_c_paths() if p not in kernels.backends()]
needs_c = pytest.mark.skipif(_ext.lib is None, reason="C extension not loaded")

INT8_EXTREMES = st.sampled_from([-128, -127, -1, 0, 1, 126, 127]) | st.integers(-128, 127)


# ----------------------------------------------------------------- strategies

@st.composite
def linear_problems(draw):
    """x (N, K), B (K, M) int8 with extremes, and the output-stage arguments of int8_linear."""
    N = draw(st.integers(0, 13))
    K = draw(st.sampled_from([0, 1, 3, 4, 5, 8, 17, 64, 67, 130]))
    M = draw(st.integers(0, 70) | st.sampled_from([96, 112, 130]))
    x = draw(hnp.arrays(np.int8, (N, K), elements=INT8_EXTREMES))
    B = draw(hnp.arrays(np.int8, (K, M), elements=INT8_EXTREMES))
    if draw(st.booleans()):
        B = np.clip(B, -127, 127).astype(np.int8)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bias = None
    if draw(st.booleans()):
        bound = draw(st.sampled_from([10, 100000, 2**31 - 1]))
        bias = rng.integers(-bound, bound, M, endpoint=True).astype(np.int32)
    per_channel = draw(st.booleans())
    n = M if per_channel else None
    multiplier = rng.integers(1, 2**31, n) if per_channel else draw(
        st.sampled_from([1, 2**30, 2**31 - 1]) | st.integers(1, 2**31 - 1))
    shift = rng.integers(0, 63, n) if per_channel and draw(st.booleans()) else draw(
        st.integers(0, 62) | st.sampled_from([30, 37, 40]))
    lo = draw(st.integers(-128, 127))
    hi = draw(st.integers(lo, 127))
    relu = draw(st.booleans())
    return x, B, bias, multiplier, shift, lo, hi, relu


# ----------------------------------------------------------------- the twins by hand

def test_reference_round_shift_by_hand():
    v = np.array([5, 6, 7, 10, -5, -6, -7, -10, 12, 0], dtype=np.int64)
    # v / 4 = 1.25 1.5 1.75 2.5 -1.25 -1.5 -1.75 -2.5 3 0 ; ties go to even
    np.testing.assert_array_equal(reference.round_shift(v, 2), [1, 2, 2, 2, -1, -2, -2, -2, 3, 0])
    np.testing.assert_array_equal(reference.round_shift(v, 0), v)
    assert reference.round_shift(np.int64(2**62), 62) == 1
    assert reference.round_shift(np.int64(3 * 2**60), 61) == 2   # 1.5 -> 2
    assert reference.round_shift(np.int64(-(2**60)), 61) == 0    # -0.5 -> 0


def test_reference_int8_linear_by_hand():
    x = np.array([[1, 2], [-3, 4]], dtype=np.int8)
    B = np.array([[1, -1, 2], [1, 1, 2]], dtype=np.int8)        # x @ B = [[3, 1, 6], [1, 7, 2]]
    bias = np.array([0, -10, 1], dtype=np.int32)                 # acc = [[3, -9, 7], [1, -3, 3]]
    acc = reference.int8_linear(x, B, bias, out="int32")
    np.testing.assert_array_equal(acc, [[3, -9, 7], [1, -3, 3]])
    np.testing.assert_array_equal(reference.int8_linear(x, B, bias, out="int32", relu=True),
                                  [[3, 0, 7], [1, 0, 3]])
    # times 1/2: 1.5 -> 2, -4.5 -> -4, 3.5 -> 4, 0.5 -> 0, -1.5 -> -2, 1.5 -> 2
    np.testing.assert_array_equal(reference.int8_linear(x, B, bias, multiplier=1, shift=1),
                                  [[2, -4, 4], [0, -2, 2]])
    # per channel: multipliers 3, 1, 1 and shifts 0, 0, 2; clip to [-3, 5]
    np.testing.assert_array_equal(
        reference.int8_linear(x, B, bias, multiplier=np.array([3, 1, 1]), shift=np.array([0, 0, 2]),
                              lo=-3, hi=5),
        [[5, -3, 2], [3, -3, 1]])
    np.testing.assert_array_equal(
        reference.int8_linear(x, B, bias, out="float32", out_scale=np.array([0.5, 1.0, 2.0])),
        np.array([[1.5, -9.0, 14.0], [0.5, -3.0, 6.0]], dtype=np.float32))


def test_reference_int32_accumulator_wraps_like_an_adder():
    x = np.full((1, 2), 127, dtype=np.int8)
    B = np.full((2, 1), 127, dtype=np.int8)                      # x @ B = 32258
    bias = np.array([2**31 - 1], dtype=np.int32)
    got = reference.int8_linear(x, B, bias, out="int32")
    assert got[0, 0] == int(integer.wrap(32258 + 2**31 - 1, 32)) == -(2**31) + 32257


def test_reference_quantize_int8_by_hand():
    x = np.array([0.25, 0.75, -0.25, -0.75, 100.0, -100.0, np.inf, -np.inf, 0.05], dtype=np.float32)
    np.testing.assert_array_equal(reference.quantize_int8(x, 0.5),
                                  [0, 2, 0, -2, 127, -128, 127, -128, 0])
    np.testing.assert_array_equal(reference.quantize_int8(x, 0.5, lo=-127, hi=3),
                                  [0, 2, 0, -2, 3, -127, 3, -127, 0])


# ----------------------------------------------------------------- the twins equal the project's quantizer

@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=40),
       st.floats(2.0**-31, 2.0**29), st.booleans(), st.integers(-128, 0), st.integers(0, 127))
def test_twin_requant_equals_quant_integer_requantize(accs, M_real, relu, lo, hi):
    acc = np.array(accs, dtype=np.int64)[None, :]
    m0, sh = integer.multiplier(M_real)
    expected = integer.requantize(acc, M_real, lo, hi, relu)
    got = reference.int8_epilogue(acc.astype(np.int32), None, int(m0), int(sh), lo, hi, relu)
    np.testing.assert_array_equal(got, expected)


@given(hnp.arrays(np.int64, st.integers(1, 30), elements=st.integers(-(2**61), 2**61 - 1)),
       st.integers(0, 62))
def test_twin_round_shift_equals_quant_integer(v, s):
    np.testing.assert_array_equal(reference.round_shift(v, s), integer.round_shift(v, s))


@given(st.integers(1, 12), st.integers(1, 12), st.floats(1e-3, 10.0), st.integers(0, 2**32 - 1))
def test_twin_requant_per_channel_equals_quant_integer(N, M, base, seed):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-(2**31), 2**31, (N, M)).astype(np.int64)
    M_real = base * rng.uniform(1e-6, 1.0, M)
    m0, sh = integer.multiplier(M_real)
    expected = integer.requantize(acc, M_real, -128, 127, False, channel_axis=1)
    got = reference.int8_epilogue(acc.astype(np.int32), None, m0, sh, -128, 127, False)
    np.testing.assert_array_equal(got, expected)


@given(st.integers(0, 6), st.integers(0, 40), st.floats(1e-4, 1e3), st.integers(0, 2**32 - 1),
       st.booleans())
def test_twin_quantize_equals_affine(N, K, scale, seed, ties):
    rng = np.random.default_rng(seed)
    if ties:  # exact halves of the grid, where ties-to-even decides
        scale = 2.0 ** int(np.round(np.log2(scale)))
        x = ((rng.integers(-300, 300, (N, K)) + 0.5) * scale).astype(np.float32)
    else:
        x = (rng.standard_normal((N, K)) * scale * rng.choice([1, 50, 500])).astype(np.float32)
    expected = Affine(8, scale).quantize(x)
    np.testing.assert_array_equal(reference.quantize_int8(x, scale, lo=-127), expected)
    np.testing.assert_array_equal(kernels.quantize_int8(x, scale, lo=-127), expected)


# ----------------------------------------------------------------- every backend vs the twins

@pytest.mark.parametrize("backend", BACKENDS)
@settings(deadline=None)
@given(linear_problems(), st.sampled_from(["int8", "int32", "float32"]), st.booleans())
def test_int8_linear_matches_reference(backend, problem, out, prepared):
    x, B, bias, multiplier, shift, lo, hi, relu = problem
    M = B.shape[1]
    scale = None
    if out == "float32":
        scale = np.linspace(0.001, 3.0, M) if np.ndim(multiplier) else 0.037
    weights = kernels.prepare_int8(B) if prepared else B
    kw = dict(bias=bias, multiplier=multiplier, shift=shift, lo=lo, hi=hi, relu=relu, out=out,
              out_scale=scale)
    got = kernels.int8_linear(x, weights, backend=backend, threads=2, **kw)
    expected = reference.int8_linear(x, B, **kw)
    assert got.dtype == expected.dtype and got.shape == (x.shape[0], M)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=70),
                  elements=st.floats(-1e6, 1e6, width=32) | st.sampled_from([0.5, -1.5, np.inf, -np.inf])),
       st.floats(1e-3, 100.0) | st.sampled_from([2.0**-7, 0.5, 1.0, 4.0, 2.0**40]),
       st.integers(-128, 127), st.integers(0, 255))
def test_quantize_int8_matches_reference(backend, x, scale, lo, width):
    hi = min(127, lo + width)
    got = kernels.quantize_int8(x, scale, lo, hi, threads=2, backend=backend)
    assert got.dtype == np.int8 and got.shape == x.shape
    np.testing.assert_array_equal(got, reference.quantize_int8(x, scale, lo, hi))


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_linear_equals_gemm_then_project_requantizer(backend):
    # what the integer model computes: gemm_int8, + bias codes, wrap to 32 bits, requantize
    rng = np.random.default_rng(5)
    x = rng.integers(-127, 128, (37, 300), dtype=np.int8)
    B = rng.integers(-127, 128, (300, 50), dtype=np.int8)
    bias = rng.integers(-50000, 50000, 50).astype(np.int32)
    M_real = rng.uniform(1e-5, 1e-3, 50)
    m0, sh = integer.multiplier(M_real)
    acc = integer.wrap(kernels.gemm_int8(x, B).astype(np.int64) + bias, 32)
    for relu in (False, True):
        expected = integer.requantize(acc, M_real, -127, 127, relu)
        got = kernels.int8_linear(x, kernels.prepare_int8(B), bias, m0, sh, lo=-127, hi=127,
                                  relu=relu, backend=backend)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("out", ["int8", "int32", "float32"])
def test_int8_results_do_not_depend_on_threads(backend, out):
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, (70, 520), dtype=np.int8)
    B = rng.integers(-128, 128, (520, 200), dtype=np.int8)
    w = kernels.prepare_int8(B)
    kw = dict(bias=rng.integers(-1000, 1000, 200).astype(np.int32), multiplier=rng.integers(1, 2**31, 200),
              shift=40, relu=True, out=out, out_scale=0.01 if out == "float32" else None)
    runs = [kernels.int8_linear(x, w, threads=t, backend=backend, **kw) for t in (1, 2, 3)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r, runs[0])
    gemms = [kernels.gemm_int8(x, w, threads=t, backend=backend) for t in (1, 2, 3)]
    for g in gemms:
        np.testing.assert_array_equal(g, x.astype(np.int64) @ B)
    xf = rng.standard_normal((70, 520)).astype(np.float32)
    codes = [kernels.quantize_int8(xf, 0.01, threads=t, backend=backend) for t in (1, 2, 3)]
    for c in codes[1:]:
        np.testing.assert_array_equal(c, codes[0])


# ----------------------------------------------------------------- bad input

@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_linear_rejects_bad_input(backend):
    x = np.zeros((2, 3), np.int8)
    w = kernels.prepare_int8(np.zeros((3, 4), np.int8))
    cases = [
        (TypeError, "x must have dtype int8", dict(x=x.astype(np.int16))),
        (ValueError, "x must be 2-D", dict(x=x[0])),
        (ValueError, "x must be C-contiguous", dict(x=np.zeros((3, 2), np.int8).T)),
        (ValueError, "K=4 columns", dict(x=np.zeros((2, 4), np.int8))),
        (TypeError, "weights must be Int8Weights", dict(weights=[[1]])),
        (TypeError, "weights must have dtype int8", dict(weights=np.zeros((3, 4), np.int16))),
        (TypeError, "bias must have dtype int32", dict(bias=np.zeros(4, np.int64))),
        (ValueError, r"bias must have shape \(4,\)", dict(bias=np.zeros(5, np.int32))),
        (ValueError, r"multiplier must lie in \[1, 2147483647\]", dict(multiplier=0)),
        (ValueError, "multiplier must lie in", dict(multiplier=2**31)),
        (ValueError, r"multiplier must be an int or \(4,\)", dict(multiplier=np.ones(3, int))),
        (TypeError, "multiplier must be an int", dict(multiplier=1.5)),
        (TypeError, "multiplier must be an int", dict(multiplier=True)),
        (ValueError, r"shift must lie in \[0, 62\]", dict(shift=63)),
        (ValueError, "shift must lie in", dict(shift=np.array([0, 1, -1, 2]))),
        (ValueError, r"lo must be in \[-128, 127\]", dict(lo=-129)),
        (ValueError, r"hi must be in \[-128, 127\]", dict(hi=128)),
        (ValueError, "lo must be <= hi", dict(lo=5, hi=4)),
        (TypeError, "relu must be a bool", dict(relu=1)),
        (ValueError, "out must be one of", dict(out="int16")),
        (ValueError, "needs out_scale", dict(out="float32")),
        (ValueError, "out_scale must be finite and > 0", dict(out="float32", out_scale=-1.0)),
        (ValueError, r"out_scale must be a positive float or \(4,\)", dict(out="float32", out_scale=np.ones(3))),
        (ValueError, "out_scale is only used", dict(out_scale=0.5)),
        (ValueError, r"threads must be in \[1, 64\]", dict(threads=0)),
        (ValueError, "threads must be in", dict(threads=65)),
        (TypeError, "threads must be an int", dict(threads=2.0)),
        (ValueError, "unknown backend", dict(backend="gpu")),
    ]
    for exc, message, change in cases:
        args = {"x": x, "weights": w, "backend": backend, **change}
        with pytest.raises(exc, match="int8_linear: .*" + message):
            kernels.int8_linear(**args)
    big = kernels.INT8_MAX_K + 1
    with pytest.raises(ValueError, match="131071"):
        kernels.int8_linear(np.zeros((1, big), np.int8), np.zeros((big, 1), np.int8), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantize_int8_rejects_bad_input(backend):
    x = np.zeros((2, 3), np.float32)
    cases = [
        (TypeError, "x must have dtype float32", (x.astype(np.float64), 0.1), {}),
        (TypeError, "x must be a numpy.ndarray", ([[0.0]], 0.1), {}),
        (ValueError, "x must be C-contiguous", (np.zeros((3, 2), np.float32).T, 0.1), {}),
        (ValueError, "scale must be a positive finite float", (x, 0.0), {}),
        (ValueError, "scale must be a positive finite float", (x, float("inf")), {}),
        (TypeError, "scale must be a positive float", (x, "big"), {}),
        (ValueError, "lo must be <= hi", (x, 0.1), dict(lo=1, hi=0)),
        (ValueError, r"hi must be in \[-128, 127\]", (x, 0.1), dict(hi=300)),
        (ValueError, "threads must be in", (x, 0.1), dict(threads=-1)),
    ]
    for exc, message, args, kw in cases:
        with pytest.raises(exc, match="quantize_int8: .*" + message):
            kernels.quantize_int8(*args, backend=backend, **kw)
    bad = np.ones((3, 40), np.float32)
    bad[2, 33] = np.nan
    with pytest.raises(ValueError, match="quantize_int8: x contains NaN"):
        kernels.quantize_int8(bad, 0.1, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gemm_int8_rejects_bad_threads(backend):
    A = np.zeros((2, 3), np.int8)
    with pytest.raises(ValueError, match=r"gemm_int8: threads must be in \[1, 64\]"):
        kernels.gemm_int8(A, np.zeros((3, 4), np.int8), threads=0, backend=backend)
    with pytest.raises(TypeError, match="gemm_int8: threads must be an int"):
        kernels.gemm_int8(A, np.zeros((3, 4), np.int8), threads="2", backend=backend)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
@pytest.mark.parametrize("shape", [(300, 1500, 117), (3, 2000, 500), (256, 2048, 40), (17, 4, 49)])
def test_int8_blocks_tiles_and_thread_splits(backend, shape):
    # (300, 1500, 117): two row blocks of packed A, three k blocks, 48/32/16-wide and
    # ragged column tiles, threads share row blocks; (3, 2000, 500): one row tile, threads
    # split the columns; (256, 2048, 40): one column tile, threads split the rows finer
    M, K, N = shape
    rng = np.random.default_rng(M + K + N)
    x = rng.integers(-128, 128, (M, K), dtype=np.int8)
    B = rng.integers(-128, 128, (K, N), dtype=np.int8)
    B[0, 0] = -128  # the layouts for weights holding -128
    w = kernels.prepare_int8(B)
    exact = x.astype(np.int64) @ B
    bias = rng.integers(-(2**20), 2**20, N).astype(np.int32)
    m, s = rng.integers(2**30, 2**31, N), rng.integers(30, 50, N)
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(kernels.gemm_int8(x, w, threads=threads, backend=backend), exact)
        got = kernels.int8_linear(x, w, bias, m, s, relu=True, threads=threads, backend=backend)
        np.testing.assert_array_equal(got, reference.int8_epilogue(exact.astype(np.int32), bias, m, s,
                                                                   relu=True))


# ----------------------------------------------------------------- the C boundary

def _c_linear_args(lib, ffi, M=2, K=3, N=4):
    """Valid arguments of ta_int8_linear (int8 output) and the arrays they point into."""
    B = np.ones((K, N), np.int8)
    w = kernels.prepare_int8(B)
    layout, buf = w._packed_for(-1)
    keep = dict(A=np.ones((M, K), np.int8), buf=buf, m=np.array([1], np.int32),
                s=np.array([0], np.int32), sc=np.array([1.0]), Y=np.zeros((M, N), np.int32))
    args = dict(isa=-1, threads=1, A=ffi.from_buffer("int8_t[]", keep["A"]), M=M, K=K, N=N,
                layout=layout, Bp=ffi.from_buffer("uint8_t[]", buf), nbytes=buf.size, bias=ffi.NULL,
                mult=ffi.from_buffer("int32_t[]", keep["m"]), shift=ffi.from_buffer("int32_t[]", keep["s"]),
                nq=1, scale=ffi.from_buffer("double[]", keep["sc"]), nscale=1, lo=-128, hi=127, relu=0,
                kind=lib.TA_INT8_OUT_INT8, Y=ffi.from_buffer("int32_t[]", keep["Y"]))
    return args, keep


@needs_c
def test_c_int8_linear_refuses_bad_arguments():
    lib, ffi = _ext.lib, _ext.ffi
    args, keep = _c_linear_args(lib, ffi)

    def call(**change):
        return lib.ta_int8_linear(*{**args, **change}.values())

    assert call() == lib.TA_OK and np.all(keep["Y"].view(np.int8).ravel()[:8] == 3)  # 2 x 4 int8
    m_bad = ffi.from_buffer("int32_t[]", np.array([0], np.int32))
    s_bad = ffi.from_buffer("int32_t[]", np.array([63], np.int32))
    nan = ffi.from_buffer("double[]", np.array([np.nan]))
    zero = ffi.from_buffer("double[]", np.array([0.0]))
    for change, code in [
        (dict(threads=0), lib.TA_ERR_THREADS), (dict(threads=lib.TA_MAX_THREADS + 1), lib.TA_ERR_THREADS),
        (dict(kind=7), lib.TA_ERR_VALUE), (dict(lo=5, hi=4), lib.TA_ERR_VALUE),
        (dict(lo=-129), lib.TA_ERR_VALUE), (dict(hi=128), lib.TA_ERR_VALUE),
        (dict(mult=m_bad), lib.TA_ERR_VALUE), (dict(shift=s_bad), lib.TA_ERR_VALUE),
        (dict(nq=3), lib.TA_ERR_SIZE), (dict(mult=ffi.NULL), lib.TA_ERR_NULL),
        (dict(kind=lib.TA_INT8_OUT_F32, scale=nan), lib.TA_ERR_VALUE),
        (dict(kind=lib.TA_INT8_OUT_F32, scale=zero), lib.TA_ERR_VALUE),
        (dict(kind=lib.TA_INT8_OUT_F32, nscale=2), lib.TA_ERR_SIZE),
        (dict(kind=lib.TA_INT8_OUT_F32, scale=ffi.NULL), lib.TA_ERR_NULL),
        (dict(M=-1), lib.TA_ERR_SIZE), (dict(M=2**62, N=2**62), lib.TA_ERR_SIZE),
        (dict(K=lib.TA_INT8_MAX_K + 1), lib.TA_ERR_KBOUND), (dict(nbytes=args["nbytes"] - 1), lib.TA_ERR_PACKED),
        (dict(layout=99), lib.TA_ERR_SIZE), (dict(isa=99), lib.TA_ERR_ISA), (dict(isa=-7), lib.TA_ERR_ISA),
        (dict(isa=99 | lib.TA_INT8_NO_VNNI), lib.TA_ERR_ISA),
        (dict(A=ffi.NULL), lib.TA_ERR_NULL), (dict(Y=ffi.NULL), lib.TA_ERR_NULL), (dict(Bp=ffi.NULL), lib.TA_ERR_NULL),
    ]:
        assert call(**change) == code, change
    odd = np.zeros(64, np.int8)  # int8 output needs no alignment, int32 output does
    assert call(Y=ffi.from_buffer("int8_t[]", odd[1:])) == lib.TA_OK and np.all(odd[1:9] == 3)
    assert call(Y=ffi.from_buffer("int8_t[]", odd[1:]), kind=lib.TA_INT8_OUT_INT32) == lib.TA_ERR_ALIGN
    unaligned_bias = ffi.from_buffer("int8_t[]", odd[1:])
    assert call(bias=ffi.cast("int32_t *", unaligned_bias)) == lib.TA_ERR_ALIGN
    # arrays an output kind does not read may be NULL
    assert call(kind=lib.TA_INT8_OUT_INT32, mult=ffi.NULL, shift=ffi.NULL, scale=ffi.NULL) == lib.TA_OK
    assert np.all(keep["Y"] == 3)


@needs_c
def test_c_quantize_and_vnni_loop_refuse_bad_arguments():
    lib, ffi = _ext.lib, _ext.ffi
    x = np.ones(40, np.float32)
    out = np.zeros(40, np.int8)
    px, po = ffi.from_buffer("float[]", x), ffi.from_buffer("int8_t[]", out)
    assert lib.ta_quantize_int8(-1, 1, px, 40, 0.5, -128, 127, po) == lib.TA_OK and np.all(out == 2)
    for args, code in [((-1, 0, px, 40, 0.5, -128, 127, po), lib.TA_ERR_THREADS),
                       ((-1, 65, px, 40, 0.5, -128, 127, po), lib.TA_ERR_THREADS),
                       ((-1, 1, px, -1, 0.5, -128, 127, po), lib.TA_ERR_SIZE),
                       ((-1, 1, px, 2**62, 0.5, -128, 127, po), lib.TA_ERR_SIZE),
                       ((-1, 1, px, 40, 0.0, -128, 127, po), lib.TA_ERR_VALUE),
                       ((-1, 1, px, 40, float("nan"), -128, 127, po), lib.TA_ERR_VALUE),
                       ((-1, 1, px, 40, float("inf"), -128, 127, po), lib.TA_ERR_VALUE),
                       ((-1, 1, px, 40, 0.5, 3, 2, po), lib.TA_ERR_VALUE),
                       ((-1, 1, px, 40, 0.5, -200, 2, po), lib.TA_ERR_VALUE),
                       ((-1, 1, ffi.NULL, 40, 0.5, -128, 127, po), lib.TA_ERR_NULL),
                       ((-1, 1, px, 40, 0.5, -128, 127, ffi.NULL), lib.TA_ERR_NULL),
                       ((99, 1, px, 40, 0.5, -128, 127, po), lib.TA_ERR_ISA)]:
        assert lib.ta_quantize_int8(*args) == code, args
    x[37] = np.nan
    assert lib.ta_quantize_int8(-1, 1, px, 40, 0.5, -128, 127, po) == lib.TA_ERR_VALUE
    sink = ffi.new("int32_t *")
    assert lib.ta_vnni_loop(-1, 10, ffi.NULL) == -1
    assert lib.ta_vnni_loop(-1, -1, sink) == -1
    assert lib.ta_vnni_loop(lib.TA_ISA_SCALAR, 10, sink) == -1
    assert lib.ta_vnni_loop(lib.TA_ISA_AVX512 | lib.TA_INT8_NO_VNNI, 10, sink) == -1
    expected = 10 * 16 * 64 * 2 if kernels.info()["gemm_int8"] == "avx512-vnni" else -1
    assert lib.ta_vnni_loop(-1, 10, sink) == expected


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shift", [0, 1, 2, 30, 31, 61, 62])
def test_int8_linear_ties_at_every_shift(backend, shift):
    # acc * m exactly halfway between two integers after the shift, next to the largest and
    # smallest accumulators; bias sets acc (x @ B = 0)
    ks = np.arange(-4, 4, dtype=np.int64)
    if shift == 0:
        m, acc = 3, ks
    elif shift <= 31:
        m, acc = 2 ** (shift - 1), 2 * ks + 1                 # acc * m = (2k + 1) 2^(s-1)
    else:
        m, acc = 2**30, (2 * ks + 1) * 2 ** (shift - 31)
        acc = acc[np.abs(acc) < 2**31]                          # the int32 ones
    acc = np.concatenate([acc, [-(2**31), 2**31 - 1, -(2**31) + 1]])
    acc = np.resize(np.concatenate([acc, acc[::-1]]), 50)  # past 16 columns: the vector path
    x = np.zeros((2, 1), np.int8)
    w = kernels.prepare_int8(np.zeros((1, acc.size), np.int8))
    got = kernels.int8_linear(x, w, acc.astype(np.int32), m, shift, backend=backend)
    expected = np.clip(integer.round_shift(acc * m, shift), -128, 127)
    np.testing.assert_array_equal(got, np.broadcast_to(expected, (2, acc.size)))


@needs_c
def test_int8_linear_from_concurrent_python_threads():
    # the C calls release the GIL and share no state: four Python threads at once, each
    # splitting its call over two C threads, all get the exact answer
    rng = np.random.default_rng(9)
    w = kernels.prepare_int8(rng.integers(-128, 128, (300, 90), dtype=np.int8))
    xs = [rng.integers(-128, 128, (100 + 7 * i, 300), dtype=np.int8) for i in range(4)]
    results = [None] * 4

    def work(i):
        results[i] = [kernels.int8_linear(xs[i], w, out="int32", threads=2) for _ in range(5)]

    pool = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    for x, got in zip(xs, results):
        for g in got:
            np.testing.assert_array_equal(g, x.astype(np.int64) @ w.B)
