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

Beyond the weights (Gupta et al., 2015; Micikevicius et al., 2018): ``round_tensors``
puts a ``LowPrecisionTensors`` after every layer of a Sequential, so activations are
rounded onto fp16 or 8-bit fixed point in the forward pass and gradients in the backward
pass; ``LossScaler`` multiplies the loss so small gradients do not underflow the narrow
format, and divides them back before the float32 master weights are updated.
"""
from __future__ import annotations

import numpy as np

from ..nn.module import Module, ParamTransform
from ..tensor import Function, Tensor
from .fake import WeightQuant, _format_from_state, _format_state
from .formats import FP16, DynamicFixedPoint

__all__ = ["StoredLowPrecision", "VARIANTS", "apply_variant", "TENSOR_FORMATS", "TensorRounding",
           "LowPrecisionTensors", "round_tensors", "LossScaler"]


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


# ------------------------------------------------- activations and gradients (Gupta et al.)
#: Formats for the tensors that flow between layers: name -> factory of a fresh format.
#: "fp16" is IEEE binary16 (too-small values become subnormal or 0, too-large ones inf);
#: "fixed8" is 8-bit dynamic fixed point whose fractional length is chosen from each
#: tensor's largest magnitude every time it is rounded (one range per tensor per step).
TENSOR_FORMATS = ("fp16", "fixed8")


class TensorRounding:
    """Round a tensor onto a narrow format: fp16, or 8-bit fixed point ranged per call.

    Args:
        fmt: ``"fp16"`` or ``"fixed8"`` (see ``TENSOR_FORMATS``).
        rounding: ``"nearest"`` (ties to even) or ``"stochastic"`` (Gupta et al., 2015: round
            up with probability equal to the distance from the lower grid point, so the
            rounding is unbiased and small values survive in expectation).
        seed: int or ``np.random.Generator`` for stochastic rounding.

    ``round(v)`` returns v's dtype and shape; ``zeroed`` counts non-zero values rounded to
    0 (underflow), ``subnormal`` values left below fp16's normal range (2^-14, where
    relative precision is lost; fp16 only) and ``overflowed`` finite values rounded to inf.
    """

    def __init__(self, fmt: str, rounding: str = "nearest", seed=0):
        if fmt not in TENSOR_FORMATS:
            raise ValueError(f"TensorRounding: expected fmt in {TENSOR_FORMATS}, got {fmt!r}")
        if rounding not in ("nearest", "stochastic"):
            raise ValueError(f"TensorRounding: rounding must be 'nearest' or 'stochastic', got {rounding!r}")
        self.fmt, self.rounding = fmt, rounding
        self._rng = np.random.default_rng(seed) if rounding == "stochastic" else None
        self._fp16 = FP16(on_overflow="ignore")
        self.zeroed = self.subnormal = self.overflowed = self.seen = 0

    def round(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v)
        if not np.all(np.isfinite(v)):
            return v  # inf/NaN pass through: a loss scaler sees them and skips the step
        if self.fmt == "fp16":
            r = self._fp16.fake(v, self.rounding, self._rng)
            self.overflowed += int(np.count_nonzero(np.isinf(r)))
            self.subnormal += int(np.count_nonzero((r != 0) & (np.abs(r) < 2.0 ** -14)))
        else:
            peak = float(np.abs(v).max()) if v.size else 0.0
            if peak == 0.0:
                return v
            r = DynamicFixedPoint.from_range(peak, 8, True).fake(v, self.rounding, self._rng)
        r = np.asarray(r, dtype=v.dtype)
        self.zeroed += int(np.count_nonzero((r == 0) & (v != 0)))
        self.seen += int(v.size)
        return r


class _RoundForward(Function):
    """y = round(x) in the forward pass; the gradient passes straight through (STE)."""

    @staticmethod
    def forward(ctx, x, rounder=None):
        return rounder.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


class _RoundBackward(Function):
    """y = x in the forward pass; the gradient is rounded on its way back."""

    @staticmethod
    def forward(ctx, x, rounder=None):
        ctx.rounder = rounder
        return x

    @staticmethod
    def backward(ctx, g):
        return ctx.rounder.round(g)


class LowPrecisionTensors(Module):
    """Insert after a layer: its output is rounded forward, the gradient into it backward.

    ``act`` and ``grad`` are ``TensorRounding`` objects (or None to keep float32). The
    weights are not touched: combine with ``apply_variant`` for stored low-precision weights.
    Input and output: any shape; the values change, the shape does not.
    """

    def __init__(self, act=None, grad=None):
        super().__init__()
        self.act, self.grad = act, grad

    def forward(self, x):
        if self.act is not None:
            x = _RoundForward.apply(x, rounder=self.act)
        if self.grad is not None:
            x = _RoundBackward.apply(x, rounder=self.grad)
        return x

    def extra_repr(self):
        def name(r):
            return "float32" if r is None else f"{r.fmt}/{r.rounding}"
        return f"act={name(self.act)}, grad={name(self.grad)}"


def round_tensors(model, fmt: str, rounding: str = "nearest", acts: bool = True, grads: bool = True, seed: int = 0):
    """A copy-free rewrite of a ``Sequential``: a ``LowPrecisionTensors`` after every layer.

    Every layer's output (the activations) is rounded onto ``fmt`` in the forward pass and
    the gradient flowing into it in the backward pass. Returns ``(model, rounders)``: the
    new ``Sequential`` (sharing the layers and their parameters) and the list of all
    ``TensorRounding`` objects, whose counters say how much underflowed.

    Raises TypeError for a model that is not a ``Sequential``.
    """
    from ..nn import Sequential
    if not isinstance(model, Sequential):
        raise TypeError(f"round_tensors: expected an nn.Sequential, got {type(model).__name__}")
    layers, rounders = [], []
    for i, layer in enumerate(model):
        layers.append(layer)
        act = TensorRounding(fmt, rounding, seed=(seed, i, 0)) if acts else None
        grad = TensorRounding(fmt, rounding, seed=(seed, i, 1)) if grads else None
        rounders += [r for r in (act, grad) if r is not None]
        layers.append(LowPrecisionTensors(act, grad))
    return Sequential(*layers), rounders


class LossScaler:
    """Loss scaling for low-precision gradients (static, or dynamic as in mixed-precision training).

    Small gradients underflow a narrow format (fp16's smallest subnormal is 6e-8). Multiplying
    the loss by ``S`` before ``backward`` multiplies every gradient by ``S`` and lifts them
    into range; ``unscale`` divides the float32 parameter gradients by ``S`` again before the
    optimizer step. With ``dynamic=True`` an inf/NaN gradient means ``S`` was too large: the
    step is skipped and ``S`` halves; after ``interval`` good steps in a row ``S`` doubles.

    Usage per step::

        loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        if scaler.unscale(model.parameters()):
            opt.step()
        scaler.update()
    """

    def __init__(self, scale: float = 2.0 ** 12, dynamic: bool = True, interval: int = 200):
        if not (isinstance(scale, (int, float, np.integer, np.floating)) and np.isfinite(scale) and scale > 0):
            raise ValueError(f"LossScaler: scale must be a finite number > 0, got {scale!r}")
        if isinstance(interval, bool) or not isinstance(interval, (int, np.integer)) or interval < 1:
            raise ValueError(f"LossScaler: interval must be an int >= 1, got {interval!r}")
        self.scale_value, self.dynamic, self.interval = float(scale), bool(dynamic), int(interval)
        self.skipped = self._good = 0
        self._ok = True

    def scale(self, loss: Tensor) -> Tensor:
        """``loss * S`` (a Tensor, so ``backward`` sends S-times larger gradients)."""
        return loss * self.scale_value

    def unscale(self, params) -> bool:
        """Divide each parameter's gradient by S; False (and grads cleared) if any is inf/NaN."""
        params = [p for p in params if p.grad is not None]
        self._ok = all(np.all(np.isfinite(p.grad)) for p in params)
        for p in params:
            p.grad = None if not self._ok else p.grad / self.scale_value
        return self._ok

    def update(self):
        """Adjust S after a step (dynamic scaling only); counts skipped steps."""
        if not self._ok:
            self.skipped += 1
            self._good = 0
            if self.dynamic:
                self.scale_value = max(self.scale_value / 2.0, 1.0)
            return
        self._good += 1
        if self.dynamic and self._good >= self.interval:
            self.scale_value *= 2.0
            self._good = 0
