"""The fused CSR and binary layers (and threads=) held to their NumPy twins.

Every property test runs over every available backend, like tests/test_kernels.py;
results must not depend on the thread count (compared bit for bit).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinyapprox import kernels
from tinyapprox.bnn.packing import apply_threshold, fold_threshold
from tinyapprox.kernels import _ext, reference
from tinyapprox.testing import strategies as tst

pytestmark = pytest.mark.kernels

BACKENDS = kernels.backends() + [p for p in kernels.c_paths() if p not in kernels.backends()]
needs_c = pytest.mark.skipif(_ext.lib is None, reason="C extension not loaded")
F32_EPS = float(np.finfo(np.float32).eps)


# ----------------------------------------------------------------- strategies

@st.composite
def sparse_layers(draw):
    """(x, indptr, indices, data, bias, dense W): a layer view of ``tst.csr_problems`` -- odd
    shapes, density 0..1, unsorted rows, duplicate columns, empty rows -- with M up to past a
    vector of outputs, x = X.T (N, K) and an optional bias (M,)."""
    indptr, indices, data, X, W = draw(tst.csr_problems(rows=st.integers(0, 12) | st.sampled_from([31, 64, 70])))
    x = np.ascontiguousarray(X.T)
    bias = draw(hnp.arrays(np.float32, W.shape[0], elements=tst.finite_floats(-3, 3, width=32))
                | st.none())
    return x, indptr, indices, data, bias, W


@st.composite
def binary_layers(draw):
    """(x_bits, w_bits, K, x signs, w signs) with K around word and vector boundaries."""
    N = draw(st.integers(0, 11) | st.sampled_from([16, 33]))
    M = draw(st.integers(0, 11) | st.sampled_from([63, 64, 65, 130]))
    K = draw(st.sampled_from([0, 1, 5, 63, 64, 65, 127, 128, 129, 447, 448, 511, 512, 513,
                              1000, 1100]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["normal", "ones", "mixed"]))
    xs = np.where(rng.standard_normal((N, K)) >= 0, 1, -1)
    ws = np.where(rng.standard_normal((M, K)) >= 0, 1, -1)
    if kind == "ones":  # dot = +-K at the ends of its range
        xs[:] = 1
        ws[: M // 2] = 1
        ws[M // 2:] = -1
    elif kind == "mixed":
        xs[: N // 2] = ws[0] if M else 1
    return kernels.pack_bits(xs), kernels.pack_bits(ws), K, xs, ws


def _dense(indptr, indices, data, shape):
    W = np.zeros(shape)
    for j in range(shape[0]):
        for p in range(indptr[j], indptr[j + 1]):
            W[j, indices[p]] += data[p]
    return W


# ----------------------------------------------------------------- the twins, by hand

def test_reference_csr_linear_by_hand():
    # W = [[1, 0, 2], [0, 0, 0], [0, -3, 0]], b = [0.5, -1, 1]
    indptr, indices = np.array([0, 2, 2, 3]), np.array([2, 0, 1])
    data = np.array([2.0, 1.0, -3.0], np.float32)
    x = np.array([[1, 2, 3], [-1, 1, 0]], np.float32)
    bias = np.array([0.5, -1, 1], np.float32)
    y = reference.csr_linear(x, indptr, indices, data, bias)
    np.testing.assert_array_equal(y, np.array([[7.5, -1, -5], [-0.5, -1, -2]], np.float32))
    np.testing.assert_array_equal(reference.csr_linear(x, indptr, indices, data, bias, relu=True),
                                  np.array([[7.5, 0, 0], [0, 0, 0]], np.float32))


def test_reference_binary_linear_by_hand():
    # x = (+1, -1, +1), w0 = (+1, +1, +1), w1 = (-1, +1, -1): dots 1 and -3
    x = reference.pack_bits(np.array([[1, -1, 1]]))
    w = reference.pack_bits(np.array([[1, 1, 1], [-1, 1, -1]]))
    np.testing.assert_array_equal(reference.binary_linear(x, w, 3), [[1, -3]])
    # thresholds 1 (dot >= 1: yes) and -3 flipped (dot <= -3: yes) -> bits 0b11
    bits = reference.binary_linear(x, w, 3, np.array([1, -3]), np.array([False, True]))
    np.testing.assert_array_equal(bits, np.array([[0b11]], np.uint64))
    bits = reference.binary_linear(x, w, 3, np.array([2, -4]), np.array([False, True]))
    np.testing.assert_array_equal(bits, np.array([[0]], np.uint64))


# ----------------------------------------------------------------- every backend vs the twin

@pytest.mark.parametrize("backend", BACKENDS)
@given(sparse_layers(), st.booleans())
def test_csr_linear_matches_reference(backend, layer, relu):
    x, indptr, indices, data, bias, W = layer
    y = kernels.csr_linear(x, indptr, indices, data, bias=bias, relu=relu, backend=backend,
                           shape=W.shape)
    expected = reference.csr_linear(x, indptr, indices, data, bias, relu)
    assert y.dtype == np.float32 and y.shape == (x.shape[0], W.shape[0]) and y.flags.c_contiguous
    b = np.zeros(W.shape[0]) if bias is None else bias.astype(np.float64)
    exact = x.astype(np.float64) @ W.T + b
    bound = (W.shape[1] + 3) * F32_EPS * (np.abs(x.astype(np.float64)) @ np.abs(W.T) + np.abs(b)
                                          + 1e-30)
    if relu:
        exact = np.maximum(exact, 0)
        assert np.all(y >= 0)
    assert np.all(np.abs(y - exact) <= bound)
    assert np.all(np.abs(expected - exact) <= bound)


@pytest.mark.parametrize("backend", BACKENDS)
@given(binary_layers())
def test_binary_linear_dot_is_the_product_of_signs(backend, layer):
    x_bits, w_bits, K, xs, ws = layer
    dot = kernels.binary_linear(x_bits, w_bits, K, backend=backend)
    assert dot.dtype == np.int32 and dot.shape == (xs.shape[0], ws.shape[0])
    np.testing.assert_array_equal(dot, xs.astype(np.int64) @ ws.T.astype(np.int64))
    np.testing.assert_array_equal(dot, reference.binary_linear(x_bits, w_bits, K))


@pytest.mark.parametrize("backend", BACKENDS)
@given(binary_layers(), st.data())
def test_binary_linear_thresholds_match_reference(backend, layer, data):
    x_bits, w_bits, K, xs, ws = layer
    M = ws.shape[0]
    dot = xs.astype(np.int64) @ ws.T.astype(np.int64)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    # thresholds on, next to and beyond the dots that occur, and past the range [-K, K]
    near = dot[0] + rng.integers(-1, 2, M) if dot.shape[0] else rng.integers(-3, 4, M)
    pick = rng.integers(0, 4, M)
    wide = rng.choice(np.array([-K - 5, -K - 1, -K, K, K + 1, K + 2, 2**40, -2**40]), M)
    t = np.where(pick == 0, wide, np.where(pick == 1, rng.integers(-K - 2, K + 3, M), near))
    t = t.astype(data.draw(st.sampled_from([np.int32, np.int64])) if np.abs(t).max(initial=0) < 2**31
                 else np.int64)
    flip = rng.random(M) < 0.5 if data.draw(st.booleans()) else None
    bits = kernels.binary_linear(x_bits, w_bits, K, thresholds=t, flip=flip, backend=backend)
    assert bits.dtype == np.uint64 and bits.shape == (xs.shape[0], (M + 63) // 64)
    f = np.zeros(M, bool) if flip is None else flip
    plus = np.where(f, dot <= t.astype(np.int64), dot >= t.astype(np.int64))
    np.testing.assert_array_equal(kernels.unpack_bits(bits, M), np.where(plus, 1, -1))
    np.testing.assert_array_equal(bits, reference.binary_linear(x_bits, w_bits, K, t, f))


@pytest.mark.parametrize("backend", BACKENDS)
@given(binary_layers(), st.integers(0, 2**32 - 1))
def test_binary_linear_follows_folded_batch_norm(backend, layer, seed):
    # the project folds batch norm + sign into (s, t) with bit = s * dot >= t;
    # thresholds = s * t, flip = s < 0 must give exactly those bits
    x_bits, w_bits, K, xs, ws = layer
    M = ws.shape[0]
    rng = np.random.default_rng(seed)
    gamma = rng.standard_normal(M) * rng.choice([0.0, 1.0, 1.0, 1.0], M)
    s, t, _ = fold_threshold(gamma, rng.standard_normal(M), rng.standard_normal(M) * K / 4,
                             rng.uniform(0.1, 3, M) * K, k=K)
    bits = kernels.binary_linear(x_bits, w_bits, K, thresholds=(s * t).astype(np.int64),
                                 flip=s < 0, backend=backend)
    dot = kernels.xnor_gemm(x_bits, w_bits, K)
    np.testing.assert_array_equal(kernels.unpack_bits(bits, M) > 0, apply_threshold(dot, s, t))
    # and the same with fold_threshold's unclamped (int64, up to 2**62) thresholds
    s2, t2, _ = fold_threshold(gamma, rng.standard_normal(M), np.zeros(M), np.ones(M))
    bits2 = kernels.binary_linear(x_bits, w_bits, K, thresholds=s2 * t2, flip=s2 < 0,
                                  backend=backend)
    np.testing.assert_array_equal(kernels.unpack_bits(bits2, M) > 0, apply_threshold(dot, s2, t2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_linear_chains_layers(backend):
    # packed output bits feed the next layer directly; compare with signs through floats
    rng = np.random.default_rng(4)
    xs = np.where(rng.standard_normal((37, 700)) >= 0, 1.0, -1.0)
    w1 = np.where(rng.standard_normal((130, 700)) >= 0, 1.0, -1.0)
    w2 = np.where(rng.standard_normal((9, 130)) >= 0, 1.0, -1.0)
    t1 = rng.integers(-30, 30, 130)
    h = kernels.binary_linear(kernels.pack_bits(xs), kernels.pack_bits(w1), 700, thresholds=t1,
                              backend=backend)
    y = kernels.binary_linear(h, kernels.pack_bits(w2), 130, backend=backend)
    hs = np.where(xs @ w1.T >= t1, 1.0, -1.0)
    np.testing.assert_array_equal(y, hs @ w2.T)


# ----------------------------------------------------------------- threads

THREAD_BACKENDS = [b for b in BACKENDS if b != "numpy"] or ["numpy"]


@pytest.fixture(scope="module")
def big_layers():
    """Problems well above the C kernels' minimum work per thread, so calls do split: CSR
    into (strip, row range) tasks with uneven shares, XNOR into tiles of rows."""
    rng = np.random.default_rng(9)
    W = (rng.random((503, 1001)) < 0.3) * rng.standard_normal((503, 1001))
    rows, cols = np.nonzero(W)
    indptr = np.concatenate([[0], np.cumsum(np.count_nonzero(W, axis=1))])
    csr = (indptr, cols.astype(np.int32), W[rows, cols].astype(np.float32))
    x = rng.standard_normal((301, 1001)).astype(np.float32)
    X = rng.standard_normal((1001, 150)).astype(np.float32)
    bias = rng.standard_normal(503).astype(np.float32)
    xs = np.where(rng.standard_normal((401, 4000)) >= 0, 1.0, -1.0)
    ws = np.where(rng.standard_normal((303, 4000)) >= 0, 1.0, -1.0)
    t = rng.integers(-40, 40, 303)
    return dict(csr=csr, W=W, x=x, X=X, bias=bias, a=kernels.pack_bits(xs), b=kernels.pack_bits(ws),
                dot=(xs @ ws.T).astype(np.int64), t=t)


@pytest.mark.parametrize("backend", THREAD_BACKENDS)
@pytest.mark.parametrize("threads", [2, 3, 5])
def test_results_do_not_depend_on_threads(backend, threads, big_layers):
    p = big_layers
    indptr, idx, data = p["csr"]
    x, X, bias = p["x"], p["X"], p["bias"]
    for relu in (False, True):
        one = kernels.csr_linear(x, indptr, idx, data, bias, relu, threads=1, backend=backend)
        many = kernels.csr_linear(x, indptr, idx, data, bias, relu, threads=threads, backend=backend)
        np.testing.assert_array_equal(one.view(np.uint32), many.view(np.uint32))
    np.testing.assert_allclose(many, np.maximum(x @ p["W"].T + bias, 0), rtol=1e-4, atol=1e-3)
    one = kernels.csr_matmul(indptr, idx, data, X, threads=1, backend=backend)
    many = kernels.csr_matmul(indptr, idx, data, X, threads=threads, backend=backend)
    np.testing.assert_array_equal(one.view(np.uint32), many.view(np.uint32))
    np.testing.assert_allclose(many, p["W"] @ X, rtol=1e-4, atol=1e-3)
    a, b, t = p["a"], p["b"], p["t"]
    dots = kernels.xnor_gemm(a, b, 4000, threads=threads, backend=backend)
    np.testing.assert_array_equal(dots, p["dot"])
    np.testing.assert_array_equal(kernels.binary_linear(a, b, 4000, threads=threads, backend=backend), dots)
    bits = kernels.binary_linear(a, b, 4000, thresholds=t, threads=threads, backend=backend)
    np.testing.assert_array_equal(kernels.unpack_bits(bits, 303), np.where(p["dot"] >= t, 1, -1))


def test_threads_default_follows_the_environment(monkeypatch):
    monkeypatch.setenv("TINYAPPROX_NUM_THREADS", "2")
    assert kernels.default_threads() == 2
    monkeypatch.setenv("TINYAPPROX_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="TINYAPPROX_NUM_THREADS"):
        kernels.csr_linear(np.zeros((1, 1), np.float32), np.array([0, 0]), np.zeros(0, np.int32),
                           np.zeros(0, np.float32))


# ----------------------------------------------------------------- bad input at the boundary

def _sparse_ok():
    return (np.ones((2, 3), np.float32), np.array([0, 1, 2]), np.array([0, 2], np.int32),
            np.array([1.0, 2.0], np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_csr_linear_rejects_bad_input(backend):
    x, indptr, indices, data = _sparse_ok()
    cases = [
        (TypeError, "x must have dtype float32", (x.astype(np.float64), indptr, indices, data), {}),
        (ValueError, "x must be 2-D", (x[0], indptr, indices, data), {}),
        (ValueError, "x must be C-contiguous", (np.ones((3, 2), np.float32).T, indptr, indices, data), {}),
        (TypeError, "data must have dtype float32", (x, indptr, indices, data.astype(np.float64)), {}),
        (ValueError, "same length", (x, indptr, indices, data[:1]), {}),
        (ValueError, "start at 0", (x, np.array([1, 1, 2]), indices, data), {}),
        (ValueError, "non-decreasing", (x, np.array([0, 2, 1, 2]), indices, data), {}),
        (ValueError, r"in \[0, K=3\)", (x, indptr, np.array([0, 3], np.int32), data), {}),
        (ValueError, r"indices\[1\]=-1", (x, indptr, np.array([0, -1], np.int64), data), {}),
        (ValueError, r"bias must have shape \(2,\)", (x, indptr, indices, data), {"bias": np.ones(3, np.float32)}),
        (TypeError, "bias must have dtype float32", (x, indptr, indices, data), {"bias": np.ones(2)}),
        (TypeError, "relu must be a bool", (x, indptr, indices, data), {"relu": 1}),
        (ValueError, "does not match", (x, indptr, indices, data), {"shape": (2, 4)}),
        (ValueError, r"threads must be in \[1, 64\]", (x, indptr, indices, data), {"threads": 0}),
        (ValueError, r"threads must be in \[1, 64\]", (x, indptr, indices, data), {"threads": 65}),
        (TypeError, "threads must be an int", (x, indptr, indices, data), {"threads": 2.0}),
        (ValueError, "unknown backend", (x, indptr, indices, data), {"backend": "gpu"}),
    ]
    for exc, message, args, kw in cases:
        with pytest.raises(exc, match="csr_linear: .*" + message):
            kernels.csr_linear(*args, **{"backend": backend, **kw})


@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_linear_rejects_bad_input(backend):
    x, w = np.zeros((2, 2), np.uint64), np.zeros((3, 2), np.uint64)
    t = np.zeros(3, np.int32)
    cases = [
        (TypeError, "x_bits must have dtype uint64", (x.astype(np.int64), w, 100), {}),
        (ValueError, "w_bits must have ceil", (x, np.zeros((3, 1), np.uint64), 100), {}),
        (ValueError, "K must be in", (x, w, -1), {}),
        (ValueError, r"thresholds must have shape \(3,\)", (x, w, 100), {"thresholds": np.zeros(2, np.int32)}),
        (TypeError, "thresholds must have an integer dtype", (x, w, 100), {"thresholds": np.zeros(3)}),
        (TypeError, "thresholds must be a numpy.ndarray", (x, w, 100), {"thresholds": [0, 0, 0]}),
        (TypeError, "flip must have dtype bool", (x, w, 100), {"thresholds": t, "flip": np.zeros(3, np.int8)}),
        (ValueError, r"flip must have shape \(3,\)", (x, w, 100), {"thresholds": t, "flip": np.zeros(4, bool)}),
        (ValueError, "flip given without thresholds", (x, w, 100), {"flip": np.zeros(3, bool)}),
        (ValueError, r"threads must be in \[1, 64\]", (x, w, 100), {"threads": -1}),
    ]
    for exc, message, args, kw in cases:
        with pytest.raises(exc, match="binary_linear: .*" + message):
            kernels.binary_linear(*args, **{"backend": backend, **kw})
    bad = x.copy()
    bad[1, 1] = np.uint64(1) << np.uint64(40)  # bit 104 >= K = 100
    with pytest.raises(ValueError, match="binary_linear: x_bits row 1 has nonzero padding bits"):
        kernels.binary_linear(bad, w, 100, thresholds=t, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_argument_is_checked_everywhere(backend):
    x, indptr, indices, data = _sparse_ok()
    bits = np.zeros((2, 1), np.uint64)
    calls = {"csr_matmul": lambda t: kernels.csr_matmul(indptr, indices, data, x.T.copy(), threads=t,
                                                        backend=backend),
             "xnor_gemm": lambda t: kernels.xnor_gemm(bits, bits, 10, threads=t, backend=backend),
             "csr_linear": lambda t: kernels.csr_linear(x, indptr, indices, data, threads=t, backend=backend),
             "binary_linear": lambda t: kernels.binary_linear(bits, bits, 10, threads=t, backend=backend)}
    for op, call in calls.items():
        for bad, exc in [(0, ValueError), (kernels.MAX_THREADS + 1, ValueError), (True, TypeError),
                         ("2", TypeError)]:
            with pytest.raises(exc, match=f"{op}: threads"):
                call(bad)
        np.testing.assert_array_equal(call(kernels.MAX_THREADS), call(1))  # the bound is accepted, same bits


@needs_c
def test_c_entry_points_refuse_bad_arguments():
    lib, ffi = _ext.lib, _ext.ffi
    null = ffi.NULL
    buf = lambda ctype, a: ffi.from_buffer(ctype + "[]", a)  # noqa: E731
    # threads is checked by C itself, not only by the Python face
    A = np.zeros((1, 1), np.uint64)
    C = np.zeros((1, 1), np.int32)
    for bad in (0, -1, lib.TA_MAX_THREADS + 1):
        assert lib.ta_xnor_gemm(-1, buf("uint64_t", A), 1, buf("uint64_t", A), 1, 1, 64,
                                buf("int32_t", C), bad) == lib.TA_ERR_THREADS
    indptr = np.array([0, 1], np.int64)
    idx = np.array([1], np.int32)
    one = np.ones(1, np.float32)
    x = np.ones((3, 2), np.float32)
    y = np.zeros((3, 1), np.float32)
    csr = (buf("int64_t", indptr), buf("int32_t", idx), buf("float", one))
    assert lib.ta_csr_matmul_f32(-1, 1, 2, 3, 1, *csr, buf("float", x), buf("float", y), null, 0, 0) \
        == lib.TA_ERR_THREADS
    # the fused sparse layer: N=3 samples, K=2, M=1 output
    def linear(N=3, K=2, M=1, nnz=1, csr=csr, x=buf("float", x), bias=null, relu=0,
               y=buf("float", y), scratch=null, nscratch=0, threads=1):
        return lib.ta_csr_linear_f32(-1, N, K, M, nnz, *csr, x, bias, relu, y, scratch, nscratch, threads)
    assert linear() == lib.TA_OK and np.all(y == 1)
    assert linear(N=2**62, M=2**62) == lib.TA_ERR_SIZE
    assert linear(K=-1) == lib.TA_ERR_SIZE
    assert linear(relu=2) == lib.TA_ERR_SIZE
    assert linear(threads=65) == lib.TA_ERR_THREADS
    assert linear(x=null) == lib.TA_ERR_NULL
    assert linear(y=null) == lib.TA_ERR_NULL
    assert linear(nscratch=4) == lib.TA_ERR_NULL
    assert linear(K=1) == lib.TA_ERR_INDEX  # column 1 is outside [0, 1)
    assert linear(nnz=2) == lib.TA_ERR_INDEX  # indptr does not end at nnz
    odd = np.frombuffer(bytearray(8), dtype=np.uint8)[1:5]
    assert linear(bias=ffi.cast("float *", ffi.from_buffer(odd))) == lib.TA_ERR_ALIGN
    assert lib.ta_csr_scratch_floats(10, 10, 0) == -1 and lib.ta_csr_scratch_floats(-1, 10, 1) == -1
    assert lib.ta_csr_scratch_floats(10, 10, 2) > 0
    # the fused binary layer: N=1 sample, M=2 outputs, K=64
    X = np.zeros((1, 1), np.uint64)
    Wb = np.zeros((2, 1), np.uint64)
    thr = np.zeros(2, np.int32)
    flip = np.zeros(2, np.uint8)
    out = np.zeros((1, 1), np.uint64)
    def threshold(K=64, W=1, thr=buf("int32_t", thr), flip=buf("uint8_t", flip), out=buf("uint64_t", out),
                  out_words=1, threads=1, Wb=buf("uint64_t", Wb)):
        return lib.ta_binary_threshold(-1, buf("uint64_t", X), 1, Wb, 2, W, K, thr, flip, out,
                                       out_words, threads)
    assert threshold() == lib.TA_OK and out[0, 0] == 0b11
    assert threshold(out_words=2) == lib.TA_ERR_SIZE
    assert threshold(W=2) == lib.TA_ERR_SIZE
    assert threshold(thr=null) == lib.TA_ERR_NULL
    assert threshold(flip=null) == lib.TA_ERR_NULL
    assert threshold(out=null) == lib.TA_ERR_NULL
    assert threshold(threads=0) == lib.TA_ERR_THREADS
    flip[1] = 2
    assert threshold() == lib.TA_ERR_SIZE
    flip[1] = 0
    Wb[1, 0] = 1 << 5
    assert threshold(K=5) == lib.TA_ERR_PADDING
    # the popcount calibration loop
    sink = ffi.new("int64_t *")
    assert lib.ta_popcnt_loop(99, 10, sink) == -1
    assert lib.ta_popcnt_loop(-1, 10, null) == -1
    assert lib.ta_popcnt_loop(-1, -5, sink) == -1
    assert lib.ta_popcnt_loop(0, 1000, sink) == 1000 * 12 * 64


@needs_c
def test_popcnt_loop_runs_every_path():
    sink = _ext.ffi.new("int64_t *")
    for level in range(int(_ext.lib.ta_best_isa(2)) + 1):
        assert _ext.lib.ta_popcnt_loop(level, 1000, sink) > 0
