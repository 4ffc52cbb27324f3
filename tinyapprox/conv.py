"""Convolution and pooling, read two ways: six nested loops, and im2col + one matrix product.

Shapes follow the NCHW convention of the rest of the engine:

* ``x``: (N, C, H, W) input maps, float32 (float64 for gradchecks);
* ``w``: (O, C, kh, kw) kernels, one (C, kh, kw) stack per output map;
* ``b``: (O,) biases or ``None``;
* output: (N, O, OH, OW) with ``OH = (H + 2*ph - kh) // sh + 1`` (same for the width).

``conv2d(..., impl="loop6d")`` is the reference: the literal loops of the lecture, slow and
obviously right. ``impl="im2col"`` is the fast path: it copies every receptive field into
one row of a patch matrix (``im2col``) so that the whole convolution becomes a single
matrix product handled by BLAS; its backward scatters the patch gradients back with
``col2im``. Both are ``Function``s, differentiable in ``x``, ``w`` and ``b``, and the
tests hold them equal on random shapes, strides and paddings.

Like every framework, the engine computes a *cross-correlation* (the kernel is not
flipped); ``Conv2dLoop6d`` explains how that relates to the lecture's true convolution.

Pooling (``max_pool2d``, ``avg_pool2d``) lives here too: it walks the same windows.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .tensor import Function, Tensor

__all__ = ["conv2d", "im2col", "col2im", "conv_output_size", "max_pool2d", "avg_pool2d",
           "Conv2dLoop6d", "Conv2dIm2col", "MaxPool2dOp", "AvgPool2dOp"]


# ------------------------------------------------------------------ argument checking
def _pair(op: str, name: str, value, minimum: int) -> tuple:
    """An int or a pair of ints as a validated (rows, cols) tuple."""
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a window sliding over ``size`` values: ``(size + 2p - k) // s + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def _as_4d(op: str, x, what: str = "x (N, C, H, W)", floating: bool = True) -> np.ndarray:
    arr = np.asarray(x.data if isinstance(x, Tensor) else x)
    if arr.ndim != 4:
        raise ValueError(f"{op}: expected {what} with 4 dimensions, got shape {arr.shape}")
    if floating and arr.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point {what.split()[0]}, got dtype {arr.dtype}")
    return arr


def _check_windows(op: str, shape, kh, kw, stride, padding):
    """Raise unless a (kh, kw) window fits the padded (H, W) of ``shape``; return (OH, OW)."""
    H, W = shape[2], shape[3]
    Hp, Wp = H + 2 * padding[0], W + 2 * padding[1]
    if kh > Hp or kw > Wp:
        raise ValueError(f"{op}: kernel {(kh, kw)} is larger than the padded input {(Hp, Wp)} "
                         f"(input {(H, W)}, padding {padding})")
    return (conv_output_size(H, kh, stride[0], padding[0]),
            conv_output_size(W, kw, stride[1], padding[1]))


def _pad(x: np.ndarray, ph: int, pw: int, value=0.0) -> np.ndarray:
    """Copy (N, C, H, W) into a (N, C, H + 2ph, W + 2pw) array filled with ``value``."""
    if ph == 0 and pw == 0:
        return x
    N, C, H, W = x.shape
    out = np.full((N, C, H + 2 * ph, W + 2 * pw), value, dtype=x.dtype)
    out[:, :, ph:ph + H, pw:pw + W] = x
    return out


# ------------------------------------------------------------------ reference: 6 loops
class Conv2dLoop6d(Function):
    """Convolution as the lecture's six nested loops (plus one over the batch).

    The lecture writes a *true* convolution of input maps ``A`` with kernels ``K``::

        for each output map j, input map k, output pixel (x, y), kernel element (u, v):
            B[x, y, j] += A[x - u, y - v, k] * K[u, v, k, j]

    The kernel is walked backwards over the input (``x - u``). Frameworks, and this
    engine, compute the *cross-correlation* instead, walking it forwards::

            out[n, j, x, y] += xp[n, k, x*sh + u, y*sw + v] * w[j, k, u, v]

    (``xp`` is the zero-padded input). The two differ only by flipping the kernel:
    with ``w[j, k, u, v] = K[kh-1-u, kw-1-v, k, j]``, stride 1 and no padding,
    ``out[n, j, x, y] == B[x + kh-1, y + kw-1, j]`` (the lecture's "valid" outputs, whose
    index counts from the kernel's far corner). Since the kernel is learned, the flip
    is just a relabelling of its entries: a network trained either way is equally good.

    Forward: x (N, C, H, W), w (O, C, kh, kw), b (O,) or None -> (N, O, OH, OW).
    Backward: the same loops, sending ``g[n, j, x, y]`` back along each product.
    """

    @staticmethod
    def forward(ctx, x, w, b, stride=(1, 1), padding=(0, 0)):
        (sh, sw), (ph, pw) = stride, padding
        A = _pad(x, ph, pw)
        N, C, Hp, Wp = A.shape
        O, _, kh, kw = w.shape
        OH, OW = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
        B = np.zeros((N, O, OH, OW), dtype=np.result_type(x, w))
        for n in range(N):
            for j in range(O):                      # output map
                for k in range(C):                  # input map
                    for x_ in range(OH):            # output pixel row
                        for y in range(OW):         # output pixel column
                            for u in range(kh):     # kernel row
                                for v in range(kw):  # kernel column
                                    B[n, j, x_, y] += A[n, k, x_ * sh + u, y * sw + v] * w[j, k, u, v]
                if b is not None:
                    B[n, j] += b[j]
        ctx.save_for_backward(A, w)
        ctx.geometry = (x.shape, stride, padding, b is not None)
        return B

    @staticmethod
    def backward(ctx, g):
        A, w = ctx.saved
        x_shape, (sh, sw), (ph, pw), has_bias = ctx.geometry
        N, C = A.shape[:2]
        O, _, kh, kw = w.shape
        OH, OW = g.shape[2:]
        dA = np.zeros_like(A)
        dw = np.zeros_like(w)
        for n in range(N):
            for j in range(O):
                for k in range(C):
                    for x_ in range(OH):
                        for y in range(OW):
                            for u in range(kh):
                                for v in range(kw):
                                    dA[n, k, x_ * sh + u, y * sw + v] += g[n, j, x_, y] * w[j, k, u, v]
                                    dw[j, k, u, v] += g[n, j, x_, y] * A[n, k, x_ * sh + u, y * sw + v]
        H, W = x_shape[2:]
        dx = dA[:, :, ph:ph + H, pw:pw + W].copy()
        db = g.sum(axis=(0, 2, 3)) if has_bias else None
        return dx, dw, db


# ------------------------------------------------------------------ fast: im2col
def _im2col(x, kh, kw, stride, padding, OH, OW):
    """Patch matrix (N*OH*OW, kh*kw*C) of validated arguments; see ``im2col``."""
    (sh, sw), (ph, pw) = stride, padding
    N, C, H, W = x.shape
    K = kh * kw * C
    # A strided *view* names every window without copying; the reshape then copies once.
    # Copies are fastest along long contiguous runs: along an output row (OW values) when
    # the stride is 1 and rows are long, else along a (kw, C) strip of a channels-last copy.
    if sw == 1 and OW > kw * C:
        xp = _pad(x, ph, pw)
        sN, sC, sH, sW = xp.strides
        view = as_strided(xp, (kh, kw, C, N, OH, OW), (sH, sW, sC, sN, sh * sH, sW), writeable=False)
        return view.reshape(K, N * OH * OW).T
    return _im2col_nhwc(x.transpose(0, 2, 3, 1), kh, kw, stride, padding, OH, OW)


def _im2col_nhwc(x, kh, kw, stride, padding, OH, OW):
    """C-contiguous patch matrix (N*OH*OW, kh*kw*C) of a channels-last (N, H, W, C) array."""
    (sh, sw), (ph, pw) = stride, padding
    N, H, W, C = x.shape
    if ph or pw or not x.flags.c_contiguous:
        xh = np.zeros((N, H + 2 * ph, W + 2 * pw, C), dtype=x.dtype)
        xh[:, ph:ph + H, pw:pw + W, :] = x
    else:
        xh = x
    sN, sH, sW, sC = xh.strides
    view = as_strided(xh, (N, OH, OW, kh, kw, C), (sN, sh * sH, sw * sW, sH, sW, sC), writeable=False)
    return view.reshape(N * OH * OW, kh * kw * C)


def im2col(x, kh: int, kw: int, stride=1, padding=0, channels_last: bool = False) -> np.ndarray:
    """Copy every (kh, kw) receptive field of ``x`` into one row of a patch matrix.

    Args:
        x: (N, C, H, W) array or Tensor; with ``channels_last`` an (N, H, W, C) array
            (how the lowered inference layers keep their activations).
        kh, kw: window size; stride, padding: int or (rows, cols) pair (zero padding).

    Returns:
        (N*OH*OW, kh*kw*C) array, same dtype as ``x``. Row ``(n*OH + oy)*OW + ox`` holds
        the window whose top-left corner is padded pixel ``(oy*sh, ox*sw)`` of image n;
        column ``(u*kw + v)*C + c`` holds its channel c at kernel offset (u, v). With the
        kernels flattened in the same (u, v, c) order,
        ``wk = w.transpose(0, 2, 3, 1).reshape(O, -1)``, the convolution is the single
        product ``im2col(x) @ wk.T`` of shape (N*OH*OW, O). The array may be C- or
        Fortran-ordered (whichever was faster to gather); treat it as read-only. With
        ``channels_last`` it is always C-contiguous: the row-major operand the fused
        inference kernels take, gathered without a transpose.

    Example: the four 2x2 windows of a 3x3 image, one per row::

        >>> im2col(np.arange(9).reshape(1, 1, 3, 3), 2, 2)
        array([[0, 1, 3, 4],
               [1, 2, 4, 5],
               [3, 4, 6, 7],
               [4, 5, 7, 8]])

    Raises:
        ValueError: ``x`` not 4-D, the window larger than the padded input, stride < 1
            or padding < 0.
    """
    x = _as_4d("im2col", x, what="x (N, H, W, C)" if channels_last else "x (N, C, H, W)", floating=False)
    stride, padding = _pair("im2col", "stride", stride, 1), _pair("im2col", "padding", padding, 0)
    kh, kw = _pair("im2col", "kernel size", (kh, kw), 1)
    if channels_last:
        n, h, w, c = x.shape
        OH, OW = _check_windows("im2col", (n, c, h, w), kh, kw, stride, padding)
        return _im2col_nhwc(x, kh, kw, stride, padding, OH, OW)
    OH, OW = _check_windows("im2col", x.shape, kh, kw, stride, padding)
    return _im2col(x, kh, kw, stride, padding, OH, OW)


def _col2im(rows, x_shape, stride, padding):
    """Sum patch gradients into (N, C, H, W), one kernel row at a time.

    ``rows`` yields, for each kernel row u, an array (kw, N, OH, OW, C) (any strides)
    holding the gradient of every patch entry at offsets (u, 0..kw-1). Each offset is one
    strided slice-add: every output pixel's gradient for offset (u, v) lands on input
    pixel (oy*sh + u, ox*sw + v). kh*kw vectorized adds replace the scattered
    ``np.add.at`` a pixel-by-pixel version would need. Accumulation happens in a
    channels-last buffer so that each add moves contiguous runs of OW*C values.
    """
    (sh, sw), (ph, pw) = stride, padding
    N, C, H, W = x_shape
    dxh = None
    for u, row in enumerate(rows):
        kw, _, OH, OW, _ = row.shape
        if dxh is None:
            dxh = np.zeros((N, H + 2 * ph, W + 2 * pw, C), dtype=row.dtype)
        for v in range(kw):
            dxh[:, u:u + sh * (OH - 1) + 1:sh, v:v + sw * (OW - 1) + 1:sw, :] += row[v]
    return np.ascontiguousarray(dxh[:, ph:ph + H, pw:pw + W, :].transpose(0, 3, 1, 2))


def col2im(cols, x_shape, kh: int, kw: int, stride=1, padding=0) -> np.ndarray:
    """The adjoint of ``im2col``: add each patch-matrix entry back onto its input pixel.

    Args:
        cols: (N*OH*OW, kh*kw*C) array laid out as ``im2col`` returns it.
        x_shape: (N, C, H, W) of the image the patches came from.

    Returns:
        (N, C, H, W) array. A pixel covered by several windows receives the sum of its
        entries, so ``<im2col(x), c> == <x, col2im(c)>`` for all x, c: exactly the
        gradient of ``im2col``.

    Raises:
        ValueError: ``cols`` has the wrong shape for ``x_shape`` and the window geometry.
    """
    x_shape = tuple(int(s) for s in x_shape)
    if len(x_shape) != 4:
        raise ValueError(f"col2im: expected x_shape (N, C, H, W), got {x_shape}")
    stride, padding = _pair("col2im", "stride", stride, 1), _pair("col2im", "padding", padding, 0)
    kh, kw = _pair("col2im", "kernel size", (kh, kw), 1)
    OH, OW = _check_windows("col2im", x_shape, kh, kw, stride, padding)
    N, C = x_shape[:2]
    cols = np.asarray(cols)
    if cols.shape != (N * OH * OW, kh * kw * C):
        raise ValueError(f"col2im: expected cols of shape {(N * OH * OW, kh * kw * C)} for x_shape {x_shape}, "
                         f"kernel {(kh, kw)}, stride {stride}, padding {padding}; got {cols.shape}")
    d6 = cols.reshape(N, OH, OW, kh, kw, C).transpose(3, 4, 0, 1, 2, 5)
    return _col2im(iter(d6), x_shape, stride, padding)


class Conv2dIm2col(Function):
    """Convolution as one matrix product of the patch matrix and the flattened kernels.

    Forward: ``out = wk @ im2col(x).T`` with ``wk`` (O, kh*kw*C), giving (O, N*OH*OW),
    which is reordered to (N, O, OH, OW). Backward, with ``g2`` the output gradient as
    (O, N*OH*OW):

    * ``dw = g2 @ cols`` (then back to (O, C, kh, kw)) and ``db = g2.sum(1)``;
    * ``dx``: patch gradients ``g2.T @ wk``, scattered back by ``col2im``. They are
      computed one kernel row at a time, as (kw, N*OH*OW, C) blocks: each block is
      contiguous for ``col2im``'s adds and small enough to stay in cache, and no
      (N*OH*OW, kh*kw*C) temporary is made (16 MB per LeNet-5 batch, whose fresh pages
      measurably slowed every training step).
    """

    @staticmethod
    def forward(ctx, x, w, b, stride=(1, 1), padding=(0, 0)):
        dtype = np.result_type(x, w)
        x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
        N, C, H, W = x.shape
        O, _, kh, kw = w.shape
        OH, OW = _check_windows("conv2d", x.shape, kh, kw, stride, padding)
        cols = _im2col(x, kh, kw, stride, padding, OH, OW)
        wk = w.transpose(0, 2, 3, 1).reshape(O, kh * kw * C)
        out = wk @ cols.T
        if b is not None:
            out += b.astype(dtype, copy=False)[:, None]
        ctx.save_for_backward(cols, w)
        ctx.geometry = (x.shape, stride, padding, b is not None)
        return np.ascontiguousarray(out.reshape(O, N, OH, OW).transpose(1, 0, 2, 3))

    @staticmethod
    def backward(ctx, g):
        cols, w = ctx.saved
        x_shape, stride, padding, has_bias = ctx.geometry
        N, C = x_shape[:2]
        O, _, kh, kw = w.shape
        OH, OW = g.shape[2:]
        g2 = g.transpose(1, 0, 2, 3).reshape(O, N * OH * OW)
        dx = dw = db = None
        if ctx.needs_input_grad[1]:
            dw = np.ascontiguousarray((g2 @ cols).reshape(O, kh, kw, C).transpose(0, 3, 1, 2))
        if has_bias and ctx.needs_input_grad[2]:
            db = g2.sum(axis=1)
        if ctx.needs_input_grad[0]:
            gh = g.transpose(0, 2, 3, 1).reshape(N * OH * OW, O)
            w_uv = np.ascontiguousarray(w.transpose(2, 3, 0, 1))            # (kh, kw, O, C)
            rows = (np.matmul(gh, w_uv[u]).reshape(kw, N, OH, OW, C) for u in range(kh))
            dx = _col2im(rows, x_shape, stride, padding)
        return dx, dw, db


_CONV_IMPLS = {"im2col": Conv2dIm2col, "loop6d": Conv2dLoop6d}


def conv2d(x, w, b=None, stride=1, padding=0, impl: str = "im2col") -> Tensor:
    """2-D cross-correlation of a batch of images with a bank of kernels, plus bias.

    ``out[n, j, y, x] = b[j] + sum_{c,u,v} xp[n, c, y*sh + u, x*sw + v] * w[j, c, u, v]``
    with ``xp`` the input zero-padded by ``padding`` on each side.

    Args:
        x: (N, C, H, W) Tensor or array (float32; float64 for gradchecks).
        w: (O, C, kh, kw) kernels; b: (O,) biases or None.
        stride: int or (sh, sw) >= 1; padding: int or (ph, pw) >= 0 (zeros).
        impl: "im2col" (fast, one matrix product) or "loop6d" (the lecture's loops,
            for checking and teaching; only for tiny inputs).

    Returns:
        (N, O, OH, OW) Tensor, ``OH = (H + 2*ph - kh) // sh + 1``, likewise ``OW``.

    Raises:
        ValueError: non-4-D x or w, channel mismatch, kernel larger than the padded input,
            bias of the wrong shape, stride < 1, padding < 0, unknown ``impl``.
        TypeError: non-floating inputs, or a stride / padding that is not an int or pair.
    """
    if impl not in _CONV_IMPLS:
        raise ValueError(f"conv2d: impl must be one of {sorted(_CONV_IMPLS)}, got {impl!r}")
    xa = _as_4d("conv2d", x)
    wa = _as_4d("conv2d", w, "w (O, C, kh, kw)")
    if wa.shape[1] != xa.shape[1]:
        raise ValueError(f"conv2d: input has {xa.shape[1]} channels but the kernels expect {wa.shape[1]} "
                         f"(x shape {xa.shape}, w shape {wa.shape})")
    if b is not None:
        bshape = np.shape(b.data if isinstance(b, Tensor) else b)
        if bshape != (wa.shape[0],):
            raise ValueError(f"conv2d: expected bias of shape ({wa.shape[0]},), got {bshape}")
    stride = _pair("conv2d", "stride", stride, 1)
    padding = _pair("conv2d", "padding", padding, 0)
    _check_windows("conv2d", xa.shape, wa.shape[2], wa.shape[3], stride, padding)
    return _CONV_IMPLS[impl].apply(x, w, b, stride=stride, padding=padding)


# ------------------------------------------------------------------ pooling
def _offset_slices(kh, kw, stride, OH, OW):
    """For each kernel offset (u, v), the slices picking that element of every window."""
    sh, sw = stride
    return [(slice(None), slice(None), slice(u, u + sh * (OH - 1) + 1, sh), slice(v, v + sw * (OW - 1) + 1, sw))
            for u in range(kh) for v in range(kw)]


class MaxPool2dOp(Function):
    """Maximum over each window. x (N, C, H, W) -> (N, C, OH, OW).

    Padding uses -inf, so padded cells never win. The gradient goes to one input per
    window: the *first* maximum in row-major window order when several tie (a
    subgradient; frameworks make the same choice). NaN inputs propagate to the output.
    """

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        kh, kw = kernel
        xp = _pad(x, padding[0], padding[1], value=-np.inf)
        OH, OW = (xp.shape[2] - kh) // stride[0] + 1, (xp.shape[3] - kw) // stride[1] + 1
        slices = _offset_slices(kh, kw, stride, OH, OW)
        out = xp[slices[0]].copy()
        arg = np.zeros(out.shape, dtype=np.uint8 if len(slices) <= 256 else np.int32)
        better, step = np.empty(out.shape, dtype=bool), np.empty_like(arg)
        for i, sl in enumerate(slices[1:], start=1):
            cand = xp[sl]
            np.greater(cand, out, out=better)       # strictly greater: earlier maxima keep ties
            np.multiply(better, arg.dtype.type(i), out=step)
            np.maximum(arg, step, out=arg)          # i exceeds every earlier index: arg = i where better
            np.maximum(out, cand, out=out)
        ctx.save_for_backward(arg)
        ctx.geometry = (x.shape, xp.shape, slices, padding)
        ctx.disjoint = stride[0] >= kh and stride[1] >= kw
        return out

    @staticmethod
    def backward(ctx, g):
        arg, = ctx.saved
        x_shape, xp_shape, slices, (ph, pw) = ctx.geometry
        dxp = np.zeros(xp_shape, dtype=g.dtype)
        for i, sl in enumerate(slices):
            if ctx.disjoint:       # windows do not overlap: each input cell is written once
                np.multiply(g, arg == i, out=dxp[sl])
            else:
                dxp[sl] += g * (arg == i)
        H, W = x_shape[2:]
        return dxp[:, :, ph:ph + H, pw:pw + W] if ph or pw else dxp


class AvgPool2dOp(Function):
    """Mean over each window. x (N, C, H, W) -> (N, C, OH, OW).

    Padded zeros count in the mean (every window divides by kh*kw); each input receives
    ``g / (kh*kw)`` from every window that covers it.
    """

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        kh, kw = kernel
        xp = _pad(x, padding[0], padding[1])
        OH, OW = (xp.shape[2] - kh) // stride[0] + 1, (xp.shape[3] - kw) // stride[1] + 1
        slices = _offset_slices(kh, kw, stride, OH, OW)
        out = xp[slices[0]].copy()
        for sl in slices[1:]:
            out += xp[sl]
        out *= out.dtype.type(1.0 / (kh * kw))
        ctx.geometry = (x.shape, xp.shape, slices, padding)
        return out

    @staticmethod
    def backward(ctx, g):
        x_shape, xp_shape, slices, (ph, pw) = ctx.geometry
        share = g * g.dtype.type(1.0 / len(slices))
        dxp = np.zeros(xp_shape, dtype=g.dtype)
        for sl in slices:
            dxp[sl] += share
        H, W = x_shape[2:]
        return dxp[:, :, ph:ph + H, pw:pw + W] if ph or pw else dxp


def _pool_args(op, x, kernel_size, stride, padding):
    xa = _as_4d(op, x)
    kernel = _pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else _pair(op, "stride", stride, 1)
    padding = _pair(op, "padding", padding, 0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding must be at most half the kernel size {kernel}, got {padding}")
    _check_windows(op, xa.shape, kernel[0], kernel[1], stride, padding)
    return dict(kernel=kernel, stride=stride, padding=padding)


def max_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    """Max pooling. x (N, C, H, W) -> (N, C, OH, OW), ``OH = (H + 2p - k) // s + 1``.

    Args:
        kernel_size: int or pair; stride: int or pair, defaults to ``kernel_size``
            (non-overlapping windows); padding: int or pair, at most half the kernel.

    Ties send the gradient to the first maximum of the window (row-major order).

    Raises:
        ValueError: x not 4-D, window larger than the padded input, bad stride/padding.
    """
    return MaxPool2dOp.apply(x, **_pool_args("max_pool2d", x, kernel_size, stride, padding))


def avg_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    """Average pooling (padded zeros included in the mean). Arguments as ``max_pool2d``."""
    return AvgPool2dOp.apply(x, **_pool_args("avg_pool2d", x, kernel_size, stride, padding))
