"""C kernels held to their NumPy twins, the twins pinned by hand, and the boundary checks.

Every property test runs over every available backend: the NumPy twin, the C
extension at its best SIMD level, and each lower C path this CPU can run.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinyapprox import kernels
from tinyapprox.kernels import _ext, reference

pytestmark = pytest.mark.kernels

BACKENDS = kernels.backends() + [p for p in kernels.c_paths() if p not in kernels.backends()]
needs_c = pytest.mark.skipif(_ext.lib is None, reason="C extension not loaded")

F32_EPS = float(np.finfo(np.float32).eps)


# ----------------------------------------------------------------- strategies

@st.composite
def csr_problems(draw):
    """(indptr, indices, data, X, dense A): density 0..1, unsorted columns, duplicates."""
    M = draw(st.integers(0, 9))
    K = draw(st.integers(0, 40) | st.sampled_from([63, 64, 65, 129, 250]))  # > 64: K blocks
    N = draw(st.sampled_from([0, 1, 3, 7, 8, 9, 16, 31, 33, 64, 65, 70, 100, 130]))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    mask = rng.random((M, K)) < density
    values = rng.standard_normal((M, K)).astype(np.float32)
    shuffled = draw(st.booleans())  # sorted rows take the K-blocked C path
    indptr, indices, data = [0], [], []
    for i in range(M):
        cols = np.flatnonzero(mask[i])
        if shuffled:
            rng.shuffle(cols)
        for c in cols:
            if draw(st.booleans()) and len(cols) and K:  # split a value into a duplicate pair
                half = np.float32(values[i, c] / 2)
                indices += [c, c]
                data += [half, values[i, c] - half]
            else:
                indices.append(c)
                data.append(values[i, c])
        indptr.append(len(indices))
    A = np.zeros((M, K), dtype=np.float64)
    for i in range(M):
        for p in range(indptr[i], indptr[i + 1]):
            A[i, indices[p]] += data[p]
    X = rng.standard_normal((K, N)).astype(np.float32)
    index_dtype = draw(st.sampled_from([np.int32, np.int64, np.uint32]))
    return (np.array(indptr, dtype=np.int64), np.array(indices, dtype=index_dtype),
            np.array(data, dtype=np.float32), X, A)


INT8_EXTREMES = st.sampled_from([-128, -127, -1, 0, 1, 126, 127]) | st.integers(-128, 127)


@st.composite
def int8_problems(draw):
    M = draw(st.integers(0, 9))
    K = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 7, 16, 33, 64, 129]))
    N = draw(st.integers(0, 40))
    A = draw(hnp.arrays(np.int8, (M, K), elements=INT8_EXTREMES))
    B = draw(hnp.arrays(np.int8, (K, N), elements=INT8_EXTREMES))
    if draw(st.booleans()):
        B = np.clip(B, -127, 127).astype(np.int8)  # symmetric weights: the vpmaddubsw path
    return A, B


@st.composite
def sign_problems(draw):
    M = draw(st.integers(0, 7))
    N = draw(st.integers(0, 7))
    K = draw(st.sampled_from([0, 1, 5, 63, 64, 65, 127, 128, 129, 255, 256, 257, 300, 1000]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "zeros", "ints"]))
    if kind == "normal":
        Xa, Xb = rng.standard_normal((M, K)), rng.standard_normal((N, K))
    elif kind == "zeros":  # sign(0) = +1 and exact zeros next to negatives
        Xa, Xb = rng.integers(-1, 1, (M, K)).astype(np.float32), np.zeros((N, K))
    else:
        Xa, Xb = rng.integers(-3, 3, (M, K)), rng.integers(-3, 3, (N, K)).astype(np.int8)
    return Xa, Xb, K


# ----------------------------------------------------------------- the references, by hand

def test_reference_csr_by_hand():
    # A = [[1, 0, 2], [0, 0, 0], [0, 3, 0]]
    indptr = np.array([0, 2, 2, 3])
    indices = np.array([2, 0, 1])
    data = np.array([2.0, 1.0, 3.0], dtype=np.float32)
    X = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32)
    expected = np.array([[11, 14], [0, 0], [9, 12]], dtype=np.float32)
    np.testing.assert_array_equal(reference.csr_matmul(indptr, indices, data, X), expected)


def test_reference_gemm_int8_by_hand():
    A = np.array([[-128, 127], [-128, -128]], dtype=np.int8)
    B = np.array([[-128], [127]], dtype=np.int8)
    # 16384 + 16129 and 16384 - 16256
    np.testing.assert_array_equal(reference.gemm_int8(A, B), np.array([[32513], [128]]))
    big = np.full((1, reference.INT8_MAX_K), -128, dtype=np.int8)
    assert reference.gemm_int8(big, big.T.copy())[0, 0] == 131071 * 16384 == 2147467264


def test_reference_bits_by_hand():
    X = np.array([[1.0, -1.0, 0.0], [-0.5, -2.0, -3.0]])
    bits = reference.pack_bits(X)
    np.testing.assert_array_equal(bits, np.array([[0b101], [0b000]], dtype=np.uint64))
    np.testing.assert_array_equal(reference.unpack_bits(bits, 3),
                                  np.array([[1, -1, 1], [-1, -1, -1]], dtype=np.float32))
    # (+1, -1, +1) . (-1, -1, -1) = -1 + 1 - 1 = -1 ; (+1,-1,+1).(+1,-1,+1) = 3
    np.testing.assert_array_equal(reference.xnor_gemm(bits, bits, 3), np.array([[3, -1], [-1, 3]]))
    wide = np.ones(65)
    wide[64] = -1
    np.testing.assert_array_equal(reference.pack_bits(wide),
                                  np.array([2**64 - 1, 0], dtype=np.uint64))


def test_reference_requantize_by_hand():
    acc = np.array([[5, 12, 20, -20, 1000, -1000]], dtype=np.int64)
    # M = 1/8: 0.625, 1.5, 2.5, -2.5, 125, -125 -> half to even, then clipped to [-100, 100]
    assert reference.requantize(acc, 0.125, -100, 100).tolist() == [[1, 2, 2, -2, 100, -100]]
    assert reference.requantize(acc, 0.125, -100, 100, relu=True).tolist() == [[1, 2, 2, 0, 100, 0]]
    # M = 3/8 is m0 = 3 * 2^29, shift 32: 4 * 3/8 = 1.5 -> 2, 12 * 3/8 = 4.5 -> 4, per channel along axis 0
    acc = np.array([[4, 12, -4], [4, 12, -4]], dtype=np.int64)
    assert reference.multiplier(0.375) == (3 * 2**29, 32)
    assert reference.requantize(acc, np.array([0.375, 1.0]), -128, 127, channel_axis=0).tolist() == \
        [[2, 4, -2], [4, 12, -4]]
    with pytest.raises(ValueError, match="requantize: multipliers must be finite and > 0"):
        reference.requantize(acc, 0.0, -128, 127)


def test_one_requantizer_serves_integer_inference_and_the_kernels():
    from tinyapprox.quant import integer

    assert integer.requantize is reference.requantize
    assert integer.round_shift is reference.round_shift and integer.multiplier is reference.multiplier


@given(hnp.arrays(np.int64, 20, elements=st.integers(-2**34, 2**34)), st.floats(1e-6, 2.0))
def test_requantize_wide_accumulators_do_not_overflow(acc, M):
    q = reference.requantize(acc, M, -2**15, 2**15)
    assert np.all(np.abs(q - np.clip(np.rint(acc * M), -2**15, 2**15)) <= 1)


# ----------------------------------------------------------------- every backend vs the twin

@pytest.mark.parametrize("backend", BACKENDS)
@given(csr_problems())
def test_csr_matmul_matches_reference(backend, problem):
    indptr, indices, data, X, A = problem
    Y = kernels.csr_matmul(indptr, indices, data, X, backend=backend)
    expected = reference.csr_matmul(indptr, indices, data, X)
    assert Y.dtype == np.float32 and Y.shape == (A.shape[0], X.shape[1])
    bound = (A.shape[1] + 2) * F32_EPS * (np.abs(A) @ np.abs(X.astype(np.float64)) + 1e-30)
    assert np.all(np.abs(Y.astype(np.float64) - expected) <= bound)
    assert np.all(np.abs(expected - A @ X.astype(np.float64)) <= bound)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("K", [50, 700])
def test_csr_matmul_wide_strips(backend, density, K):
    # N = 200 crosses every strip width; rows alternate empty and full; K = 700
    # with sorted columns is swept in several column blocks
    rng = np.random.default_rng(7)
    A = (rng.random((6, K)) < density) * rng.standard_normal((6, K))
    A[::2] = 0
    A[3, :K // 2] = 0  # a row whose first nonzero lies in a later block
    rows, cols = np.nonzero(A)
    indptr = np.concatenate([[0], np.cumsum(np.count_nonzero(A, axis=1))])
    X = rng.standard_normal((K, 200)).astype(np.float32)
    Y = kernels.csr_matmul(indptr, cols.astype(np.int32), A[rows, cols].astype(np.float32), X,
                           backend=backend, shape=(6, K))
    np.testing.assert_allclose(Y, A @ X, rtol=1e-4, atol=1e-4)
    assert np.all(Y[::2] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
@given(int8_problems())
def test_gemm_int8_exact(backend, problem):
    A, B = problem
    C = kernels.gemm_int8(A, B, backend=backend)
    assert C.dtype == np.int32 and C.shape == (A.shape[0], B.shape[1])
    np.testing.assert_array_equal(C, A.astype(np.int64) @ B.astype(np.int64))
    np.testing.assert_array_equal(kernels.gemm_int8(A, kernels.prepare_int8(B), backend=backend), C)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fill", [-128, 127])
def test_gemm_int8_extremes_across_blocks(backend, fill):
    # K spans two cache blocks of the C kernel; every product is +-16384 or 16256
    A = np.full((5, 1500), fill, dtype=np.int8)
    A[1] = -128
    B = np.full((1500, 17), -128, dtype=np.int8)
    B[:, 3] = 127
    C = kernels.gemm_int8(A, B, backend=backend)
    np.testing.assert_array_equal(C, A.astype(np.int64) @ B.astype(np.int64))


@pytest.mark.parametrize("backend", BACKENDS)
@given(int8_problems(), st.booleans(), st.booleans(), st.booleans())
def test_gemm_int8_requant_matches_reference(backend, problem, per_channel, with_bias, relu):
    A, B = problem
    N = B.shape[1]
    rng = np.random.default_rng(N)
    b_scale = rng.uniform(0.001, 0.05, N) if per_channel else 0.02
    b_zero = rng.integers(-5, 6, N) if per_channel else 0
    bias = rng.standard_normal(N) if with_bias else None
    kw = dict(a_scale=0.05, a_zero=-3, b_scale=b_scale, b_zero=b_zero, out_scale=0.1,
              out_zero=2, bias=bias, relu=relu)
    got = kernels.gemm_int8_requant(A, kernels.prepare_int8(B), backend=backend, **kw)
    assert got.dtype == np.int8
    bs = np.broadcast_to(np.asarray(b_scale, dtype=np.float64), (N,))
    bz = np.broadcast_to(np.asarray(b_zero, dtype=np.int64), (N,))
    acc = (A.astype(np.int64) + 3) @ (B.astype(np.int64) - bz)
    b_q = np.rint(bias / (0.05 * bs)).astype(np.int64) if with_bias else 0
    expected = reference.requantize(acc + b_q, 0.05 * bs / 0.1, -130, 125, relu) + 2
    np.testing.assert_array_equal(got, expected)
    real = (0.05 * bs * acc + (bias if with_bias else 0)) / 0.1
    floating = np.clip(np.maximum(np.rint(real), 0) if relu else np.rint(real), -130, 125) + 2
    assert np.all(np.abs(got - floating) <= 1)          # the integer multiplier and bias grid: one step at most


@pytest.mark.parametrize("backend", BACKENDS)
@given(sign_problems())
def test_xnor_gemm_equals_float_product_of_signs(backend, problem):
    Xa, Xb, K = problem
    A_bits, B_bits = kernels.pack_bits(Xa), kernels.pack_bits(Xb)
    C = kernels.xnor_gemm(A_bits, B_bits, K, backend=backend)
    signs_a = np.where(Xa >= 0, 1, -1).astype(np.float32)
    signs_b = np.where(Xb >= 0, 1, -1).astype(np.float32)
    assert C.dtype == np.int32 and C.shape == (Xa.shape[0], Xb.shape[0])
    np.testing.assert_array_equal(C, signs_a @ signs_b.T)
    np.testing.assert_array_equal(C, reference.xnor_gemm(A_bits, B_bits, K))
    np.testing.assert_array_equal(kernels.unpack_bits(A_bits, K), signs_a)


@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=140),
                  elements=st.floats(-3, 3, allow_nan=False)))
def test_pack_unpack_roundtrip(X):
    K = X.shape[-1]
    bits = kernels.pack_bits(X)
    assert bits.dtype == np.uint64 and bits.shape == X.shape[:-1] + ((K + 63) // 64,)
    np.testing.assert_array_equal(kernels.unpack_bits(bits, K), np.where(X >= 0, 1, -1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_xnor_gemm_many_column_blocks(backend):
    # W = 400 words per row: the C kernel walks B in several cache blocks of rows
    rng = np.random.default_rng(11)
    K = 64 * 400 - 3
    A_bits = kernels.pack_bits(rng.standard_normal((3, K)))
    B_bits = kernels.pack_bits(rng.standard_normal((130, K)))
    np.testing.assert_array_equal(kernels.xnor_gemm(A_bits, B_bits, K, backend=backend),
                                  reference.xnor_gemm(A_bits, B_bits, K))


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_arrays_are_filled_and_checked(backend):
    rng = np.random.default_rng(5)
    indptr, indices, data = np.array([0, 2, 2]), np.array([1, 0], np.int32), np.ones(2, np.float32)
    X = rng.standard_normal((2, 70)).astype(np.float32)
    Y = np.full((2, 70), np.nan, dtype=np.float32)
    assert kernels.csr_matmul(indptr, indices, data, X, backend=backend, out=Y) is Y
    np.testing.assert_allclose(Y, [X[0] + X[1], np.zeros(70)], rtol=1e-6)
    A = rng.integers(-128, 128, (3, 5), dtype=np.int8)
    C = np.full((3, 4), -1, dtype=np.int32)
    B = rng.integers(-128, 128, (5, 4), dtype=np.int8)
    assert kernels.gemm_int8(A, B, backend=backend, out=C) is C
    np.testing.assert_array_equal(C, A.astype(np.int64) @ B)
    bits = kernels.pack_bits(rng.standard_normal((3, 70)))
    C = np.zeros((3, 3), dtype=np.int32)
    assert kernels.xnor_gemm(bits, bits, 70, backend=backend, out=C) is C
    np.testing.assert_array_equal(np.diag(C), [70, 70, 70])
    with pytest.raises(ValueError, match="out must have shape"):
        kernels.gemm_int8(A, B, backend=backend, out=np.zeros((4, 3), np.int32))
    with pytest.raises(TypeError, match="out must have dtype int32"):
        kernels.xnor_gemm(bits, bits, 70, backend=backend, out=np.zeros((3, 3), np.int64))
    with pytest.raises(ValueError, match="overlap"):
        aliased = bits.view(np.int32).reshape(-1)[:9].reshape(3, 3)
        kernels.xnor_gemm(bits, bits, 70, backend=backend, out=aliased)
    with pytest.raises(ValueError, match="read-only"):
        frozen = np.zeros((2, 70), np.float32)
        frozen.setflags(write=False)
        kernels.csr_matmul(indptr, indices, data, X, backend=backend, out=frozen)


@needs_c
def test_c_paths_agree_on_a_larger_problem():
    rng = np.random.default_rng(3)
    A = rng.integers(-128, 128, (67, 300), dtype=np.int8)
    B = rng.integers(-127, 128, (300, 45), dtype=np.int8)
    Xa, Xb = rng.standard_normal((33, 700)), rng.standard_normal((35, 700))
    pa, pb = kernels.pack_bits(Xa), kernels.pack_bits(Xb)
    ref_i8 = reference.gemm_int8(A, B)
    ref_x = reference.xnor_gemm(pa, pb, 700)
    for path in kernels.c_paths():
        np.testing.assert_array_equal(kernels.gemm_int8(A, B, backend=path), ref_i8)
        np.testing.assert_array_equal(kernels.xnor_gemm(pa, pb, 700, backend=path), ref_x)


# ----------------------------------------------------------------- bad input at the boundary

def _csr_ok():
    return (np.array([0, 1, 2]), np.array([0, 2], dtype=np.int32),
            np.array([1.0, 2.0], dtype=np.float32), np.ones((3, 4), dtype=np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_csr_matmul_rejects_bad_input(backend):
    indptr, indices, data, X = _csr_ok()
    cases = [
        (TypeError, "X must have dtype float32", (indptr, indices, data, X.astype(np.float64))),
        (TypeError, "data must have dtype float32", (indptr, indices, data.astype(np.float16), X)),
        (TypeError, "indices must have an integer dtype", (indptr, indices.astype(float), data, X)),
        (TypeError, "numpy.ndarray", (list(indptr), indices, data, X)),
        (ValueError, "C-contiguous", (indptr, indices, data, np.ones((3, 8), np.float32)[:, ::2])),
        (ValueError, "X must be 2-D", (indptr, indices, data, np.ones(3, np.float32))),
        (ValueError, "same length", (indptr, indices, data[:1], X)),
        (ValueError, "start at 0", (np.array([1, 1, 2]), indices, data, X)),
        (ValueError, "end at nnz", (np.array([0, 1, 3]), indices, data, X)),
        (ValueError, "non-decreasing", (np.array([0, 2, 1, 2]), indices, data, X)),
        (ValueError, "indptr must have M", (np.array([], dtype=np.int64), indices[:0], data[:0], X)),
        (ValueError, r"in \[0, K=3\)", (indptr, np.array([0, 3], np.int32), data, X)),
        (ValueError, r"indices\[1\]=-1", (indptr, np.array([0, -1], np.int64), data, X)),
    ]
    for exc, message, args in cases:
        with pytest.raises(exc, match=message):
            kernels.csr_matmul(*args, backend=backend)
    with pytest.raises(ValueError, match="does not match"):
        kernels.csr_matmul(indptr, indices, data, X, backend=backend, shape=(2, 5))
    unaligned = np.frombuffer(bytearray(16), dtype=np.float32, count=3, offset=1).reshape(3, 1)
    with pytest.raises(ValueError, match="aligned"):
        kernels.csr_matmul(indptr, indices, data, unaligned, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("N", [3, 70, 130])  # tail-only, 64-wide and 128-wide strips
def test_csr_matmul_propagates_nan_over_stored_entries(backend, N):
    # documented contract: NaN is allowed; it spreads exactly where a stored product reaches
    indptr = np.array([0, 2, 3, 3], np.int64)
    indices = np.array([0, 1, 1], np.int32)
    data = np.array([np.nan, 1.0, 2.0], np.float32)
    X = np.ones((3, N), np.float32)
    X[2, 0] = np.inf  # column 2 is stored in no row
    Y = kernels.csr_matmul(indptr, indices, data, X, backend=backend)
    assert np.isnan(Y[0]).all()
    np.testing.assert_array_equal(Y[1:], [np.full(N, 2.0), np.zeros(N)])


@pytest.mark.parametrize("backend", BACKENDS)
def test_csr_matmul_rejects_bad_indices_of_every_dtype(backend):
    # int32 goes straight to the C range check, uint32 above 2**31 must not wrap when narrowed
    indptr, _, data, X = _csr_ok()
    for indices, shown in [(np.array([0, -1], np.int32), r"indices\[1\]=-1"),
                           (np.array([2**31, 0], np.uint32), r"indices\[0\]=2147483648"),
                           (np.array([0, 2**40], np.int64), r"indices\[1\]=1099511627776"),
                           (np.array([0, 3], np.int16), r"indices\[1\]=3")]:
        with pytest.raises(ValueError, match=r"csr_matmul: column indices must be in \[0, K=3\).*"
                                             + shown):
            kernels.csr_matmul(indptr, indices, data, X, backend=backend)
    with pytest.raises(TypeError, match="indices must have an integer dtype, got bool"):
        kernels.csr_matmul(indptr, np.array([True, False]), data, X, backend=backend)
    with pytest.raises(ValueError, match=r"indptr\[2\]=1 < indptr\[1\]=2"):
        kernels.csr_matmul(np.array([0, 2, 1, 2], np.uint8), np.array([0, 1], np.int32), data, X,
                           backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gemm_int8_rejects_bad_input(backend):
    A = np.zeros((2, 3), np.int8)
    B = np.zeros((3, 4), np.int8)
    with pytest.raises(TypeError, match="A must have dtype int8"):
        kernels.gemm_int8(A.astype(np.int16), B, backend=backend)
    with pytest.raises(TypeError, match="B must have dtype int8"):
        kernels.gemm_int8(A, B.astype(np.uint8), backend=backend)
    with pytest.raises(ValueError, match="inner dimensions"):
        kernels.gemm_int8(A, np.zeros((4, 4), np.int8), backend=backend)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.gemm_int8(A, np.zeros((4, 3), np.int8).T, backend=backend)
    with pytest.raises(ValueError, match="2-D"):
        kernels.gemm_int8(A[0], B, backend=backend)
    big = kernels.INT8_MAX_K + 1
    with pytest.raises(ValueError, match="131071"):
        kernels.gemm_int8(np.zeros((1, big), np.int8), np.zeros((big, 1), np.int8), backend=backend)
    with pytest.raises(ValueError, match="131071"):
        kernels.prepare_int8(np.zeros((big, 1), np.int8))
    requant = dict(a_scale=0.1, a_zero=0, b_scale=0.1, b_zero=0, out_scale=0.1, out_zero=0)
    for key, value, exc in [("a_scale", -1.0, ValueError), ("out_scale", float("nan"), ValueError),
                            ("a_zero", 200, ValueError), ("out_zero", 1.5, TypeError),
                            ("b_scale", np.ones(3), ValueError), ("b_zero", np.zeros(5, int), ValueError),
                            ("b_zero", 0.5, TypeError)]:
        with pytest.raises(exc, match=key):
            kernels.gemm_int8_requant(A, B, **{**requant, key: value}, backend=backend)
    with pytest.raises(ValueError, match="bias"):
        kernels.gemm_int8_requant(A, B, **requant, bias=np.zeros(2), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_xnor_gemm_rejects_bad_input(backend):
    A = np.zeros((2, 2), np.uint64)
    B = np.zeros((3, 2), np.uint64)
    with pytest.raises(TypeError, match="dtype uint64"):
        kernels.xnor_gemm(A.astype(np.int64), B, 100, backend=backend)
    with pytest.raises(ValueError, match="ceil"):
        kernels.xnor_gemm(A, B, 129, backend=backend)
    with pytest.raises(ValueError, match="ceil"):
        kernels.xnor_gemm(A, np.zeros((3, 1), np.uint64), 100, backend=backend)
    with pytest.raises(ValueError, match=r"K must be in"):
        kernels.xnor_gemm(A, B, -1, backend=backend)
    with pytest.raises(TypeError, match="K must be an int"):
        kernels.xnor_gemm(A, B, 100.0, backend=backend)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.xnor_gemm(np.zeros((2, 4), np.uint64)[:, ::2], B, 100, backend=backend)
    bad = A.copy()
    bad[1, 1] = np.uint64(1) << np.uint64(40)  # bit 104 >= K = 100
    with pytest.raises(ValueError, match="padding bits"):
        kernels.xnor_gemm(bad, B, 100, backend=backend)
    with pytest.raises(ValueError, match="unknown backend"):
        kernels.xnor_gemm(A, B, 100, backend="gpu")


def test_pack_bits_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        kernels.pack_bits(np.array([1.0, np.nan]))
    with pytest.raises(TypeError, match="dtype"):
        kernels.pack_bits(np.array(["a"]))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        kernels.pack_bits(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="ceil"):
        kernels.unpack_bits(np.zeros((2, 2), np.uint64), 10)


@needs_c
def test_c_refuses_overflowing_sizes_and_bad_paths():
    lib, ffi = _ext.lib, _ext.ffi
    null = ffi.NULL
    huge = 2**62
    assert lib.ta_csr_matmul_f32(-1, huge, 4, huge, 0, null, null, null, null, null, null, 0, 1) == lib.TA_ERR_SIZE
    assert lib.ta_csr_matmul_f32(-1, -1, 4, 4, 0, null, null, null, null, null, null, 0, 1) == lib.TA_ERR_SIZE
    assert lib.ta_csr_matmul_f32(-1, 1, 2**40, 4, 0, null, null, null, null, null, null, 0, 1) == lib.TA_ERR_SIZE
    assert lib.ta_xnor_gemm(-1, null, huge, null, huge, 1, 64, null, 1) == lib.TA_ERR_SIZE
    assert lib.ta_xnor_gemm(-1, null, 1, null, 1, 3, 64, null, 1) == lib.TA_ERR_SIZE
    assert lib.ta_xnor_gemm(-1, null, 1, null, 1, 2**33, 2**39, null, 1) == lib.TA_ERR_SIZE
    size = ffi.new("int64_t *")
    assert lib.ta_int8_packed_size(lib.TA_INT8_LAYOUT_K4, 200000, 4, size) == lib.TA_ERR_KBOUND
    assert lib.ta_int8_packed_size(lib.TA_INT8_LAYOUT_K4, 64, 2**62, size) == lib.TA_ERR_SIZE
    assert lib.ta_int8_packed_size(99, 64, 4, size) == lib.TA_ERR_SIZE
    assert lib.ta_gemm_int8_packed(-1, null, huge, 4, huge, 1, null, 0, null) == lib.TA_ERR_SIZE
    assert lib.ta_gemm_int8_packed(-1, null, 1, 4, 4, 1, null, 0, null) == lib.TA_ERR_PACKED
    # a level above what the CPU offers is refused, never executed
    A = np.zeros((1, 1), np.uint64)
    C = np.zeros((1, 1), np.int32)
    pa, pc = ffi.from_buffer("uint64_t[]", A), ffi.from_buffer("int32_t[]", C)
    assert lib.ta_xnor_gemm(99, pa, 1, pa, 1, 1, 64, pc, 1) == lib.TA_ERR_ISA
    assert lib.ta_xnor_gemm(-7, pa, 1, pa, 1, 1, 64, pc, 1) == lib.TA_ERR_ISA
    assert lib.ta_xnor_gemm(-1, pa, 1, pa, 1, 1, 64, pc, 1) == lib.TA_OK and C[0, 0] == 64
    # CSR: out-of-range indices and non-monotone indptr caught by C itself
    indptr = np.array([0, 1], np.int64)
    X = np.zeros((2, 3), np.float32)
    Y = np.zeros((1, 3), np.float32)
    args = (ffi.from_buffer("int64_t[]", indptr), ffi.from_buffer("int32_t[]", np.array([5], np.int32)),
            ffi.from_buffer("float[]", np.ones(1, np.float32)), ffi.from_buffer("float[]", X),
            ffi.from_buffer("float[]", Y))
    assert lib.ta_csr_matmul_f32(-1, 1, 2, 3, 1, *args, null, 0, 1) == lib.TA_ERR_INDEX
    assert lib.ta_csr_matmul_f32(-1, 1, 2, 3, 1, *args, null, 5, 1) == lib.TA_ERR_NULL
    down = np.array([0, 1, 0, 1], np.int64)  # starts at 0, ends at nnz, but not monotone
    assert lib.ta_csr_matmul_f32(-1, 3, 2, 3, 1, ffi.from_buffer("int64_t[]", down), *args[1:4],
                                 ffi.from_buffer("float[]", np.zeros((3, 3), np.float32)),
                                 null, 0, 1) == lib.TA_ERR_INDEX
    negative = ffi.from_buffer("int32_t[]", np.array([-1], np.int32))
    assert lib.ta_csr_matmul_f32(-1, 1, 2, 3, 1, args[0], negative, *args[2:], null, 0, 1) == lib.TA_ERR_INDEX
    # int8 GEMM: K above the exact int32 bound is refused before the packed size is compared
    assert lib.ta_gemm_int8_packed(-1, null, 1, lib.TA_INT8_MAX_K + 1, 1, 1, null, 0, null) == \
        lib.TA_ERR_KBOUND


# ----------------------------------------------------------------- introspection and fallbacks

def test_info_and_backends():
    info = kernels.info()
    assert set(info) >= {"extension_loaded", "forced_numpy", "csr_matmul", "gemm_int8", "xnor_gemm", "cpu"}
    assert "numpy" in kernels.backends()
    if info["extension_loaded"]:
        assert kernels.backends() == ["numpy", "c"]
        assert info["csr_matmul"] in ("scalar", "avx2", "avx512")
        assert info["gemm_int8"] in ("scalar", "avx2", "avx512-vnni")
        assert info["xnor_gemm"] in ("scalar", "avx2", "avx512-vpopcntdq")
    else:
        assert info["csr_matmul"] == "numpy"
        with pytest.raises(RuntimeError, match="not loaded"):
            kernels.gemm_int8(np.zeros((1, 1), np.int8), np.zeros((1, 1), np.int8), backend="c")
    assert "csr_matmul" in str(info)


def _run_python(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-W", "always", "-c", code], env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_env_forces_numpy_twins():
    out = _run_python("from tinyapprox import kernels as k; i = k.info(); "
                      "print(i['forced_numpy'], i['gemm_int8'], k.backends())",
                      TINYAPPROX_KERNELS="numpy")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "True numpy ['numpy']"


def test_unloadable_extension_falls_back_with_one_warning(tmp_path):
    bogus = tmp_path / "_ckernels.so"
    bogus.write_bytes(b"not a shared object")
    code = ("import numpy as np; from tinyapprox import kernels as k; "
            "print(k.backends(), k.gemm_int8(np.ones((1, 2), np.int8), np.ones((2, 1), np.int8))[0, 0])")
    out = _run_python(code, TINYAPPROX_CKERNELS_PATH=str(bogus), TINYAPPROX_KERNELS="")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['numpy'] 2"
    assert out.stderr.count("RuntimeWarning") == 1 and "NumPy twins" in out.stderr

