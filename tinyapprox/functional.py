"""Differentiable operations, each a ``Function`` with a short forward and backward.

Shapes follow NumPy: every binary op broadcasts, and its backward sums the gradient back
to each input's own shape (``unbroadcast``). Each public function at the bottom of a
section wraps ``SomeOp.apply`` so it reads like NumPy: ``F.relu(x)``, ``F.sum(x, axis=1)``.

Layer-level ops (linear, batch norm, dropout) and the losses live in the second half of
this file; convolution and pooling live in ``conv.py`` (``F.conv2d``, ``F.max_pool2d`` ...
are forwarded there). Inside this file the module's own ``sum``, ``max``, ``min``,
``abs``, ``round`` and ``pow`` shadow Python's builtins, so code here calls the op classes
(``Sum.apply``) or NumPy, never those names unqualified.

The backward passes that make good exercises are wrapped in ``# BEGIN SOLUTION`` /
``# END SOLUTION`` (the form nbgrader and Otter-Grader strip to make a student version);
``tests/test_functional.py`` grades them by finite differences.
"""
from __future__ import annotations

import math

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


def _shape(x) -> tuple:
    return x.shape if type(x) is np.ndarray else np.shape(x)


def _normalize_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    return tuple(a % ndim if ndim else a for a in axes)


