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
