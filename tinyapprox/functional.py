"""Differentiable operations, each a ``Function`` with a short forward and backward.

Shapes follow NumPy: every binary op broadcasts, and its backward sums the gradient back
to each input's own shape (``unbroadcast``). Each public function at the bottom of a
section wraps ``SomeOp.apply`` so it reads like NumPy: ``F.relu(x)``, ``F.sum(x, axis=1)``.

Layer-level ops (linear, pooling, batch norm, dropout) and the losses live in the second
half of this file; convolution lives in ``conv.py`` and is re-exported here.
"""
from __future__ import annotations

import numpy as np

from .tensor import Function, Tensor, no_grad  # noqa: F401  (no_grad re-exported for convenience)


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` over the axes NumPy broadcasting added or stretched to reach ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


def _normalize_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    return tuple(a % ndim if ndim else a for a in axes)


# ----------------------------------------------------------------- elementwise binary
class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (np.shape(a), np.shape(b))
        return np.add(a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(g, sb)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (np.shape(a), np.shape(b))
        return np.subtract(a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(-g, sb)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.multiply(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        ga = unbroadcast(g * b, np.shape(a)) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(g * a, np.shape(b)) if ctx.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.divide(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        ga = unbroadcast(g / b, np.shape(a)) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(-g * a / (b * b), np.shape(b)) if ctx.needs_input_grad[1] else None
        return ga, gb


class Pow(Function):
    """a ** b; the gradient for b uses log(a) and is only formed when b needs it."""

    @staticmethod
    def forward(ctx, a, b):
        out = np.power(a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(g * b * np.power(a, b - 1), np.shape(a))
        if ctx.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = unbroadcast(g * out * np.where(a > 0, np.log(np.where(a > 0, a, 1)), 0), np.shape(b))
        return ga, gb


class Maximum(Function):
    """Elementwise max; on ties the gradient is split equally between both inputs."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        wa = (a > b) + 0.5 * (a == b)
        return unbroadcast(g * wa, np.shape(a)), unbroadcast(g * (1 - wa), np.shape(b))


class Minimum(Function):
    """Elementwise min; on ties the gradient is split equally between both inputs."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        wa = (a < b) + 0.5 * (a == b)
        return unbroadcast(g * wa, np.shape(a)), unbroadcast(g * (1 - wa), np.shape(b))


def add(a, b): return Add.apply(a, b)
def sub(a, b): return Sub.apply(a, b)
def mul(a, b): return Mul.apply(a, b)
def div(a, b): return Div.apply(a, b)
def pow(a, b): return Pow.apply(a, b)  # noqa: A001
def maximum(a, b): return Maximum.apply(a, b)
def minimum(a, b): return Minimum.apply(a, b)


# ------------------------------------------------------------------ elementwise unary
class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return np.negative(a)

    @staticmethod
    def backward(ctx, g):
        return -g


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved[0]


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, g):
        return g / ctx.saved[0]


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return g / (2 * ctx.saved[0])


class Abs(Function):
    """|x|; the gradient at 0 is taken as 0 (the subgradient's midpoint)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx, g):
        return g * np.sign(ctx.saved[0])


class ReLU(Function):
    """max(x, 0); the gradient at exactly 0 is 0."""

    @staticmethod
    def forward(ctx, a):
        out = np.maximum(a, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return g * (ctx.saved[0] > 0)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        out = 0.5 * (1 + np.tanh(0.5 * np.asarray(a)))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        s = ctx.saved[0]
        return g * s * (1 - s)


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        t = ctx.saved[0]
        return g * (1 - t * t)


class Clip(Function):
    """Clamp to [low, high]; the gradient passes where low <= x <= high, else 0."""

    @staticmethod
    def forward(ctx, a, low, high):
        ctx.save_for_backward(a, low, high)
        return np.clip(a, low, high)

    @staticmethod
    def backward(ctx, g):
        a, low, high = ctx.saved
        inside = np.ones(np.shape(a), dtype=bool)
        if low is not None:
            inside &= a >= low
        if high is not None:
            inside &= a <= high
        return g * inside, None, None


def neg(a): return Neg.apply(a)
def exp(a): return Exp.apply(a)
def log(a): return Log.apply(a)
def sqrt(a): return Sqrt.apply(a)
def abs(a): return Abs.apply(a)  # noqa: A001
def relu(a): return ReLU.apply(a)
def sigmoid(a): return Sigmoid.apply(a)
def tanh(a): return Tanh.apply(a)


def clip(a, low=None, high=None):
    """Clamp ``a`` to [low, high] (either bound may be None)."""
    if low is not None and high is not None and low > high:
        raise ValueError(f"clip: expected low <= high, got low={low}, high={high}")
    return Clip.apply(a, low, high)


def hardtanh(a, low=-1.0, high=1.0):
    """clip(a, -1, 1): the activation binarized networks train through."""
    return clip(a, low, high)


# ---------------------------------------------------------------------------- matmul
class MatMul(Function):
    """NumPy ``@`` for 1-D, 2-D and batched operands (batch dims broadcast)."""

    @staticmethod
    def forward(ctx, a, b):
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands must have at least 1 dimension, got {a.shape} @ {b.shape}")
        ka = a.shape[-1]
        kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if ka != kb:
            raise ValueError(f"matmul: inner dimensions differ, expected a.shape[-1] == b.shape[-2], got {a.shape} @ {b.shape}")
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = np.asarray(g)
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            gb = unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(b.shape)
        return ga, gb


def matmul(a, b): return MatMul.apply(a, b)


# ------------------------------------------------------------------------ reductions
class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        a = np.asarray(a)
        ctx.shape = a.shape
        ctx.axes = _normalize_axis(axis, a.ndim)
        ctx.keepdims = keepdims
        return np.sum(a, axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        if not ctx.keepdims:
            g = np.expand_dims(g, ctx.axes)
        return np.broadcast_to(g, ctx.shape).copy()


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        a = np.asarray(a)
        ctx.shape = a.shape
        ctx.axes = _normalize_axis(axis, a.ndim)
        ctx.keepdims = keepdims
        ctx.count = int(np.prod([a.shape[i] for i in ctx.axes]))
        return np.mean(a, axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        if not ctx.keepdims:
            g = np.expand_dims(g, ctx.axes)
        return np.broadcast_to(g / max(ctx.count, 1), ctx.shape).copy()


class _Extremum(Function):
    """max / min over axes; the gradient is shared equally among tied extreme entries."""

    reduce = None

    @classmethod
    def forward(cls, ctx, a, axis=None, keepdims=False):
        a = np.asarray(a)
        axes = _normalize_axis(axis, a.ndim)
        if a.size == 0:
            raise ValueError(f"{cls.__name__.lower()}: cannot reduce an empty array of shape {a.shape}")
        out = cls.reduce(a, axis=axes, keepdims=True)
        hit = a == out
        ctx.save_for_backward(hit / hit.sum(axis=axes, keepdims=True))
        ctx.axes, ctx.keepdims = axes, keepdims
        return out if keepdims else np.squeeze(out, axis=axes)

    @staticmethod
    def backward(ctx, g):
        if not ctx.keepdims:
            g = np.expand_dims(g, ctx.axes)
        return (ctx.saved[0] * g).astype(g.dtype, copy=False)


class Max(_Extremum):
    reduce = staticmethod(np.max)


class Min(_Extremum):
    reduce = staticmethod(np.min)


def sum(a, axis=None, keepdims=False): return Sum.apply(a, axis=axis, keepdims=keepdims)  # noqa: A001
def mean(a, axis=None, keepdims=False): return Mean.apply(a, axis=axis, keepdims=keepdims)
def max(a, axis=None, keepdims=False): return Max.apply(a, axis=axis, keepdims=keepdims)  # noqa: A001
def min(a, axis=None, keepdims=False): return Min.apply(a, axis=axis, keepdims=keepdims)  # noqa: A001


# ------------------------------------------------------------------- shape movement
class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = np.shape(a)
        return np.reshape(a, shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes=None):
        a = np.asarray(a)
        axes = tuple(range(a.ndim))[::-1] if axes is None else tuple(ax % a.ndim for ax in axes)
        if sorted(axes) != list(range(a.ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of {a.ndim} dimensions")
        ctx.inverse = tuple(np.argsort(axes))
        return np.transpose(a, axes)

    @staticmethod
    def backward(ctx, g):
        return np.transpose(g, ctx.inverse)


class GetItem(Function):
    """x[index] for basic slices, integer arrays and boolean masks.

    Repeated integer indices accumulate their gradients (``np.add.at``).
    """

    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.dtype, ctx.index = np.shape(a), a.dtype, index
        return np.asarray(a[index])

    @staticmethod
    def backward(ctx, g):
        grad = np.zeros(ctx.shape, dtype=g.dtype)
        index = ctx.index if isinstance(ctx.index, tuple) else (ctx.index,)
        if any(isinstance(i, (np.ndarray, list)) for i in index):
            np.add.at(grad, ctx.index, g)
        else:
            grad[ctx.index] = g
        return grad, None


class Concatenate(Function):
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis
        ctx.splits = np.cumsum([np.shape(a)[axis] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        return tuple(np.split(g, ctx.splits, axis=ctx.axis))


class Stack(Function):
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis
        return np.stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        return tuple(np.moveaxis(g, ctx.axis, 0))


class Where(Function):
    """cond ? a : b with broadcasting; ``cond`` gets no gradient."""

    @staticmethod
    def forward(ctx, cond, a, b):
        cond = np.asarray(cond, dtype=bool)
        ctx.save_for_backward(cond)
        ctx.shapes = (np.shape(a), np.shape(b))
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        cond, = ctx.saved
        zero = np.zeros((), dtype=g.dtype)
        return None, unbroadcast(np.where(cond, g, zero), ctx.shapes[0]), unbroadcast(np.where(cond, zero, g), ctx.shapes[1])


class Pad(Function):
    """Constant padding; ``pad_width`` as in ``np.pad`` (one (before, after) pair per axis)."""

    @staticmethod
    def forward(ctx, a, pad_width, value=0.0):
        a = np.asarray(a)
        pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (a.ndim, 2))
        if (pw < 0).any():
            raise ValueError(f"pad: pad widths must be >= 0, got {pad_width}")
        ctx.slices = tuple(slice(int(lo), int(lo) + n) for (lo, _), n in zip(pw, a.shape))
        return np.pad(a, pw, constant_values=value)

    @staticmethod
    def backward(ctx, g):
        return g[ctx.slices]


def reshape(a, shape): return Reshape.apply(a, shape=tuple(shape) if np.ndim(shape) else (shape,))
def transpose(a, axes=None): return Transpose.apply(a, axes=axes)
def permute(a, axes): return Transpose.apply(a, axes=tuple(axes))
def getitem(a, index): return GetItem.apply(a, index=_plain_index(index))
def where(cond, a, b): return Where.apply(cond.data if isinstance(cond, Tensor) else cond, a, b)
def pad(a, pad_width, value=0.0): return Pad.apply(a, pad_width=pad_width, value=value)


def _plain_index(index):
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def flatten(a, start_dim=0, end_dim=-1):
    """Merge dimensions start_dim..end_dim (inclusive) into one, as torch.flatten."""
    shape = np.shape(a.data if isinstance(a, Tensor) else a)
    nd = len(shape)
    if nd == 0:
        return reshape(a, (1,))
    s, e = start_dim % nd, end_dim % nd
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {shape}")
    return reshape(a, shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:])


def concatenate(tensors, axis=0):
    if len(tensors) == 0:
        raise ValueError("concatenate: expected at least one tensor, got none")
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    if len(tensors) == 0:
        raise ValueError("stack: expected at least one tensor, got none")
    return Stack.apply(*tensors, axis=axis)


# ------------------------------------------------------------------------- softmax
class Softmax(Function):
    @staticmethod
    def forward(ctx, a, axis=-1):
        z = a - np.max(a, axis=axis, keepdims=True)
        e = np.exp(z)
        out = e / e.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, g):
        s, = ctx.saved
        return s * (g - (g * s).sum(axis=ctx.axis, keepdims=True))


class LogSoftmax(Function):
    """x - logsumexp(x): stable for |x| up to the dtype's range (max subtracted first)."""

    @staticmethod
    def forward(ctx, a, axis=-1):
        z = a - np.max(a, axis=axis, keepdims=True)
        out = z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, g):
        out, = ctx.saved
        return g - np.exp(out) * g.sum(axis=ctx.axis, keepdims=True)


def softmax(a, axis=-1): return Softmax.apply(a, axis=axis)
def log_softmax(a, axis=-1): return LogSoftmax.apply(a, axis=axis)


# ------------------------------------------------------------- non-differentiable
class NonDifferentiable(Function):
    """An op whose derivative is zero almost everywhere; backward refuses to run.

    Use the straight-through estimators of ``quant`` / ``bnn`` to train through such ops.
    """

    @classmethod
    def backward(cls, ctx, g):
        raise RuntimeError(f"backward: {cls.__name__.lower()} is not differentiable (its derivative is zero "
                           "almost everywhere); use a straight-through estimator (tinyapprox.quant / tinyapprox.bnn)")


class Sign(NonDifferentiable):
    @staticmethod
    def forward(ctx, a):
        return np.where(np.asarray(a) >= 0, 1, -1).astype(np.asarray(a).dtype)


class Round(NonDifferentiable):
    @staticmethod
    def forward(ctx, a):
        return np.round(a)


def sign(a):
    """+1 where a >= 0, -1 elsewhere (0 maps to +1). Not differentiable: see ``bnn.sign_ste``."""
    return Sign.apply(a)


def round(a):  # noqa: A001
    """Round half to even. Not differentiable: see ``quant``'s straight-through estimator."""
    return Round.apply(a)
