"""Fake quantization: quantize-dequantize in the forward pass, straight-through in the backward.

* ``FakeQuant`` is the ``Function``: forward ``fmt.fake(x)``; backward the
  straight-through estimator (STE) ``grad * [low <= x <= high]`` — identity inside the
  format's clipping range, zero outside (where the output is saturated and does not move).
* ``WeightQuant`` is the ``ParamTransform`` that fake-quantizes a weight: the optimizer
  keeps updating the full-precision *shadow* weight, the forward pass sees its quantized
  value. With ``dynamic=True`` (default) the format is recalibrated from the shadow weight
  at every forward, so the grid follows the weights during training.
* ``AccumulatorBias`` quantizes a bias to int32 on the accumulator's grid
  (``scale = input_scale * weight_scale``), as integer inference stores it.
* ``ActQuant`` is the module inserted in front of a layer to quantize its input
  activations: it observes ranges during calibration, then fake-quantizes with a frozen
  range (or an exponential moving average of it while training, for QAT).

Schemes (``make_format``): ``"fp16"``, ``"int8"`` (alias ``"affine"``: b-bit affine integers),
``"dfp"`` (dynamic fixed point), ``"minifloat"`` and ``"pow2"`` (power-of-two weights;
activations then use dynamic fixed point, so that the layer is multiplier-free).
"""
from __future__ import annotations

import json

import numpy as np

from ..nn.module import Module, ParamTransform
from ..tensor import Function, Tensor
from .formats import FP16, Affine, DynamicFixedPoint, Minifloat, PowerOfTwo
from .observers import get_observer

__all__ = ["SCHEMES", "make_format", "FakeQuant", "fake_quant", "WeightQuant", "AccumulatorBias", "ActQuant"]

SCHEMES = ("fp16", "int8", "affine", "dfp", "minifloat", "pow2")


