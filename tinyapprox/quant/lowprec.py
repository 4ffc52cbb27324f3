"""Low-precision training: weights stored *only* in a narrow format versus fp32 shadow weights.

Inference tolerates 8-bit weights; training is more delicate, because an SGD update
``lr * g`` is usually far smaller than the weight it changes. Two ways to train with
weights on a coarse grid (fp16, 8-bit fixed point):

* **Stored low precision** (``StoredLowPrecision``): the parameter's only copy is on the
  grid. After every optimizer step the weight is rounded back to the format, so an update
  smaller than half the grid step at that weight vanishes (round to nearest) — training
  stalls once the gradients get small. Stochastic rounding (Gupta et al., 2015) keeps such
  updates in expectation.
* **Shadow weights** (the QAT recipe, ``quant.WeightQuant``): the optimizer updates a
  full-precision copy, the forward pass sees its rounded value; small updates accumulate
  in the shadow until they cross a rounding boundary.

``apply_variant`` attaches one recipe of ``VARIANTS`` to every parameter of a model (the
``tinyapprox hogwild --lowprec`` experiment trains LeNet-300-100 under each).
``StoredLowPrecision`` also counts vanished updates: coordinates with a non-zero gradient
whose stored value did not change in a step.
"""
from __future__ import annotations

import numpy as np

from ..nn.module import ParamTransform
from ..tensor import Tensor
from .fake import WeightQuant, _format_from_state, _format_state
from .formats import FP16, DynamicFixedPoint

__all__ = ["StoredLowPrecision", "VARIANTS", "apply_variant"]


class StoredLowPrecision(ParamTransform):
    """Keep a parameter on a number format's grid: no full-precision copy survives a step.

    Args:
        fmt: a ``quant`` format (``FP16()``, ``DynamicFixedPoint(8, frac_length)`` ...).
        rounding: ``"nearest"`` (ties to even) or ``"stochastic"`` (with ``seed``).
        seed: int or ``np.random.Generator`` for stochastic rounding.
        track: count vanished updates (keeps a copy of the *rounded* weight for that
            count only; the copy never feeds training).

    The forward pass uses the parameter as it is (``__call__`` is the identity: the
    weight already is on the grid); ``after_step`` rounds ``param.data`` in place. Call
    ``attach(param)`` to add the transform and round the initial weights.

    Attributes:
        vanished: coordinates, summed over steps, whose gradient was non-zero but whose
            stored value did not change. attempted: coordinates with a non-zero gradient.
    """

    def __init__(self, fmt, rounding: str = "nearest", seed=None, track: bool = True):
        if not hasattr(fmt, "fake"):
            raise TypeError(f"StoredLowPrecision: expected a quant format with .fake(), got {type(fmt).__name__}")
        if rounding not in ("nearest", "stochastic"):
            raise ValueError(f"StoredLowPrecision: rounding must be 'nearest' or 'stochastic', got {rounding!r}")
        self.fmt, self.rounding, self.track = fmt, rounding, bool(track)
        self._rng = np.random.default_rng(seed) if rounding == "stochastic" else None
        self.vanished = self.attempted = 0
        self._prev = None

    def round(self, w: np.ndarray) -> np.ndarray:
        """``w`` rounded onto the format's grid, same dtype and shape."""
        return np.asarray(self.fmt.fake(w, self.rounding, self._rng), dtype=w.dtype)

    def attach(self, param):
        """Add this transform to ``param`` and round its current value onto the grid."""
        param.data[...] = self.round(param.data)
        self._prev = param.data.copy() if self.track else None
        param.add_transform(self)
        return param

    def __call__(self, w: Tensor) -> Tensor:
        return w

    def after_step(self, param):
        new = self.round(param.data)
        if self.track and param.grad is not None:
            moved = param.grad != 0
            prev = self._prev if self._prev is not None and self._prev.shape == new.shape else None
            if prev is not None:
                self.vanished += int(np.count_nonzero(moved & (new == prev)))
                self.attempted += int(np.count_nonzero(moved))
            self._prev = new.copy()
        param.data[...] = new

    def state(self):
        out = {"rounding": np.array(self.rounding)}
        out.update(_format_state("fmt.", self.fmt))
        return out

    @classmethod
    def from_state(cls, s):
        return cls(_format_from_state("fmt.", s), str(s["rounding"]))

    def __repr__(self):
        return f"StoredLowPrecision({self.fmt.describe()}, rounding={self.rounding!r})"


#: Recipe name -> (format, storage) where storage is "store", "store-sr" (stochastic) or "shadow".
VARIANTS = {
    "fp32": (None, None),
    "fp16-store": ("fp16", "store"),
    "fp16-shadow": ("fp16", "shadow"),
    "fixed8-store": ("fixed8", "store"),
    "fixed8-store-sr": ("fixed8", "store-sr"),
    "fixed8-shadow": ("fixed8", "shadow"),
}


def _format_for(kind, w):
    if kind == "fp16":
        return FP16(on_overflow="ignore")
    return DynamicFixedPoint.from_tensor(w, bits=8, signed=True)


def apply_variant(model, variant: str, seed: int = 0):
    """Attach the transforms of ``variant`` (a key of ``VARIANTS``) to every parameter.

    fixed8 is 8-bit dynamic fixed point with a per-parameter fractional length chosen from
    the initial values (Ristretto's rule); the same grid serves both storage recipes.
    Returns the list of ``StoredLowPrecision`` transforms attached (empty for shadow/fp32).

    Raises:
        ValueError: an unknown variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"apply_variant: unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    kind, storage = VARIANTS[variant]
    stored = []
    for i, p in enumerate(model.parameters()):
        if kind is None:
            continue
        fmt = _format_for(kind, p.data)
        if storage == "shadow":
            scheme = "fp16" if kind == "fp16" else "dfp"
            p.add_transform(WeightQuant(scheme, bits=16 if kind == "fp16" else 8, dynamic=False, fmt=fmt))
        else:
            rounding = "stochastic" if storage == "store-sr" else "nearest"
            t = StoredLowPrecision(fmt, rounding=rounding, seed=(seed, i) if rounding == "stochastic" else None)
            t.attach(p)
            stored.append(t)
    return stored
