"""Convolution and pooling: the six-loop reference pinned by hand, im2col held to it."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyapprox as ta
from tinyapprox.conv import avg_pool2d, col2im, conv2d, im2col, max_pool2d
from tinyapprox.testing import gradcheck
from tinyapprox.testing.strategies import conv_cases, pool_cases

pytestmark = pytest.mark.training

IMPLS = ["loop6d", "im2col"]


# ------------------------------------------------------------ the reference, pinned
@pytest.mark.parametrize("impl", IMPLS)
def test_hand_computed_single_channel_with_bias(impl):
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    out = conv2d(x, w, np.array([1.0]), impl=impl)
    # window (0,0): 0*1 + 1*2 + 3*3 + 4*4 = 27, then + bias 1
    np.testing.assert_array_equal(out.data, [[[[28.0, 38.0], [58.0, 68.0]]]])


@pytest.mark.parametrize("impl", IMPLS)
def test_hand_computed_stride_and_padding(impl):
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    out = conv2d(x, np.ones((1, 1, 2, 2)), stride=2, padding=1, impl=impl)
    # padded 5x5 image, windows at (0,0), (0,2), (2,0), (2,2): {0}, {1,2}, {3,6}, {4,5,7,8}
    np.testing.assert_array_equal(out.data, [[[[0.0, 3.0], [9.0, 24.0]]]])


@pytest.mark.parametrize("impl", IMPLS)
def test_hand_computed_sum_over_input_channels(impl):
    x = np.stack([np.arange(9.0).reshape(3, 3), np.full((3, 3), 10.0)])[None]
    w = np.zeros((1, 2, 2, 2))
    w[0, 0, 0, 0] = 1.0   # picks x0[y, x]
    w[0, 1, 1, 1] = 1.0   # picks x1[y+1, x+1] = 10
    np.testing.assert_array_equal(conv2d(x, w, impl=impl).data, [[[[10.0, 11.0], [13.0, 14.0]]]])


def _lecture_true_convolution(A, K):
    """B[x, y] += A[x-u, y-v] * K[u, v] over every (x, y) where all indices are valid or not ("full")."""
    H, W = A.shape
    kh, kw = K.shape
    B = np.zeros((H + kh - 1, W + kw - 1))
    for x in range(B.shape[0]):
        for y in range(B.shape[1]):
            for u in range(kh):
                for v in range(kw):
                    if 0 <= x - u < H and 0 <= y - v < W:
                        B[x, y] += A[x - u, y - v] * K[u, v]
    return B


def test_flipped_kernel_turns_cross_correlation_into_the_lectures_convolution():
    A = np.arange(9, dtype=np.float64).reshape(3, 3)
    K = np.array([[1.0, 2.0], [3.0, 4.0]])
    B = _lecture_true_convolution(A, K)
    # by hand: B[1, 1] = A[1,1]K[0,0] + A[1,0]K[0,1] + A[0,1]K[1,0] + A[0,0]K[1,1] = 4 + 6 + 3 + 0
    assert B[1, 1] == 13.0
    out = conv2d(A[None, None], K[::-1, ::-1].copy()[None, None], impl="loop6d").data[0, 0]
    assert out[0, 0] == 13.0
    np.testing.assert_array_equal(out, B[1:3, 1:3])                # the "valid" part
    unflipped = conv2d(A[None, None], K[None, None], impl="loop6d").data[0, 0]
    assert not np.array_equal(unflipped, out)                       # the flip matters


# ------------------------------------------------------------ im2col against the reference
def _run(impl, x, w, b, stride, padding, seed=0):
    X, Wt = ta.tensor(x, requires_grad=True), ta.tensor(w, requires_grad=True)
    B = None if b is None else ta.tensor(b, requires_grad=True)
    out = conv2d(X, Wt, B, stride=stride, padding=padding, impl=impl)
    g = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(g)
    return out.data, X.grad, Wt.grad, None if B is None else B.grad


@given(conv_cases())
def test_im2col_equals_loop6d_values_and_gradients(case):
    x, w, b, stride, padding = case
    ref = _run("loop6d", x, w, b, stride, padding)
    fast = _run("im2col", x, w, b, stride, padding)
    for name, r, f in zip(["out", "dx", "dw", "db"], ref, fast):
        if r is None:
            assert f is None
        else:
            np.testing.assert_allclose(f, r, rtol=1e-10, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("shape,kernel,stride,padding", [
    ((2, 1, 9, 11), (3, 2), 1, 0),      # one channel, long rows: gathered row by row
    ((2, 5, 5, 4), (2, 3), (1, 2), 1),  # many channels: gathered through a channels-last copy
    ((1, 2, 6, 7), (3, 3), 2, (0, 1)),  # stride 2
])
def test_im2col_layout_is_as_documented(shape, kernel, stride, padding):
    x = np.random.default_rng(0).standard_normal(shape)
    kh, kw = kernel
    (sh, sw) = (stride, stride) if np.ndim(stride) == 0 else stride
    (ph, pw) = (padding, padding) if np.ndim(padding) == 0 else padding
    N, C, H, W = shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    cols = im2col(x, kh, kw, stride, padding)
    assert cols.shape == (N * OH * OW, kh * kw * C)
    for n, oy, ox, u, v, c in np.ndindex(N, OH, OW, kh, kw, C):
        assert cols[(n * OH + oy) * OW + ox, (u * kw + v) * C + c] == xp[n, c, oy * sh + u, ox * sw + v]


def test_im2col_hand_computed():
    np.testing.assert_array_equal(im2col(np.arange(9).reshape(1, 1, 3, 3), 2, 2),
                                  [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]])


@given(conv_cases(max_side=7), st.integers(0, 2**31 - 1))
def test_col2im_is_the_adjoint_of_im2col(case, seed):
    x, w, _, stride, padding = case
    kh, kw = w.shape[2:]
    cols = im2col(x, kh, kw, stride, padding)
    c = np.random.default_rng(seed).standard_normal(cols.shape)
    lhs = float(np.sum(cols * c))
    rhs = float(np.sum(x * col2im(c, x.shape, kh, kw, stride, padding)))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


def test_col2im_counts_overlaps():
    ones = np.ones((1, 1, 3, 3))
    counts = col2im(np.ones_like(im2col(ones, 2, 2)), ones.shape, 2, 2)
    np.testing.assert_array_equal(counts[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), ((1, 2), (0, 1))])
def test_conv2d_gradcheck(impl, stride, padding):
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((3, 2, 2, 3)), rng.standard_normal(3)
    gradcheck(lambda x, w, b: conv2d(x, w, b, stride=stride, padding=padding, impl=impl), [x, w, b],
              name=f"conv2d[{impl}]")


def test_im2col_keeps_float32_and_handles_views():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((3, 4, 9, 10)).astype(np.float32)
    x = base[:, 1:3, ::2, 1:]                           # non-contiguous view
    w = rng.standard_normal((5, 2, 3, 3)).astype(np.float32)
    out = conv2d(x, w, padding=1)
    assert out.dtype == np.float32 and out.shape == (3, 5, 5, 9)
    ref = conv2d(x.astype(np.float64), w.astype(np.float64), padding=1, impl="loop6d")
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-4, atol=1e-4)


def test_empty_batch():
    out = conv2d(ta.tensor(np.zeros((0, 2, 5, 5)), requires_grad=True), np.ones((3, 2, 3, 3)))
    assert out.shape == (0, 3, 3, 3)


@pytest.mark.parametrize("x_shape,w_shape,kwargs,match", [
    ((1, 3, 5, 5), (2, 2, 3, 3), {}, r"conv2d: input has 3 channels but the kernels expect 2"),
    ((1, 1, 2, 2), (1, 1, 3, 3), {}, r"conv2d: kernel \(3, 3\) is larger than the padded input \(2, 2\)"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"stride": 0}, r"conv2d: stride must be >= 1, got 0"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"padding": -1}, r"conv2d: padding must be >= 0"),
    ((1, 5, 5), (1, 1, 3, 3), {}, r"conv2d: expected x \(N, C, H, W\) with 4 dimensions, got shape \(1, 5, 5\)"),
    ((1, 1, 5, 5), (1, 3, 3), {}, r"conv2d: expected w \(O, C, kh, kw\) with 4 dimensions, got shape \(1, 3, 3\)"),
    ((1, 1, 5, 5), (2, 1, 3, 3), {"b": np.zeros(3)}, r"conv2d: expected bias of shape \(2,\), got \(3,\)"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"impl": "fft"}, r"conv2d: impl must be one of"),
])
def test_conv2d_rejects_bad_arguments(x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        conv2d(np.zeros(x_shape), np.zeros(w_shape), **kwargs)


def test_conv2d_rejects_non_integer_stride_and_integer_input():
    with pytest.raises(TypeError, match="conv2d: stride must be an int or a pair of ints"):
        conv2d(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)), stride=1.5)
    with pytest.raises(TypeError, match="conv2d: expected a floating-point x"):
        conv2d(np.zeros((1, 1, 5, 5), dtype=np.int64), np.zeros((1, 1, 3, 3)))


def test_col2im_rejects_wrong_cols_shape():
    with pytest.raises(ValueError, match=r"col2im: expected cols of shape \(4, 4\)"):
        col2im(np.zeros((4, 5)), (1, 1, 3, 3), 2, 2)


# ------------------------------------------------------------ pooling
def _pool_reference(x, k, s, p, kind):
    """Plain loops; max pooling records which input (first maximum) each output came from."""
    N, C, H, W = x.shape
    fill = -np.inf if kind == "max" else 0.0
    xp = np.full((N, C, H + 2 * p, W + 2 * p), fill)
    xp[:, :, p:p + H, p:p + W] = x
    OH, OW = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    out = np.zeros((N, C, OH, OW))
    where = {}
    for n, c, i, j in np.ndindex(N, C, OH, OW):
        win = xp[n, c, i * s:i * s + k, j * s:j * s + k]
        if kind == "max":
            u, v = np.unravel_index(np.argmax(win), win.shape)   # argmax: the first maximum
            out[n, c, i, j] = win[u, v]
            where[n, c, i, j] = (i * s + u - p, j * s + v - p)
        else:
            out[n, c, i, j] = win.sum() / (k * k)
    return out, where


def _pool_grad_reference(x, g, k, s, p, kind, where):
    dx = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * p, x.shape[3] + 2 * p))
    for n, c, i, j in np.ndindex(*g.shape):
        if kind == "max":
            y, z = where[n, c, i, j]
            dx[n, c, y + p, z + p] += g[n, c, i, j]
        else:
            dx[n, c, i * s:i * s + k, j * s:j * s + k] += g[n, c, i, j] / (k * k)
    return dx[:, :, p:p + x.shape[2], p:p + x.shape[3]]


@pytest.mark.parametrize("kind", ["max", "avg"])
@given(case=pool_cases())
def test_pooling_matches_loop_reference(kind, case):
    x, k, s, p = case
    X = ta.tensor(x, requires_grad=True)
    out = (max_pool2d if kind == "max" else avg_pool2d)(X, k, s, p)
    ref, where = _pool_reference(x, k, s, p, kind)
    np.testing.assert_allclose(out.data, ref, rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(g)
    np.testing.assert_allclose(X.grad, _pool_grad_reference(x, g, k, s, p, kind, where), rtol=1e-12, atol=1e-12)


def test_max_pool_tie_sends_gradient_to_first_maximum():
    x = ta.tensor(np.array([[[[1.0, 3.0], [3.0, 3.0]]]]), requires_grad=True)
    max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [[[[0.0, 1.0], [0.0, 0.0]]]])


def test_pooling_hand_computed():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(max_pool2d(x, 2).data, [[[[5, 7], [13, 15]]]])
    np.testing.assert_array_equal(avg_pool2d(x, 2).data, [[[[2.5, 4.5], [10.5, 12.5]]]])
    # 3x3 windows with stride 1 and -inf padding 1: the corner window sees {0, 1, 4, 5}
    assert max_pool2d(x, 3, stride=1, padding=1).data[0, 0, 0, 0] == 5


@pytest.mark.parametrize("op", [max_pool2d, avg_pool2d])
def test_pooling_gradcheck(op):
    x = np.random.default_rng(3).standard_normal((2, 2, 5, 6))
    gradcheck(lambda x: op(x, 2, 1, 1), [x], name=op.__name__)
    gradcheck(lambda x: op(x, (3, 2), (2, 3)), [x], name=op.__name__)


@pytest.mark.parametrize("kwargs,match", [
    ({"x": np.zeros((1, 4, 4)), "kernel_size": 2}, r"max_pool2d: expected x \(N, C, H, W\) with 4 dimensions"),
    ({"x": np.zeros((1, 1, 4, 4)), "kernel_size": 5}, r"max_pool2d: kernel \(5, 5\) is larger than the padded"),
    ({"x": np.zeros((1, 1, 4, 4)), "kernel_size": 2, "padding": 2}, r"max_pool2d: padding must be at most half"),
    ({"x": np.zeros((1, 1, 4, 4)), "kernel_size": 2, "stride": 0}, r"max_pool2d: stride must be >= 1"),
])
def test_pooling_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        max_pool2d(**kwargs)
