"""Weight initializers: random float32 arrays whose scale keeps signals from exploding.

Every function takes ``rng``: an int seed or a ``np.random.Generator`` (``as_rng``), so
the same seed gives the same bits. ``None`` draws fresh entropy from the operating
system, so pass a seed whenever a result must be reproducible.

Fan-in and fan-out (``fans``) of a weight shape:

* (out, in) dense weight: fan_in = in, fan_out = out;
* (O, C, kh, kw) convolution kernels: every output value sums C*kh*kw products, so
  fan_in = C*kh*kw and fan_out = O*kh*kw;
* (n,) vector: fan_in = fan_out = n.

Scales, for a layer whose input has unit variance:

* Kaiming (He et al. 2015): Var(w) = gain**2 / fan_in. ``gain = sqrt(2)`` compensates
  ReLU zeroing half of its inputs. Uniform bound ``gain * sqrt(3 / fan_in)``.
* Xavier (Glorot & Bengio 2010): Var(w) = gain**2 * 2 / (fan_in + fan_out), a compromise
  between the forward and the backward pass. Uniform bound ``gain * sqrt(6 / (fan_in + fan_out))``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["as_rng", "fans", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal",
           "uniform", "normal", "zeros", "ones"]


def as_rng(seed_or_rng=None) -> np.random.Generator:
    """A ``np.random.Generator`` from an int seed, a Generator (returned as is) or None.

    Raises:
        TypeError: anything else (floats, legacy ``RandomState``, strings).
        ValueError: a negative seed.
    """
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    if seed_or_rng is None:
        return np.random.default_rng()
    if isinstance(seed_or_rng, (int, np.integer)) and not isinstance(seed_or_rng, bool):
        if seed_or_rng < 0:
            raise ValueError(f"as_rng: expected a seed >= 0, got {seed_or_rng}")
        return np.random.default_rng(int(seed_or_rng))
    raise TypeError(f"as_rng: expected an int seed, a np.random.Generator or None, got {type(seed_or_rng).__name__}")


def _shape(op: str, shape) -> tuple:
    shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
    if not all(isinstance(s, (int, np.integer)) and s >= 0 for s in shape):
        raise ValueError(f"{op}: expected a shape of non-negative ints, got {shape}")
    return tuple(int(s) for s in shape)


def fans(shape) -> tuple:
    """(fan_in, fan_out) of a weight ``shape``: see the module docstring.

    Raises:
        ValueError: an empty shape (a scalar has no fans).
    """
    shape = _shape("fans", shape)
    if len(shape) == 0:
        raise ValueError("fans: expected a weight shape with at least one dimension, got ()")
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan_in(op, shape, fan_in):
    fan_in = fans(shape)[0] if fan_in is None else fan_in
    if fan_in <= 0:
        raise ValueError(f"{op}: fan_in must be positive, got {fan_in} for shape {shape}")
    return fan_in


def uniform(shape, low: float = -1.0, high: float = 1.0, rng=None, dtype=np.float32) -> np.ndarray:
    """Independent draws from U(low, high): array of ``shape`` and ``dtype`` (float32).

    Raises:
        ValueError: low > high or a malformed shape.
    """
    shape = _shape("uniform", shape)
    if low > high:
        raise ValueError(f"uniform: expected low <= high, got low={low}, high={high}")
    return as_rng(rng).uniform(low, high, size=shape).astype(dtype)


def normal(shape, mean: float = 0.0, std: float = 1.0, rng=None, dtype=np.float32) -> np.ndarray:
    """Independent draws from N(mean, std**2): array of ``shape`` and ``dtype`` (float32).

    Raises:
        ValueError: std < 0 or a malformed shape.
    """
    shape = _shape("normal", shape)
    if std < 0:
        raise ValueError(f"normal: expected std >= 0, got {std}")
    return (mean + std * as_rng(rng).standard_normal(shape)).astype(dtype)


def kaiming_uniform(shape, fan_in=None, gain: float = math.sqrt(2.0), rng=None, dtype=np.float32) -> np.ndarray:
    """U(-bound, bound) with ``bound = gain * sqrt(3 / fan_in)`` (variance gain**2 / fan_in).

    ``fan_in`` defaults to ``fans(shape)[0]`` (C*kh*kw for conv kernels). The default
    gain sqrt(2) suits ReLU; ``gain=1/sqrt(3)`` gives bound ``1/sqrt(fan_in)``, the
    default of the ``Linear`` and ``Conv2d`` layers (as in common frameworks).
    """
    shape = _shape("kaiming_uniform", shape)
    bound = gain * math.sqrt(3.0 / _fan_in("kaiming_uniform", shape, fan_in))
    return uniform(shape, -bound, bound, rng, dtype)


def kaiming_normal(shape, fan_in=None, gain: float = math.sqrt(2.0), rng=None, dtype=np.float32) -> np.ndarray:
    """N(0, std**2) with ``std = gain / sqrt(fan_in)``; ``fan_in`` as in ``kaiming_uniform``."""
    shape = _shape("kaiming_normal", shape)
    return normal(shape, 0.0, gain / math.sqrt(_fan_in("kaiming_normal", shape, fan_in)), rng, dtype)


def _fan_sum(op, shape):
    fan_in, fan_out = fans(shape)
    if fan_in + fan_out <= 0:
        raise ValueError(f"{op}: fan_in + fan_out must be positive, got shape {shape}")
    return fan_in + fan_out


def xavier_uniform(shape, gain: float = 1.0, rng=None, dtype=np.float32) -> np.ndarray:
    """U(-bound, bound) with ``bound = gain * sqrt(6 / (fan_in + fan_out))``."""
    shape = _shape("xavier_uniform", shape)
    bound = gain * math.sqrt(6.0 / _fan_sum("xavier_uniform", shape))
    return uniform(shape, -bound, bound, rng, dtype)


def xavier_normal(shape, gain: float = 1.0, rng=None, dtype=np.float32) -> np.ndarray:
    """N(0, std**2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    shape = _shape("xavier_normal", shape)
    return normal(shape, 0.0, gain * math.sqrt(2.0 / _fan_sum("xavier_normal", shape)), rng, dtype)


def zeros(shape, dtype=np.float32) -> np.ndarray:
    """All zeros (biases, batch-norm shifts)."""
    return np.zeros(_shape("zeros", shape), dtype=dtype)


def ones(shape, dtype=np.float32) -> np.ndarray:
    """All ones (batch-norm scales)."""
    return np.ones(_shape("ones", shape), dtype=dtype)
