"""Finite-difference gradient checking in float64, with failures that explain themselves."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """Analytic and numeric gradients disagree; the message names input, index and values."""


def _projection(out_shape: tuple, seed: int):
    """Fixed random weights (float64, ``out_shape``) that reduce an output to one number.

    The reduction ``sum(out * weights)`` is done with NumPy, never with the engine's own
    ``Mul``/``Sum``, so a gradcheck of one op does not depend on any other op being right.
    A one-element output gets weight 1.
    """
    if int(np.prod(out_shape)) == 1:
        return np.ones(out_shape)
    return np.random.default_rng(seed).standard_normal(out_shape)


def _project(out, weights) -> float:
    data = out.data if isinstance(out, Tensor) else np.asarray(out)
    return float(np.sum(np.asarray(data, dtype=np.float64) * weights))


def numerical_grad(fn, arrays, index: int, eps: float = 1e-6, project=None) -> np.ndarray:
    """Central-difference gradient of ``project(fn(*arrays))`` with respect to ``arrays[index]``.

    The step at entry ``x`` is ``eps * max(1, |x|)`` (relative for large inputs, where an
    absolute step would be lost in float64 rounding), and the difference is divided by the
    step actually taken, ``(x + h) - (x - h)``.

    ``project`` is the reduction to a scalar: None (sum every output entry), an array of
    weights with the output's shape (``sum(out * weights)``, computed in NumPy), or a
    callable taking the output Tensor and returning a one-element Tensor or number.
    ``arrays[index]`` must be C-contiguous (it is perturbed in place and restored).
    """
    x = arrays[index]
    if not x.flags.c_contiguous:
        raise ValueError(f"numerical_grad: input {index} must be C-contiguous so it can be perturbed in place")

    def scalar(out):
        if project is None:
            return float(np.sum(out.data if isinstance(out, Tensor) else out))
        if callable(project):
            r = project(out)
            return float(r.item() if isinstance(r, Tensor) else r)
        return _project(out, project)

    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    with no_grad():
        for j in range(flat.size):
            orig = flat[j]
            h = eps * max(1.0, abs(float(orig)))
            flat[j] = orig + h
            hi = flat[j]
            plus = scalar(fn(*[Tensor(a) for a in arrays]))
            flat[j] = orig - h
            lo = flat[j]
            minus = scalar(fn(*[Tensor(a) for a in arrays]))
            flat[j] = orig
            gflat[j] = (plus - minus) / (hi - lo)
    return grad


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-4, name: str | None = None,
              seed: int = 0) -> bool:
    """Check ``fn``'s backward against central differences.

    Args:
        fn: takes Tensors (one per input) and returns a Tensor of any shape; a non-scalar
            output is reduced by a fixed random projection ``sum(out * r)``, taken in
            NumPy (backward is seeded with ``r``), so only ``fn``'s own ops are under test.
        inputs: arrays or Tensors; floating ones are checked (converted to float64
            copies), integer ones (labels, indices) are passed through unchanged.
        eps, atol, rtol: relative step (``eps * max(1, |x|)``) and tolerances; pass if
            |num - ana| <= atol + rtol * |num|.
        name: the op's name for the message (default: ``fn.__name__``).

    Returns:
        True when every checked gradient matches.

    Raises:
        ValueError: an input contains NaN or infinity.
        GradcheckError: a mismatch, naming the op, the input, the index and both values.
    """
    name = name or getattr(fn, "__name__", "fn")
    arrays, check = [], []
    for i, x in enumerate(inputs):
        a = np.array(x.data if isinstance(x, Tensor) else x)
        if a.dtype.kind == "f":
            if not np.isfinite(a).all():
                raise ValueError(f"gradcheck of {name}: input {i} (shape {a.shape}) contains NaN or infinity")
            a = np.ascontiguousarray(a, dtype=np.float64)
            check.append(i)
        arrays.append(a)
    tensors = [Tensor(a.copy(), requires_grad=(i in check)) for i, a in enumerate(arrays)]
    out = fn(*tensors)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck of {name}: fn must return a Tensor, got {type(out).__name__}")
    weights = _projection(out.shape, seed)
    if out.requires_grad:
        out.backward(weights.astype(out.data.dtype, copy=False).reshape(out.shape))
    for i in check:
        analytic = tensors[i].grad if tensors[i].grad is not None else np.zeros_like(arrays[i])
        numeric = numerical_grad(fn, arrays, i, eps, weights)
        bad = np.abs(numeric - analytic) > atol + rtol * np.abs(numeric)
        if bad.any():
            idx = tuple(int(k) for k in np.argwhere(bad)[0])
            raise GradcheckError(
                f"gradcheck of {name}: input {i} (shape {arrays[i].shape}) at index {idx}: "
                f"numeric {numeric[idx]:.8g} vs analytic {analytic[idx]:.8g} "
                f"({int(bad.sum())} of {bad.size} entries differ beyond atol={atol}, rtol={rtol})")
    return True
