"""One SGD step on weights *stored* in fixed point: where small updates vanish (exercises).

With weights kept only as b-bit fixed point of step ``2^-f`` (no float shadow copy), the
step ``w <- round(w + delta)`` loses every update with ``|delta| < step / 2``: training
stalls once learning rate times gradient falls below half a step. Stochastic rounding
rounds up with probability equal to the fractional part, so the stored weight is right
*in expectation* and small updates survive on average. ``StoredLowPrecision`` applies the
same rules to a model's parameters; these two functions are the arithmetic alone.
"""
from __future__ import annotations

import numpy as np

__all__ = ["stored_step", "stochastic_stored_step"]


def _check(op, w, delta, frac_bits):
    w, delta = np.asarray(w, dtype=np.float64), np.asarray(delta, dtype=np.float64)
    if not isinstance(frac_bits, (int, np.integer)) or isinstance(frac_bits, bool) or not 0 <= frac_bits <= 52:
        raise ValueError(f"{op}: expected an integer frac_bits in [0, 52], got {frac_bits!r}")
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(delta))):
        raise ValueError(f"{op}: expected finite weights and updates")
    try:
        np.broadcast_shapes(w.shape, delta.shape)
    except ValueError:
        raise ValueError(f"{op}: expected an update broadcastable to the weights {w.shape}, got {delta.shape}") from None
    return w, delta


def stored_step(w, delta, frac_bits: int) -> np.ndarray:
    """``round((w + delta) * 2^f) / 2^f``, half to even: the new stored weight (exercise).

    w: weights already on the grid of step ``2^-frac_bits``; delta: the update (``-lr * g``),
    broadcastable to w. Returns float64 on the grid. An update with ``|delta| < 2^-f / 2``
    leaves ``w`` unchanged. Raises ValueError for non-finite input or a bad frac_bits.
    """
    w, delta = _check("stored_step", w, delta, frac_bits)
    # BEGIN SOLUTION
    return np.ldexp(np.rint(np.ldexp(w + delta, frac_bits)), -frac_bits)
    # END SOLUTION


def stochastic_stored_step(w, delta, frac_bits: int, u) -> np.ndarray:
    """Stochastic rounding of ``w + delta`` to the grid of step ``2^-f``, given uniform draws (exercise).

    With ``v = (w + delta) * 2^f``: ``floor(v) + 1`` where ``u < v - floor(v)``, else
    ``floor(v)``, divided by ``2^f``. So the result is one of the two grid points around
    ``w + delta`` and equals it in expectation over u. u: floats in [0, 1) of the
    broadcast shape. Returns float64. Raises as ``stored_step``, and ValueError for draws
    outside [0, 1) (NaN included) or not broadcastable to ``w + delta``.
    """
    op = "stochastic_stored_step"
    w, delta = _check(op, w, delta, frac_bits)
    u = np.asarray(u, dtype=np.float64)
    if not np.all((u >= 0) & (u < 1)):
        raise ValueError(f"{op}: expected uniform draws u in [0, 1), got values in [{np.nanmin(u) if u.size else 0}, "
                         f"{np.nanmax(u) if u.size else 0}] or NaN")
    try:
        np.broadcast_shapes(w.shape, delta.shape, u.shape)
    except ValueError:
        raise ValueError(f"{op}: expected draws u broadcastable to {np.broadcast_shapes(w.shape, delta.shape)}, "
                         f"got {u.shape}") from None
    # BEGIN SOLUTION
    v = np.ldexp(w + delta, frac_bits)
    low = np.floor(v)
    return np.ldexp(low + (u < v - low), -frac_bits)
    # END SOLUTION
