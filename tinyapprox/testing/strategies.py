"""Hypothesis strategies that find the corners of tensor code.

They draw odd shapes with size-1 and empty dimensions, broadcastable shape pairs,
finite arrays that are sometimes non-contiguous views, values that sit next to a
quantizer's rounding steps or next to zero (where ``sign`` flips), sparse matrices of
any density, and small random expression graphs for gradchecking the autograd engine.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .. import functional as F


def shapes(min_dims: int = 0, max_dims: int = 4, min_side: int = 0, max_side: int = 5):
    """Array shapes, including size-1 and (when ``min_side == 0``) empty dimensions."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(num_shapes: int = 2, min_dims: int = 0, max_dims: int = 3, min_side: int = 1,
                         max_side: int = 4):
    """Tuples of ``num_shapes`` shapes that broadcast together (NumPy rules)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims,
                                             min_side=min_side, max_side=max_side).map(lambda r: r.input_shapes)


def finite_floats(low: float = -10.0, high: float = 10.0, width: int = 64):
    """Hypothesis strategy of Python floats in [low, high], never NaN or infinite, exactly
    representable at ``width`` bits (16, 32 or 64; hypothesis raises for other widths)."""
    return st.floats(low, high, allow_nan=False, allow_infinity=False, width=width)


@st.composite
def arrays(draw, shape=None, dtype=np.float64, low: float = -10.0, high: float = 10.0, noncontiguous=None):
    """Finite arrays of ``shape`` (drawn when None); sometimes returned as a non-contiguous view.

    A non-contiguous view is made by drawing an array twice as long on the last axis and
    taking every other element, or by transposing a drawn array of the reversed shape.
    """
    if shape is None:
        shape = draw(shapes())
    shape = tuple(shape)
    width = 32 if np.dtype(dtype) == np.float32 else 64
    elems = finite_floats(low, high, width)
    mode = draw(st.sampled_from(["contiguous", "strided", "transposed"])) if noncontiguous is None else (
        "strided" if noncontiguous else "contiguous")
    if mode == "strided" and len(shape) >= 1:
        base = draw(hnp.arrays(dtype, shape[:-1] + (2 * shape[-1],), elements=elems))
        return base[..., ::2]
    if mode == "transposed" and len(shape) >= 2:
        return draw(hnp.arrays(dtype, shape[::-1], elements=elems)).T
    return draw(hnp.arrays(dtype, shape, elements=elems))


@st.composite
def near_steps(draw, step: float, n_steps: int = 20, shape=(8,), dtype=np.float64):
    """Values within a few ulps-to-thousandths of the midpoints and grid points of a quantizer.

    Rounding bugs show at midpoints (k + 1/2) * step; saturation bugs at the ends.
    """
    k = draw(hnp.arrays(np.int64, shape, elements=st.integers(-n_steps, n_steps)))
    offset = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 0.5, -0.5, 0.499, 0.501, 1e-9, -1e-9])))
    return ((k + offset) * step).astype(dtype)


def near_zero(shape=(16,), dtype=np.float64, scale: float = 1e-6):
    """Arrays of tiny values and exact zeros, where ``sign`` changes its mind."""
    elems = st.one_of(st.just(0.0), st.just(-0.0), st.floats(-scale, scale, allow_nan=False))
    return hnp.arrays(dtype, shape, elements=elems)


@st.composite
def sparse_matrices(draw, max_rows: int = 12, max_cols: int = 12, dtype=np.float32):
    """Dense 2-D arrays with a drawn density from 0 to 1 (exact zeros elsewhere)."""
    m = draw(st.integers(0, max_rows))
    k = draw(st.integers(0, max_cols))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.5, 0.9, 1.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((m, k)).astype(dtype)
    values[values == 0] = 1
    return np.where(rng.random((m, k)) < density, values, 0).astype(dtype)


_UNARY = {
    "neg": F.neg, "exp": lambda x: F.exp(F.clip(x, -5, 5)), "tanh": F.tanh, "sigmoid": F.sigmoid,
    "square": lambda x: x * x, "softplus_like": lambda x: F.log(1 + F.exp(F.clip(x, -5, 5))),
    "cube": lambda x: x * x * x, "sqrt_pos": lambda x: F.sqrt(x * x + 1.0),
}
_BINARY = {"add": F.add, "sub": F.sub, "mul": F.mul, "div_pos": lambda a, b: a / (b * b + 1.0),
           "maximum_smooth": lambda a, b: a + F.tanh(b)}


@st.composite
def expression_graphs(draw, n_inputs: int = 3, max_ops: int = 6, shape=(3,)):
    """A small random expression over ``n_inputs`` tensors of ``shape``.

    Returns ``(fn, arrays, description)``: ``fn(*tensors) -> Tensor`` rebuilds the same
    graph each call (so gradcheck can re-evaluate it), ``arrays`` are float64 inputs, and
    ``description`` spells the expression. Intermediate values are reused, so nodes with
    several consumers (gradient accumulation) appear.
    """
    steps = []
    n_values = n_inputs
    for _ in range(draw(st.integers(1, max_ops))):
        if draw(st.booleans()):
            op = draw(st.sampled_from(sorted(_UNARY)))
            steps.append((op, draw(st.integers(0, n_values - 1))))
        else:
            op = draw(st.sampled_from(sorted(_BINARY)))
            steps.append((op, draw(st.integers(0, n_values - 1)), draw(st.integers(0, n_values - 1))))
        n_values += 1
    inputs = [draw(arrays(shape=shape, low=-2, high=2, noncontiguous=False)) for _ in range(n_inputs)]

    def fn(*tensors):
        values = list(tensors)
        for step in steps:
            if len(step) == 2:
                values.append(_UNARY[step[0]](values[step[1]]))
            else:
                values.append(_BINARY[step[0]](values[step[1]], values[step[2]]))
        return values[-1]

    names = [f"x{i}" for i in range(n_inputs)]
    for step in steps:
        args = ", ".join(names[j] for j in step[1:])
        names.append(f"{step[0]}({args})")
    return fn, inputs, names[-1]


# ======================================================= problems for the lecture's topics
# The strategies below draw whole problems for one topic each (convolution, pooling,
# batch-norm folding, Hogwild races, sparse, int8 and binary products). Course exercises
# and the library's own tests share them. Typical use in an exercise's property test::
#
#     from hypothesis import given
#     from tinyapprox.testing import strategies as tst
#
#     @given(tst.csr_problems())
#     def test_my_csr_product(problem):
#         indptr, indices, data, X, A = problem
#         np.testing.assert_allclose(my_csr_matmul(indptr, indices, data, X), A @ X, rtol=1e-5, atol=1e-5)


@st.composite
def conv_cases(draw, max_side: int = 6):
    """A 2-D convolution problem ``(x, w, b, stride, padding)``, float64.

    x: (N, C, H, W) (sometimes a non-contiguous view), w: (O, C, kh, kw), b: (O,) or None,
    stride and padding: (h, w) pairs from 1..3 and 0..2; H and W are at least the kernel
    minus the padding, so the output is never empty. Example::

        @given(tst.conv_cases())
        def test_conv(case):
            x, w, b, stride, padding = case
            y = conv2d(ta.tensor(x), ta.tensor(w), None if b is None else ta.tensor(b),
                       stride=stride, padding=padding)
    """
    N = draw(st.integers(1, 2))
    C, O = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, kh - 2 * ph), max_side))
    W = draw(st.integers(max(1, kw - 2 * pw), max_side))
    x = draw(arrays(shape=(N, C, H, W), low=-2, high=2))
    w = draw(arrays(shape=(O, C, kh, kw), low=-2, high=2, noncontiguous=False))
    b = draw(st.none() | arrays(shape=(O,), low=-2, high=2, noncontiguous=False))
    return x, w, b, (sh, sw), (ph, pw)


@st.composite
def pool_cases(draw):
    """A pooling problem ``(x, k, s, p)``: x (N, C, H, W) float64, square kernel k, stride s, padding p <= k // 2.

    Half of the draws round x to small integers, so ties inside a window (where max
    pooling must pick one input for the gradient) are frequent. Example::

        @given(tst.pool_cases())
        def test_pool(case):
            x, k, s, p = case
            y = max_pool2d(ta.tensor(x), k, stride=s, padding=p)
    """
    k = draw(st.integers(1, 3))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, k // 2))
    H = draw(st.integers(max(1, k - 2 * p), 7))
    W = draw(st.integers(max(1, k - 2 * p), 7))
    ints = draw(st.booleans())
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W)
    x = draw(arrays(shape=shape, low=-3, high=3))
    return (np.round(x) if ints else x), k, s, p


@st.composite
def bn_params(draw, max_c: int = 6):
    """Batch-norm parameters for threshold folding: ``(k, gamma, beta, mean, var)``.

    k: the dot-product range [-k, k] (1..40); gamma, beta, mean, var: float32 (C,) with
    gamma sometimes 0, +-1 or +-1e-3 (the folding's corner cases), mean sometimes an
    integer (a threshold exactly on a reachable dot product) and var sometimes 0.
    Example::

        @given(tst.bn_params())
        def test_fold(params):
            k, gamma, beta, mean, var = params
            s, t, _ = bnn.fold_threshold(gamma, beta, mean, var, k=k)
    """
    c = draw(st.integers(1, max_c))
    k = draw(st.integers(1, 40))
    num = st.floats(-3, 3, allow_nan=False, width=32)
    gamma = draw(hnp.arrays(np.float32, c, elements=num | st.sampled_from([0.0, -1.0, 1e-3, -1e-3])))
    beta = draw(hnp.arrays(np.float32, c, elements=num))
    mean = draw(hnp.arrays(np.float32, c, elements=st.integers(-k, k).map(float) | st.floats(-k, k, width=32)))
    var = draw(hnp.arrays(np.float32, c, elements=st.just(0.0) | st.floats(0, 9, width=32)))
    return k, gamma, beta, mean, var


@st.composite
def race_schedules(draw, min_workers: int = 2, max_workers: int = 3, max_updates: int = 3):
    """A Hogwild! interleaving ``(workers, schedule)``.

    ``schedule`` lists ``(worker, op)`` with op in "read", "begin", "end"; each worker does
    1..max_updates updates (read, begin, end in order) and the workers' steps interleave
    arbitrarily. The input of ``hogwild.replay_schedule`` and ``optim.races.lost_increments``.
    Example::

        @given(tst.race_schedules())
        def test_lost(drawn):
            workers, schedule = drawn
            assert races.lost_increments(schedule) >= 0
    """
    workers = draw(st.integers(min_workers, max_workers))
    remaining = {k: ["read", "begin", "end"] * draw(st.integers(1, max_updates)) for k in range(workers)}
    out = []
    while any(remaining.values()):
        k = draw(st.sampled_from(sorted(k for k, ops in remaining.items() if ops)))
        out.append((k, remaining[k].pop(0)))
    return workers, out


@st.composite
def csr_problems(draw, rows=None):
    """A CSR product problem ``(indptr, indices, data, X, A)``: A (M, K) dense float64 equals the CSR arrays.

    ``rows`` is a strategy for M (default 0..9); pass a wider one to reach larger row counts.

    Density 0..1, rows with shuffled (unsorted) columns, duplicate entries that must be
    summed, index dtypes int32/int64/uint32, K and N across SIMD block boundaries (63, 64,
    65, 129, ...). X: (K, N) float32. Example::

        @given(tst.csr_problems())
        def test_csr(problem):
            indptr, indices, data, X, A = problem
            np.testing.assert_allclose(kernels.csr_matmul(indptr, indices, data, X), A @ X, rtol=1e-4, atol=1e-4)
    """
    M = draw(st.integers(0, 9) if rows is None else rows)
    K = draw(st.integers(0, 40) | st.sampled_from([63, 64, 65, 129, 250]))
    N = draw(st.sampled_from([0, 1, 3, 7, 8, 9, 16, 31, 33, 64, 65, 70, 100, 130]))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    mask = rng.random((M, K)) < density
    values = rng.standard_normal((M, K)).astype(np.float32)
    shuffled = draw(st.booleans())
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
    """An int8 GEMM problem ``(A, B)``: A (M, K), B (K, N) int8, rich in -128, 127 and 0.

    Half of the draws keep B in [-127, 127] (symmetric weights). The exact answer is
    ``A.astype(np.int32) @ B.astype(np.int32)``. Example::

        @given(tst.int8_problems())
        def test_gemm(problem):
            A, B = problem
            np.testing.assert_array_equal(kernels.gemm_int8(A, B), A.astype(np.int32) @ B.astype(np.int32))
    """
    M = draw(st.integers(0, 9))
    K = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 7, 16, 33, 64, 129]))
    N = draw(st.integers(0, 40))
    A = draw(hnp.arrays(np.int8, (M, K), elements=INT8_EXTREMES))
    B = draw(hnp.arrays(np.int8, (K, N), elements=INT8_EXTREMES))
    if draw(st.booleans()):
        B = np.clip(B, -127, 127).astype(np.int8)
    return A, B


@st.composite
def sign_problems(draw):
    """A binary product problem ``(Xa, Xb, K)``: Xa (M, K), Xb (N, K) real or int, signs by ``x >= 0``.

    K crosses the 64-bit word boundaries (63, 64, 65, ..., 1000); one kind of draw mixes
    exact zeros (sign +1) with negatives. The exact answer is
    ``np.where(Xa >= 0, 1, -1) @ np.where(Xb >= 0, 1, -1).T``. Example::

        @given(tst.sign_problems())
        def test_xnor(problem):
            Xa, Xb, K = problem
            got = kernels.xnor_gemm(kernels.pack_bits(Xa), kernels.pack_bits(Xb), K)
    """
    M = draw(st.integers(0, 7))
    N = draw(st.integers(0, 7))
    K = draw(st.sampled_from([0, 1, 5, 63, 64, 65, 127, 128, 129, 255, 256, 257, 300, 1000]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "zeros", "ints"]))
    if kind == "normal":
        Xa, Xb = rng.standard_normal((M, K)), rng.standard_normal((N, K))
    elif kind == "zeros":
        Xa, Xb = rng.integers(-1, 1, (M, K)).astype(np.float32), np.zeros((N, K))
    else:
        Xa, Xb = rng.integers(-3, 3, (M, K)), rng.integers(-3, 3, (N, K)).astype(np.int8)
    return Xa, Xb, K