def _minifloat_bits(bits, exp_bits, man_bits):
    if exp_bits is None and man_bits is None:
        exp_bits = 4 if bits is None or bits >= 8 else max(1, (bits - 1) // 2)
    if man_bits is None:
        man_bits = (8 if bits is None else bits) - 1 - exp_bits
    if exp_bits is None:
        exp_bits = bits - 1 - man_bits
    if man_bits < 0 or exp_bits < 1:
        raise ValueError(f"minifloat: cannot split {bits} bits into 1 sign, {exp_bits} exponent, {man_bits} mantissa bits")
    return int(exp_bits), int(man_bits)


def make_format(scheme, low, high, bits=8, role="weight", axis=None, symmetric=True, pow2_scale=False,
                exp_bits=None, man_bits=None, signed=None, on_overflow="warn"):
    """A calibrated number format for values in [low, high].

    Args:
        scheme: one of ``SCHEMES``.
        low, high: range (floats; 1-D per channel along ``axis`` for ``int8``/``affine``).
        bits: total bits (ignored for fp16; for minifloat ``1 + exp_bits + man_bits``).
        role: ``"weight"`` or ``"act"``: pow2 activations use dynamic fixed point, and
            dynamic fixed point parameters are always signed (Ristretto's +1 for the sign).
        axis: per-channel axis (``int8``/``affine`` only).
        symmetric, pow2_scale: affine options (see ``Affine.from_range``).
        exp_bits, man_bits: minifloat split (default 4 exponent bits, e.g. 1-4-3 at 8 bits).
        signed: dfp activations: None = signed iff low < 0.
        on_overflow: fp16 overflow policy.

    Raises:
        ValueError: unknown scheme, or per-channel requested for a scheme without it.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"make_format: unknown scheme {scheme!r}; expected one of {SCHEMES}")
    if axis is not None and scheme not in ("int8", "affine"):
        raise ValueError(f"make_format: per-channel ranges are supported for int8/affine only, not {scheme!r}")
    max_abs = float(np.max(np.maximum(np.abs(low), np.abs(high))))
    if scheme == "fp16":
        return FP16(on_overflow)
    if scheme in ("int8", "affine"):
        return Affine.from_range(low, high, bits, symmetric, axis, pow2_scale)
    if scheme == "minifloat":
        e, m = _minifloat_bits(bits, exp_bits, man_bits)
        return Minifloat.from_range(max_abs, e, m)
    if scheme == "pow2" and role == "weight":
        return PowerOfTwo.from_range(max_abs, bits)
    if signed is None:
        signed = True if role == "weight" else bool(np.min(low) < 0)
    return DynamicFixedPoint.from_range(max_abs, bits, signed)


def _bounds_for(fmt, ndim):
    if isinstance(fmt, Affine):
        return fmt.channel_bounds(ndim)
    return fmt.bounds()


class FakeQuant(Function):
    """y = fmt.fake(x); dy/dx = 1 where ``low <= x <= high`` (the format's range), else 0."""

    @staticmethod
    def forward(ctx, x, fmt=None, rounding="nearest", rng=None):
        lo, hi = _bounds_for(fmt, x.ndim)
        ctx.save_for_backward((x >= lo) & (x <= hi))
        return np.asarray(fmt.fake(x, rounding, rng), dtype=x.dtype)

    @staticmethod
    def backward(ctx, g):
        (inside,) = ctx.saved
        return g * inside


def fake_quant(x, fmt, rounding="nearest", rng=None) -> Tensor:
    """Differentiable fake quantization of a Tensor with a straight-through estimator."""
    return FakeQuant.apply(x, fmt=fmt, rounding=rounding, rng=rng)


def _format_state(prefix, fmt):
    out = {f"{prefix}class": np.array(type(fmt).__name__)}
    for k, v in fmt.state().items():
        out[f"{prefix}{k}"] = np.asarray(v)
    return out


def _format_from_state(prefix, state):
    if f"{prefix}class" not in state:
        return None
    name = str(state[f"{prefix}class"])
    classes = {"Affine": Affine, "DynamicFixedPoint": DynamicFixedPoint, "Minifloat": Minifloat, "FP16": FP16,
               "PowerOfTwo": PowerOfTwo}
    fields = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k != f"{prefix}class"}
    return classes[name].from_state(fields)


class WeightQuant(ParamTransform):
    """Fake-quantize a parameter with a scheme; the optimizer updates the full-precision shadow.

    Args:
        scheme: one of ``SCHEMES``; bits: code width.
        per_channel: one range per output channel (axis 0) — int8/affine only.
        dynamic: recalibrate the format from the current weights at every forward (default);
            otherwise calibrate once, at the first forward, and keep it.
        rounding: ``"nearest"`` or ``"stochastic"`` (with ``seed``).
        **options: passed to ``make_format`` (symmetric, pow2_scale, exp_bits, man_bits ...).

    ``self.fmt`` is the format of the latest forward: ``fmt.quantize(param.data)`` gives the
    integer codes that an export stores.
    """

    order = ParamTransform.QUANTIZE

    def __init__(self, scheme="int8", bits=8, per_channel=False, dynamic=True, rounding="nearest", seed=None,
                 fmt=None, **options):
        if scheme not in SCHEMES:
            raise ValueError(f"WeightQuant: unknown scheme {scheme!r}; expected one of {SCHEMES}")
        self.scheme, self.bits, self.per_channel = scheme, int(bits), bool(per_channel)
        self.dynamic, self.rounding, self.seed = bool(dynamic), rounding, seed
        self.options = dict(options)
        self.fmt = fmt
        self._rng = np.random.default_rng(seed) if rounding == "stochastic" else None

    def calibrate(self, w: np.ndarray):
        """Build ``self.fmt`` from the values of ``w`` (min-max, per channel if asked)."""
        w = np.asarray(w, dtype=np.float64)
        if self.per_channel:
            red = tuple(range(1, w.ndim))
            lo, hi = (w.min(axis=red), w.max(axis=red)) if w.size else (np.zeros(len(w)), np.zeros(len(w)))
            self.fmt = make_format(self.scheme, lo, hi, self.bits, "weight", axis=0, **self.options)
        else:
            lo, hi = (w.min(), w.max()) if w.size else (0.0, 0.0)
            self.fmt = make_format(self.scheme, lo, hi, self.bits, "weight", **self.options)
        return self.fmt

    def __call__(self, w: Tensor) -> Tensor:
        if self.dynamic or self.fmt is None:
            self.calibrate(w.data)
        return fake_quant(w, self.fmt, self.rounding, self._rng)

    def codes(self, w: np.ndarray) -> np.ndarray:
        """Integer codes of ``w`` under the current format (calibrating first if needed)."""
        if self.dynamic or self.fmt is None:
            self.calibrate(w)
        return self.fmt.quantize(w)

    def state(self):
        out = {"scheme": np.array(self.scheme), "bits": np.array(self.bits),
               "per_channel": np.array(self.per_channel), "dynamic": np.array(self.dynamic),
               "rounding": np.array(self.rounding), "options": np.array(json.dumps(self.options))}
        if self.fmt is not None:
            out.update(_format_state("fmt.", self.fmt))
        return out

    @classmethod
    def from_state(cls, s):
        return cls(str(s["scheme"]), int(s["bits"]), bool(s["per_channel"]), bool(s["dynamic"]),
                   str(s["rounding"]), fmt=_format_from_state("fmt.", s), **json.loads(str(s["options"])))

    def __repr__(self):
        pc = ", per_channel" if self.per_channel else ""
        return f"WeightQuant({self.scheme}, bits={self.bits}{pc})"


class AccumulatorBias(ParamTransform):
    """Bias rounded to int32 codes on the accumulator grid: ``b ~ clip(round(b / scale)) * scale``.

    ``scale`` is ``input_scale * weight_scale`` (scalar, or (out,) per output channel); the
    integer layer adds these int32 codes to its int32 accumulator. Gradient: straight through.
    """

    order = ParamTransform.QUANTIZE

    def __init__(self, scale):
        scale = np.asarray(scale, dtype=np.float64)
        self.fmt = Affine(32, scale if scale.ndim else float(scale), 0, True, 0 if scale.ndim else None)

    def __call__(self, b: Tensor) -> Tensor:
        return fake_quant(b, self.fmt)

    def state(self):
        return {"scale": self.fmt.scale}

    @classmethod
    def from_state(cls, s):
        return cls(s["scale"])

    def __repr__(self):
        return "AccumulatorBias(int32)"


MODES = ("observe", "quantize", "off")


class ActQuant(Module):
    """Quantizes the activations that flow through it (insert it in front of a layer).

    Modes (``self.mode``): ``"observe"`` records ranges and passes values through
    (calibration); ``"quantize"`` fake-quantizes with the range in the buffer ``qrange``;
    ``"off"`` is the identity. With ``track=True`` and in training mode, ``quantize``
    also updates the range from each batch with the observer (use
    ``observer="moving_average"``) — quantization-aware training. An observer that has
    seen nothing yet starts from ``qrange``, so a run resumed from a checkpoint (which
    saves ``qrange`` and the mode) continues the moving average where it stopped.

    Args:
        scheme, bits: as ``make_format`` (``role="act"``); ``observer``: ``"minmax"``,
        ``"moving_average"``, ``"percentile"`` or an ``Observer``; ``rounding``/``seed``;
        ``**options`` passed to ``make_format``.
    """

    def __init__(self, scheme="int8", bits=8, observer="minmax", rounding="nearest", seed=None, track=False,
                 **options):
        super().__init__()
        if scheme not in SCHEMES:
            raise ValueError(f"ActQuant: unknown scheme {scheme!r}; expected one of {SCHEMES}")
        self.scheme, self.bits, self.rounding, self.track = scheme, int(bits), rounding, bool(track)
        self.options = dict(options)
        self.observer = get_observer(observer)
        self._rng = np.random.default_rng(seed) if rounding == "stochastic" else None
        self.register_buffer("qrange", np.array([np.nan, np.nan]))
        self.register_buffer("mode_index", np.array(MODES.index("observe"), dtype=np.int64))
        self._cache = (None, None)

    @property
    def mode(self) -> str:
        """One of ``MODES``; kept in the buffer ``mode_index`` so a saved model reloads in its mode."""
        return MODES[int(self.mode_index)]

    @mode.setter
    def mode(self, value: str):
        if value not in MODES:
            raise ValueError(f"ActQuant: unknown mode {value!r}; expected one of {MODES}")
        self.mode_index = np.array(MODES.index(value), dtype=np.int64)

    @property
    def fmt(self):
        """The format for the current ``qrange`` (rebuilt when the range changes).

        Raises:
            RuntimeError: no range yet (not calibrated).
        """
        key = tuple(np.asarray(self.qrange, dtype=np.float64).tolist())
        if self._cache[0] != key:
            if self.scheme != "fp16" and not np.all(np.isfinite(key)):
                raise RuntimeError("ActQuant: no activation range yet; calibrate (quant.calibrate) before quantizing")
            lo, hi = key if self.scheme != "fp16" else (0.0, 0.0)
            self._cache = (key, make_format(self.scheme, lo, hi, self.bits, "act", **self.options))
        return self._cache[1]

    def freeze(self):
        """Take the observed range (if any) and switch to ``quantize`` mode."""
        if self.observer.low is not None:
            self.qrange = np.array(self.observer.range(), dtype=np.float64)
        self.mode = "quantize"
        return self

    def forward(self, x):
        if self.mode == "off":
            return x
        if self.mode == "observe":
            self.observer.update(x.data)
            return x
        if self.training and self.track:
            if self.observer.low is None and np.all(np.isfinite(self.qrange)):
                self.observer.low, self.observer.high = self.qrange   # continue from the saved range
            self.observer.update(x.data)
            self.qrange = np.array(self.observer.range(), dtype=np.float64)
        return fake_quant(x, self.fmt, self.rounding, self._rng)

    def extra_repr(self):
        return f"{self.scheme}, bits={self.bits}, mode={self.mode}"