# ----------------------------------------------------------------- elementwise binary
class Add(Function):
    """a + b elementwise, broadcasting; each gradient is summed back to its input's shape."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape(a), _shape(b))
        return np.add(a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(g, sb)


class Sub(Function):
    """a - b elementwise, broadcasting."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape(a), _shape(b))
        return np.subtract(a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return unbroadcast(g, sa), unbroadcast(-g, sb)


class Mul(Function):
    """a * b elementwise, broadcasting."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.multiply(a, b)

    @staticmethod
    def backward(ctx, g):
        # BEGIN SOLUTION
        a, b = ctx.saved
        ga = unbroadcast(g * b, _shape(a)) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(g * a, _shape(b)) if ctx.needs_input_grad[1] else None
        return ga, gb
        # END SOLUTION


class Div(Function):
    """a / b elementwise, broadcasting."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.divide(a, b)

    @staticmethod
    def backward(ctx, g):
        # BEGIN SOLUTION
        a, b = ctx.saved
        ga = unbroadcast(g / b, _shape(a)) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(-g * a / (b * b), _shape(b)) if ctx.needs_input_grad[1] else None
        return ga, gb
        # END SOLUTION


class Pow(Function):
    """a ** b. The gradient for b is g * a**b * log(a), formed only when b needs it, and
    taken as 0 where a <= 0 (log undefined there)."""

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
            ga = unbroadcast(g * b * np.power(a, b - 1), _shape(a))
        if ctx.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = unbroadcast(g * out * np.where(a > 0, np.log(np.where(a > 0, a, 1)), 0), _shape(b))
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
        return unbroadcast(g * wa, _shape(a)), unbroadcast(g * (1 - wa), _shape(b))


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
        return unbroadcast(g * wa, _shape(a)), unbroadcast(g * (1 - wa), _shape(b))


def add(a, b):
    """a + b, broadcast (NumPy rules); the result has the broadcast shape."""
    return Add.apply(a, b)


def sub(a, b):
    """a - b, broadcast."""
    return Sub.apply(a, b)


def mul(a, b):
    """a * b elementwise, broadcast."""
    return Mul.apply(a, b)


def div(a, b):
    """a / b elementwise, broadcast."""
    return Div.apply(a, b)


def pow(a, b):  # noqa: A001
    """a ** b elementwise, broadcast (see ``Pow`` for the gradient at a <= 0)."""
    return Pow.apply(a, b)


def maximum(a, b):
    """Elementwise max of a and b, broadcast; ties share the gradient equally."""
    return Maximum.apply(a, b)


def minimum(a, b):
    """Elementwise min of a and b, broadcast; ties share the gradient equally."""
    return Minimum.apply(a, b)


# ------------------------------------------------------------------ elementwise unary
class Neg(Function):
    """-a elementwise."""

    @staticmethod
    def forward(ctx, a):
        return np.negative(a)

    @staticmethod
    def backward(ctx, g):
        return -g


class Exp(Function):
    """e ** a elementwise."""

    @staticmethod
    def forward(ctx, a):
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        # BEGIN SOLUTION
        return g * ctx.saved[0]
        # END SOLUTION


class Log(Function):
    """Natural logarithm elementwise (a > 0)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, g):
        # BEGIN SOLUTION
        return g / ctx.saved[0]
        # END SOLUTION


class Sqrt(Function):
    """Square root elementwise (a >= 0)."""

    @staticmethod
    def forward(ctx, a):
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        # BEGIN SOLUTION
        return g / (2 * ctx.saved[0])
        # END SOLUTION


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
        # BEGIN SOLUTION
        return g * (ctx.saved[0] > 0)
        # END SOLUTION


class Sigmoid(Function):
    """1 / (1 + exp(-a)) elementwise, computed through tanh so it never overflows."""

    @staticmethod
    def forward(ctx, a):
        out = 0.5 * (1 + np.tanh(0.5 * np.asarray(a)))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        # BEGIN SOLUTION
        s = ctx.saved[0]
        return g * s * (1 - s)
        # END SOLUTION


class Tanh(Function):
    """Hyperbolic tangent elementwise."""

    @staticmethod
    def forward(ctx, a):
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        # BEGIN SOLUTION
        t = ctx.saved[0]
        return g * (1 - t * t)
        # END SOLUTION


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


def neg(a):
    """-a, same shape."""
    return Neg.apply(a)


def exp(a):
    """e ** a elementwise, same shape."""
    return Exp.apply(a)


def log(a):
    """Natural log elementwise, same shape (a > 0)."""
    return Log.apply(a)


def sqrt(a):
    """Square root elementwise, same shape (a >= 0)."""
    return Sqrt.apply(a)


def abs(a):  # noqa: A001
    """|a| elementwise, same shape; gradient 0 at 0."""
    return Abs.apply(a)


def relu(a):
    """max(a, 0) elementwise, same shape; gradient 0 at 0."""
    return ReLU.apply(a)


def sigmoid(a):
    """1 / (1 + e^-a) elementwise, same shape."""
    return Sigmoid.apply(a)


def tanh(a):
    """tanh(a) elementwise, same shape."""
    return Tanh.apply(a)


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
        # BEGIN SOLUTION
        a, b = ctx.saved
        if a.ndim == 1 and b.ndim == 1:
            return g * b, g * a
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
        # END SOLUTION


def matmul(a, b):
    """a @ b: (k,) @ (k,), (..., n, k) @ (k, m), batched (..., n, k) @ (..., k, m) with broadcast batch dims."""
    return MatMul.apply(a, b)


# ------------------------------------------------------------------------ reductions
class Sum(Function):
    """Sum over ``axis`` (None = all); the gradient is broadcast back over the summed axes."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        a = np.asarray(a)
        ctx.shape = a.shape
        if axis is None:
            ctx.kept = (1,) * a.ndim
            return np.asarray(np.add.reduce(a, axis=None, keepdims=keepdims))
        axes = _normalize_axis(axis, a.ndim)
        ctx.kept = tuple(1 if i in axes else n for i, n in enumerate(a.shape))
        return np.asarray(np.add.reduce(a, axis=axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx, g):
        out = np.empty(ctx.shape, dtype=g.dtype)
        out[...] = g.reshape(ctx.kept)
        return out


class Mean(Function):
    """Mean over ``axis`` (None = all): a sum divided by the number of entries reduced."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        a = np.asarray(a)
        ctx.shape = a.shape
        axes = tuple(range(a.ndim)) if axis is None else _normalize_axis(axis, a.ndim)
        ctx.kept = tuple(1 if i in axes else n for i, n in enumerate(a.shape))
        ctx.count = math.prod(a.shape[i] for i in axes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(np.add.reduce(a, axis=axes, keepdims=keepdims) / a.dtype.type(ctx.count))

    @staticmethod
    def backward(ctx, g):
        out = np.empty(ctx.shape, dtype=g.dtype)
        out[...] = g.reshape(ctx.kept) / g.dtype.type(ctx.count or 1)
        return out


def _extremum_forward(ctx, a, axis, keepdims, reduce, op):
    """Shared forward of ``Max`` / ``Min``: ``reduce`` (np.max / np.min) over ``axis``,
    saving for each entry its share of the gradient (1 / number of tied extremes, or 0)."""
    a = np.asarray(a)
    axes = _normalize_axis(axis, a.ndim)
    if a.size == 0:
        raise ValueError(f"{op}: cannot reduce an empty array of shape {a.shape}")
    out = reduce(a, axis=axes, keepdims=True)
    hit = a == out
    ctx.save_for_backward(hit / hit.sum(axis=axes, keepdims=True))
    ctx.axes, ctx.keepdims = axes, keepdims
    return out if keepdims else np.squeeze(out, axis=axes)


def _extremum_backward(ctx, g):
    if not ctx.keepdims:
        g = np.expand_dims(g, ctx.axes)
    return (ctx.saved[0] * g).astype(g.dtype, copy=False)


class Max(Function):
    """Maximum over ``axis``; tied maxima share the gradient equally."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        return _extremum_forward(ctx, a, axis, keepdims, np.max, "max")

    @staticmethod
    def backward(ctx, g):
        return _extremum_backward(ctx, g)


class Min(Function):
    """Minimum over ``axis``; tied minima share the gradient equally."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        return _extremum_forward(ctx, a, axis, keepdims, np.min, "min")

    @staticmethod
    def backward(ctx, g):
        return _extremum_backward(ctx, g)


def sum(a, axis=None, keepdims=False):  # noqa: A001
    """Sum over ``axis`` (int, tuple or None = all); ``keepdims`` keeps reduced axes as size 1."""
    return Sum.apply(a, axis=axis, keepdims=keepdims)


def mean(a, axis=None, keepdims=False):
    """Mean over ``axis`` (int, tuple or None = all); ``keepdims`` keeps reduced axes as size 1."""
    return Mean.apply(a, axis=axis, keepdims=keepdims)


def max(a, axis=None, keepdims=False):  # noqa: A001
    """Maximum over ``axis``; tied maxima share the gradient equally. Raises on an empty array."""
    return Max.apply(a, axis=axis, keepdims=keepdims)


def min(a, axis=None, keepdims=False):  # noqa: A001
    """Minimum over ``axis``; tied minima share the gradient equally. Raises on an empty array."""
    return Min.apply(a, axis=axis, keepdims=keepdims)


# ------------------------------------------------------------------- shape movement
class Reshape(Function):
    """The same values in a new ``shape``; the gradient is reshaped back."""

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = np.shape(a)
        return np.reshape(a, shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Transpose(Function):
    """Permute the axes (``axes=None`` reverses them); the gradient is permuted back."""

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
    """Join arrays along an existing ``axis``; the gradient is split back into pieces."""

    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis
        ctx.splits = np.cumsum([np.shape(a)[axis] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        return tuple(np.split(g, ctx.splits, axis=ctx.axis))


class Stack(Function):
    """Join arrays along a new ``axis``; the gradient is unstacked back."""

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


def reshape(a, shape):
    """Same data in ``shape`` (one -1 allowed); the size must match."""
    return Reshape.apply(a, shape=tuple(shape) if np.ndim(shape) else (shape,))


def transpose(a, axes=None):
    """Permute axes (``axes`` None reverses them, like ``.T``)."""
    return Transpose.apply(a, axes=axes)


def permute(a, axes):
    """Permute axes into the order ``axes``."""
    return Transpose.apply(a, axes=tuple(axes))


def getitem(a, index):
    """a[index] for slices, integer arrays (repeats accumulate gradients) and boolean masks."""
    return GetItem.apply(a, index=_plain_index(index))


def where(cond, a, b):
    """cond ? a : b elementwise, broadcast; ``cond`` (bool array) gets no gradient."""
    return Where.apply(cond.data if isinstance(cond, Tensor) else cond, a, b)


def pad(a, pad_width, value=0.0):
    """Constant padding; ``pad_width`` as in ``np.pad``: one (before, after) pair per axis."""
    return Pad.apply(a, pad_width=pad_width, value=value)


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
    return reshape(a, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


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
    """exp(a) / sum(exp(a)) along ``axis``, with the maximum subtracted first for stability."""

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
        # BEGIN SOLUTION
        s, = ctx.saved
        return s * (g - (g * s).sum(axis=ctx.axis, keepdims=True))
        # END SOLUTION


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
        # BEGIN SOLUTION
        out, = ctx.saved
        return g - np.exp(out) * g.sum(axis=ctx.axis, keepdims=True)
        # END SOLUTION


def softmax(a, axis=-1):
    """exp(a) / sum(exp(a)) along ``axis``, stable (max subtracted); same shape."""
    return Softmax.apply(a, axis=axis)


def log_softmax(a, axis=-1):
    """a - logsumexp(a) along ``axis``, stable; same shape."""
    return LogSoftmax.apply(a, axis=axis)


# ------------------------------------------------------------- non-differentiable
def _not_differentiable(op):
    """The backward of an op whose derivative is zero almost everywhere: refuse to run.

    Use the straight-through estimators of ``quant`` / ``bnn`` to train through such ops.
    """
    raise RuntimeError(f"backward: {op} is not differentiable (its derivative is zero almost everywhere); "
                       "use a straight-through estimator (tinyapprox.quant / tinyapprox.bnn)")


class Sign(Function):
    """+1 where a >= 0, else -1; not differentiable (backward raises)."""

    @staticmethod
    def forward(ctx, a):
        return np.where(np.asarray(a) >= 0, 1, -1).astype(np.asarray(a).dtype)

    @staticmethod
    def backward(ctx, g):
        _not_differentiable("sign")


class Round(Function):
    """Round half to even; not differentiable (backward raises)."""

    @staticmethod
    def forward(ctx, a):
        return np.round(a)

    @staticmethod
    def backward(ctx, g):
        _not_differentiable("round")


def sign(a):
    """+1 where a >= 0, -1 elsewhere (0 maps to +1). Not differentiable: see ``bnn.sign_ste``."""
    return Sign.apply(a)


def round(a):  # noqa: A001
    """Round half to even. Not differentiable: see ``quant``'s straight-through estimator."""
    return Round.apply(a)


# ============================================================ layer-level operations
class Linear(Function):
    """y = x @ w.T + b: the lecture's W^T a = b with w stored as (out, in).

    x: (..., in), w: (out, in), b: (out,) or None -> (..., out).
    """

    @staticmethod
    def forward(ctx, x, w, b=None):
        if x.shape[-1] != w.shape[1]:
            raise ValueError(f"linear: expected input with last dimension {w.shape[1]} (weight {w.shape}), got {x.shape}")
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        y = x @ w.T
        if b is not None:
            y += b
        return y

    @staticmethod
    def backward(ctx, g):
        # BEGIN SOLUTION
        x, w = ctx.saved
        need = ctx.needs_input_grad
        gx = g @ w if need[0] else None
        gw = gb = None
        if need[1]:
            gw = g.reshape(-1, g.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        if ctx.has_bias and need[2]:
            gb = g.reshape(-1, g.shape[-1]).sum(axis=0)
        return gx, gw, gb
        # END SOLUTION


def linear(x, w, b=None):
    """Dense layer: x (..., in) @ w.T (w: (out, in)) + b (out,) -> (..., out)."""
    return Linear.apply(x, w, b)


class BatchNorm(Function):
    """Batch normalisation over every axis but ``axis`` (the channel axis).

    Training mode normalises with the batch statistics and updates ``running_mean`` /
    ``running_var`` in place (unbiased variance, exponential average with ``momentum``);
    eval mode uses the running statistics. x: (N, C) or (N, C, H, W); gamma, beta: (C,).
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean=None, running_var=None, training=True,
                momentum=0.1, eps=1e-5, axis=1):
        if x.ndim < 2 or x.shape[axis] != gamma.shape[0]:
            raise ValueError(f"batch_norm: expected input with {gamma.shape[0]} channels on axis {axis}, got shape {x.shape}")
        axes = tuple(i for i in range(x.ndim) if i != axis)
        shape = [1] * x.ndim
        shape[axis] = -1
        if training:
            count = x.size // x.shape[axis]
            if count < 2:
                raise ValueError(f"batch_norm: training needs more than one value per channel, got input shape {x.shape}")
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
            if running_mean is not None:
                running_mean *= 1 - momentum
                running_mean += momentum * mean
                running_var *= 1 - momentum
                running_var += momentum * var * count / (count - 1)
        else:
            mean, var = running_mean, running_var
        inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
        xhat = (x - mean.reshape(shape).astype(x.dtype)) * inv_std.reshape(shape)
        ctx.save_for_backward(xhat, inv_std, gamma)
        ctx.axes, ctx.shape, ctx.training = axes, shape, training
        return xhat * gamma.reshape(shape) + beta.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        xhat, inv_std, gamma = ctx.saved
        axes, shape = ctx.axes, ctx.shape
        gbeta = g.sum(axis=axes)
        ggamma = (g * xhat).sum(axis=axes)
        gxhat = g * gamma.reshape(shape)
        if ctx.training:
            m = g.size // gamma.shape[0]
            gx = (inv_std.reshape(shape) / m) * (m * gxhat - gxhat.sum(axis=axes).reshape(shape)
                                                  - xhat * (gxhat * xhat).sum(axis=axes).reshape(shape))
        else:
            gx = gxhat * inv_std.reshape(shape)
        return gx, ggamma, gbeta


def batch_norm(x, gamma, beta, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5, axis=1):
    """Batch norm (see ``BatchNorm``); running statistics are updated in place when training."""
    return BatchNorm.apply(x, gamma, beta, running_mean=running_mean, running_var=running_var,
                           training=training, momentum=momentum, eps=eps, axis=axis)


def dropout(x, p=0.5, training=True, rng=None):
    """Inverted dropout: zero each entry with probability p and scale the rest by 1/(1-p)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: expected 0 <= p < 1, got {p}")
    if not training or p == 0:
        return x
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    keep = (rng.random(x.shape) >= p).astype(x.dtype) / (1 - p)
    return mul(x, keep)


# ============================================================================ losses
def _reduce(loss, reduction, op):
    if reduction == "mean":
        return Mean.apply(loss)
    if reduction == "sum":
        return Sum.apply(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_labels(op, logits, labels):
    y = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    shape = np.shape(logits.data if isinstance(logits, Tensor) else logits)
    if len(shape) != 2:
        raise ValueError(f"{op}: expected logits of shape (N, C), got {shape}")
    if y.shape != (shape[0],) or y.dtype.kind not in "iu":
        raise ValueError(f"{op}: expected integer labels of shape ({shape[0]},), got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= shape[1]):
        raise ValueError(f"{op}: labels must lie in [0, {shape[1]}), got range [{y.min()}, {y.max()}]")
    return y


class CrossEntropy(Function):
    """Softmax + negative log-likelihood fused: stable log-sum-exp, per-sample losses (N,)."""

    @staticmethod
    def forward(ctx, logits, labels):
        z = logits - logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
        logp = z - lse
        ctx.save_for_backward(logp, labels)
        return -logp[np.arange(len(labels)), labels]

    @staticmethod
    def backward(ctx, g):
        # BEGIN SOLUTION
        logp, labels = ctx.saved
        grad = np.exp(logp)
        grad[np.arange(len(labels)), labels] -= 1
        return grad * g[:, None], None
        # END SOLUTION


def cross_entropy(logits, labels, reduction="mean"):
    """Softmax cross-entropy from logits (N, C) and integer labels (N,)."""
    y = _check_labels("cross_entropy", logits, labels)
    return _reduce(CrossEntropy.apply(logits, y), reduction, "cross_entropy")


def _same_shape(op, a, b):
    sa = np.shape(a.data if isinstance(a, Tensor) else a)
    sb = np.shape(b.data if isinstance(b, Tensor) else b)
    if sa != sb:
        raise ValueError(f"{op}: expected prediction and target of the same shape, got {sa} and {sb}")


def mse_loss(pred, target, reduction="mean"):
    """Square loss (pred - target)^2, elementwise then reduced."""
    _same_shape("mse_loss", pred, target)
    d = sub(pred, target)
    return _reduce(mul(d, d), reduction, "mse_loss")


def binary_cross_entropy(prob, target, reduction="mean", eps=1e-7):
    """Log loss on probabilities in (0, 1): -(t log p + (1 - t) log(1 - p)); p clipped to [eps, 1 - eps]."""
    _same_shape("binary_cross_entropy", prob, target)
    p = clip(prob, eps, 1 - eps)
    loss = neg(add(mul(target, log(p)), mul(sub(1, target), log(sub(1, p)))))
    return _reduce(loss, reduction, "binary_cross_entropy")


class BCEWithLogits(Function):
    """max(z, 0) - z t + log(1 + exp(-|z|)): log loss straight from logits, stable for any z."""

    @staticmethod
    def forward(ctx, z, t):
        ctx.save_for_backward(z, t)
        return np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))

    @staticmethod
    def backward(ctx, g):
        z, t = ctx.saved
        gt = -g * z if ctx.needs_input_grad[1] else None
        return g * (0.5 * (1 + np.tanh(0.5 * z)) - t), gt


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """Log loss from logits z and targets t in [0, 1] of the same shape."""
    _same_shape("binary_cross_entropy_with_logits", logits, target)
    return _reduce(BCEWithLogits.apply(logits, target), reduction, "binary_cross_entropy_with_logits")


def hinge_loss(scores, labels, margin=1.0, squared=False, reduction="mean"):
    """Multi-class hinge loss on scores (N, C).

    With integer labels (N,), targets are +1 for the true class and -1 elsewhere, and the
    loss per sample is sum_c max(0, margin - t_c * s_c) (one-vs-all, as the BNN paper
    trains); ``squared=True`` squares each term (squared hinge). ``labels`` may also be a
    (N, C) array of +-1 targets.
    """
    s = scores.data if isinstance(scores, Tensor) else np.asarray(scores)
    y = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if y.ndim == 1:
        y = _check_labels("hinge_loss", scores, y)
        t = -np.ones(s.shape, dtype=s.dtype)
        t[np.arange(len(y)), y] = 1
    else:
        _same_shape("hinge_loss", scores, y)
        t = y.astype(s.dtype)
    h = relu(sub(margin, mul(scores, t)))
    if squared:
        h = mul(h, h)
    return _reduce(Sum.apply(h, axis=1), reduction, "hinge_loss")


def topk_correct(scores, labels, k=1) -> np.ndarray:
    """Is each sample correct at top-k? The library's one tie rule, used by ``train.fit``,
    ``metrics`` and ``zero_one_loss``.

    Ties count against the sample: it is correct only if fewer than ``k`` *other* classes
    score greater than or equal to its true class, ``#{c != y : s[c] >= s[y]} < k``. So
    all-equal scores (a network pruned to zero) are wrong at top-1, not right by luck of
    ``argmax``'s lowest-index rule.

    Args:
        scores: (N, C) real logits or probabilities (Tensor or array), no NaN.
        labels: (N,) integers in [0, C).
        k: int >= 1.

    Returns:
        bool (N,).

    Raises:
        ValueError: ``scores`` not 2-D or holding NaN (it cannot be ranked), labels of the
            wrong shape, dtype or range, k < 1.
    """
    y = _check_labels("topk_correct", scores, labels)
    s = scores.data if isinstance(scores, Tensor) else np.asarray(scores)
    if s.dtype.kind == "f" and np.isnan(s).any():
        raise ValueError("topk_correct: the scores contain NaN; a NaN score cannot be ranked")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"topk_correct: expected k to be an int >= 1, got {k!r}")
    true_score = s[np.arange(len(y)), y][:, None]
    rank = np.count_nonzero(s >= true_score, axis=1) - 1    # other classes tying or beating the label
    return rank < k


def zero_one_loss(logits, labels):
    """Fraction of samples wrong at top-1 under ``topk_correct``'s tie rule (ties count as
    wrong); 0.0 for no samples. A metric: not differentiable."""
    wrong = ~topk_correct(logits, labels, 1)
    return float(np.mean(wrong)) if wrong.size else 0.0


_SPATIAL = ("conv2d", "max_pool2d", "avg_pool2d", "im2col", "col2im")


def __getattr__(name):
    """Convolution and pooling live in ``conv.py``; ``F.conv2d`` etc. are forwarded there."""
    if name in _SPATIAL:
        from . import conv
        return getattr(conv, name)
    raise AttributeError(f"module 'tinyapprox.functional' has no attribute {name!r}")
