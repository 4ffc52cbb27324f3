"""Number formats for quantization: each one a ``quantize`` / ``dequantize`` pair on NumPy arrays.

Every format here is a *grid* of representable values. ``quantize(x)`` maps real values
to integer codes on that grid, ``dequantize(codes)`` maps codes back to reals, and
``fake(x) = dequantize(quantize(x))`` is the value a quantized network computes with.

Rounding (every format, ``rounding=`` argument):

* ``"nearest"``: round to the nearest grid point, **ties to even** (the IEEE 754 default,
  ``np.rint``): 0.5 -> 0, 1.5 -> 2, 2.5 -> 2. For minifloats "even" means an even last
  mantissa bit, exactly as IEEE float16 does; for power-of-two weights the rounding
  happens on log2|x| (see ``PowerOfTwo``).
* ``"stochastic"``: round down or up at random with probability proportional to the
  distance, ``floor(v + u)`` with ``u ~ U[0, 1)`` drawn from ``rng`` (a seed or a
  ``np.random.Generator``), so that E[fake(x)] = x for in-range x (unbiased).

Saturation: values beyond the largest representable magnitude are clipped to it (no
wrap-around, no infinity), except ``FP16`` which follows IEEE 754 and overflows to inf,
reporting it (``on_overflow="warn" | "raise" | "ignore"``). NaN and +-inf are refused with a
``ValueError`` by every format that has no code for them (all but FP16 and IEEE-style minifloats).

Formats (``bits`` counts the sign bit; ``step`` is the distance between neighbours):

=================  ===========================================  ==========================
format             value of code q                               parameters (side info)
=================  ===========================================  ==========================
``Affine``         ``(q - zero_point) * scale``                  scale, zero point (per tensor
                                                                 or per channel)
``DynamicFixedPoint``  ``q * 2**-frac_length``                   fractional length (1 int)
``Minifloat``      ``(-1)^s 2^(e - bias) (1 + m / 2^M)``         exponent bias (1 int)
``FP16``           IEEE binary16                                 none
``PowerOfTwo``     ``sign * 2**e``, or 0                         exponent range (2 ints)
=================  ===========================================  ==========================

All of them expose ``quantize``, ``dequantize``, ``fake``, ``bounds()`` (the clipping range
used by the straight-through estimator), ``levels()`` (the representable values, for
plots), ``code_bits`` and ``side_bytes`` (bytes of scales / zero points / exponents, for
honest size accounting), and ``state()`` / ``from_state()`` for saving.
"""
from __future__ import annotations

import warnings

import numpy as np

__all__ = ["round_values", "Format", "Affine", "DynamicFixedPoint", "Minifloat", "FP16", "PowerOfTwo",
           "FP16OverflowError", "FP16OverflowWarning", "get_format"]


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def round_values(v: np.ndarray, rounding: str = "nearest", rng=None) -> np.ndarray:
    """Round real values to integers (still a float array).

    Args:
        v: array of any shape, float.
        rounding: ``"nearest"`` (ties to even) or ``"stochastic"`` (``floor(v + u)``,
            ``u ~ U[0,1)``).
        rng: seed or ``np.random.Generator`` for stochastic rounding (default seed 0).

    Raises:
        ValueError: unknown rounding mode.
    """
    if rounding == "nearest":
        return np.rint(v)
    if rounding == "stochastic":
        return np.floor(v + _rng(rng).random(np.shape(v)))
    raise ValueError(f"round: rounding must be 'nearest' or 'stochastic', got {rounding!r}")


def _as_float(op, x):
    """``x`` as a float array (float dtypes kept, ints and bools cast to float64).

    Raises:
        TypeError: ``x`` is not a real (float, int, unsigned or bool) array.
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{op}: expected a real array, got dtype {arr.dtype}")
    return arr.astype(np.float64) if arr.dtype.kind != "f" else arr


def _check_finite(op, x):
    """Refuse NaN and +-inf: the integer grids have no code for them, so a result would be garbage.

    Raises:
        ValueError: ``x`` holds a NaN or an infinity (the message counts them).
    """
    finite = np.isfinite(x)
    if not np.all(finite):
        n_nan = int(np.count_nonzero(np.isnan(x)))
        raise ValueError(f"{op}: expected finite values, got {n_nan} NaN and {finite.size - int(finite.sum()) - n_nan} "
                         f"infinite value(s) out of {finite.size}")
    return x


def _check_bits(op, bits, low=1, high=32):
    """``bits`` as an int after checking it is an integer (not a bool) in ``[low, high]``.

    Raises:
        ValueError: anything else.
    """
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not low <= bits <= high:
        raise ValueError(f"{op}: bits must be an integer in [{low}, {high}], got {bits!r}")
    return int(bits)


def channel_axis(op, axis, ndim):
    """``axis`` normalised to ``[0, ndim)`` (negative counts from the end), for per-channel ranges.

    Raises:
        ValueError: ``axis`` is not an integer or lies outside ``[-ndim, ndim)``.
    """
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ValueError(f"{op}: the per-channel axis must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: per-channel axis {axis} is out of range for an input with {ndim} dimension(s)")
    return int(axis) % ndim


def channel_min_max(op, x, axis=None):
    """Smallest and largest value of a float array, overall or per channel.

    Args:
        x: float array of any shape, non-empty, finite.
        axis: ``None`` for two floats, or the channel axis for two 1-D float64 arrays of
            length ``x.shape[axis]``.

    Raises:
        ValueError: empty ``x``, NaN or inf in ``x``, or ``axis`` out of range.
    """
    if x.size == 0:
        raise ValueError(f"{op}: expected a non-empty array to take a range from, got shape {x.shape}")
    _check_finite(op, x)
    if axis is None:
        return float(x.min()), float(x.max())
    axis = channel_axis(op, axis, x.ndim)
    red = tuple(i for i in range(x.ndim) if i != axis)
    return x.min(axis=red).astype(np.float64), x.max(axis=red).astype(np.float64)


def _channel_shape(ndim, axis, n):
    shape = [1] * ndim
    shape[axis] = n
    return tuple(shape)


class Format:
    """Common interface of the number formats (see the module docstring)."""

    name = "format"
    code_bits = 32

    def quantize(self, x, rounding="nearest", rng=None) -> np.ndarray:
        """Integer codes of ``x`` (any shape, real): same shape, an integer dtype per format.

        Raises:
            TypeError: non-real ``x``. ValueError: NaN/inf in ``x`` for a format without codes for them.
        """
        raise NotImplementedError

    def dequantize(self, q) -> np.ndarray:
        """Real values (float64, ``q``'s shape) of integer codes ``q``."""
        raise NotImplementedError

    def fake(self, x, rounding="nearest", rng=None) -> np.ndarray:
        """``dequantize(quantize(x))`` in ``x``'s floating dtype (float32 stays float32)."""
        x = _as_float(f"{self.name}.fake", x)
        return self.dequantize(self.quantize(x, rounding, rng)).astype(x.dtype, copy=False)

    def bounds(self):
        """(low, high) clipping range: arrays broadcastable against the input, or scalars."""
        raise NotImplementedError

    def levels(self) -> np.ndarray:
        """Sorted representable values (per-tensor formats; first channel for per-channel ones)."""
        raise NotImplementedError

    @property
    def side_bytes(self) -> int:
        """Bytes of side information (scales, zero points, exponents) stored with the codes."""
        return 0

    def nbytes(self, n_elements: int) -> float:
        """Storage of ``n_elements`` codes packed at ``code_bits`` each, plus side information."""
        return n_elements * self.code_bits / 8 + self.side_bytes

    def state(self) -> dict:
        """The parameters as a dict of NumPy scalars/arrays (savable with ``np.savez``)."""
        raise NotImplementedError

    @classmethod
    def from_state(cls, state: dict) -> "Format":
        """The format rebuilt from ``state()``'s dict."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.describe()})"

    def describe(self) -> str:
        """One line of parameters, for ``repr`` and printed tables."""
        return ""


# ------------------------------------------------------------------------ affine
class Affine(Format):
    """Uniform b-bit integers with a real scale: ``x ~ (q - zero_point) * scale``.

    * symmetric: ``zero_point = 0``, codes in ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (the
      "narrow" range: int8 weights in [-127, 127], so that -x is representable whenever x
      is, and products of two codes never reach -128 * -128);
    * asymmetric: codes in ``[0, 2^b - 1]`` with an integer ``zero_point`` so that 0.0
      is represented exactly.

    ``scale`` and ``zero_point`` are scalars (per tensor) or 1-D arrays along ``axis``
    (per channel, e.g. axis 0 = output channel of a weight). Build one from data with
    ``Affine.from_range(low, high, bits, symmetric)``; with ``pow2_scale`` the scale is
    rounded *up* to a power of two (so no calibrated value saturates), which is what
    makes integer inference equal to this simulation bit for bit.

    Raises:
        ValueError: bad bits, non-positive or non-finite scale, zero point out of range.
    """

    name = "affine"

    def __init__(self, bits=8, scale=1.0, zero_point=0, symmetric=True, axis=None):
        self.bits = _check_bits("Affine", bits, 1 if not symmetric else 2, 32)
        self.symmetric = bool(symmetric)
        self.axis = axis
        scale = np.asarray(scale, dtype=np.float64)
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError(f"Affine: scale must be finite and > 0, got {scale}")
        if axis is None and scale.ndim != 0:
            raise ValueError(f"Affine: a per-tensor quantizer needs a scalar scale, got shape {scale.shape}")
        if axis is not None and scale.ndim != 1:
            raise ValueError(f"Affine: a per-channel quantizer (axis={axis}) needs a 1-D scale, got shape {scale.shape}")
        zp = np.broadcast_to(np.asarray(zero_point, dtype=np.int64), scale.shape).copy()
        if self.symmetric:
            self.qmin, self.qmax = -(2 ** (self.bits - 1) - 1), 2 ** (self.bits - 1) - 1
            if np.any(zp != 0):
                raise ValueError("Affine: a symmetric quantizer has zero_point 0")
        else:
            self.qmin, self.qmax = 0, 2 ** self.bits - 1
            if np.any((zp < self.qmin) | (zp > self.qmax)):
                raise ValueError(f"Affine: zero_point must lie in [{self.qmin}, {self.qmax}], got {zp}")
        self.scale, self.zero_point = scale, zp
        self.code_bits = self.bits

    @classmethod
    def from_range(cls, low, high, bits=8, symmetric=True, axis=None, pow2_scale=False):
        """Quantizer whose grid covers [low, high] (scalars, or 1-D per channel along ``axis``).

        Symmetric: ``scale = max(|low|, |high|) / qmax``. Asymmetric: the range is widened to
        contain 0, ``scale = (high - low) / (2^b - 1)``, ``zero_point = round(-low / scale)``.
        An all-zero range gets scale 1 (any scale represents zeros exactly).
        """
        bits = _check_bits("Affine.from_range", bits, 1 if not symmetric else 2, 32)
        low = np.minimum(_check_finite("Affine.from_range (low)", np.asarray(low, dtype=np.float64)), 0.0)
        high = np.maximum(_check_finite("Affine.from_range (high)", np.asarray(high, dtype=np.float64)), 0.0)
        if symmetric:
            qmax = 2 ** (bits - 1) - 1
            scale = np.maximum(np.abs(low), np.abs(high)) / qmax
        else:
            scale = (high - low) / (2 ** bits - 1)
        scale = np.where(scale > 0, scale, 1.0)
        if pow2_scale:
            scale = 2.0 ** np.ceil(np.log2(scale))
        zp = 0 if symmetric else np.clip(np.rint(-low / scale), 0, 2 ** bits - 1).astype(np.int64)
        return cls(bits, scale if axis is not None else float(scale), zp, symmetric, axis)

    @classmethod
    def from_tensor(cls, x, bits=8, symmetric=True, axis=None, pow2_scale=False):
        """Min-max calibration on ``x`` itself (per channel along ``axis`` when given)."""
        x = _as_float("Affine.from_tensor", x)
        if axis is None and x.size == 0:
            lo, hi = 0.0, 0.0
        else:
            lo, hi = channel_min_max("Affine.from_tensor", x, axis)
            axis = None if axis is None else channel_axis("Affine.from_tensor", axis, x.ndim)
        return cls.from_range(lo, hi, bits, symmetric, axis, pow2_scale)

    def _params(self, x):
        if self.axis is None:
            return self.scale, self.zero_point
        axis = channel_axis("affine", self.axis, x.ndim)
        if x.shape[axis] != self.scale.size:
            raise ValueError(f"affine: per-channel quantizer has {self.scale.size} channels on axis {self.axis}, "
                             f"input has shape {x.shape}")
        shp = _channel_shape(x.ndim, axis, self.scale.size)
        return self.scale.reshape(shp), self.zero_point.reshape(shp)

    def quantize(self, x, rounding="nearest", rng=None):
        """Integer codes ``clip(round(x / scale) + zero_point, qmin, qmax)`` as int64 (x's shape).

        Raises:
            ValueError: NaN or inf in ``x``; wrong channel count or axis for a per-channel quantizer.
        """
        x = _check_finite("affine.quantize", _as_float("affine.quantize", x))
        scale, zp = self._params(x)
        q = round_values(x / scale, rounding, rng) + zp
        return np.clip(q, self.qmin, self.qmax).astype(np.int64)

    def dequantize(self, q):
        """Reals ``(q - zero_point) * scale`` (float64, q's shape) of integer codes ``q``."""
        q = np.asarray(q)
        scale, zp = self._params(q)
        return (q - zp) * scale

    def bounds(self):
        return (self.qmin - self.zero_point) * self.scale, (self.qmax - self.zero_point) * self.scale

    def channel_bounds(self, ndim):
        """``bounds()`` reshaped to broadcast against an ``ndim``-dimensional input."""
        lo, hi = self.bounds()
        if self.axis is None:
            return lo, hi
        shp = _channel_shape(ndim, channel_axis("affine.channel_bounds", self.axis, ndim), self.scale.size)
        return lo.reshape(shp), hi.reshape(shp)

    def levels(self):
        s = float(np.ravel(self.scale)[0])
        z = int(np.ravel(self.zero_point)[0])
        return (np.arange(self.qmin, self.qmax + 1) - z) * s

    @property
    def side_bytes(self):
        n = self.scale.size
        return 4 * n + (0 if self.symmetric else 4 * n)

    def state(self):
        return {"bits": np.array(self.bits), "scale": self.scale, "zero_point": self.zero_point,
                "symmetric": np.array(self.symmetric), "axis": np.array(-999 if self.axis is None else self.axis)}

    @classmethod
    def from_state(cls, s):
        axis = int(s["axis"])
        axis = None if axis == -999 else axis
        scale = np.asarray(s["scale"], dtype=np.float64)
        return cls(int(s["bits"]), scale if axis is not None else float(scale), np.asarray(s["zero_point"]),
                   bool(s["symmetric"]), axis)

    def describe(self):
        kind = "symmetric" if self.symmetric else "asymmetric"
        where = "per-tensor" if self.axis is None else f"per-channel(axis={self.axis})"
        return f"bits={self.bits}, {kind}, {where}"


# --------------------------------------------------------------- dynamic fixed point
class DynamicFixedPoint(Format):
    """Ristretto's dynamic fixed point: b-bit integers with a per-layer power-of-two step.

    Value of code q: ``q * 2**-frac_length``. Signed codes lie in ``[-2^(b-1), 2^(b-1) - 1]``
    (two's complement), unsigned ones (``signed=False``, for ReLU outputs) in ``[0, 2^b - 1]``.
    The integer length IL and fractional length FL add up to b: ``FL = b - IL``. Build one
    from data with ``from_range(max_abs, bits, signed)``: ``IL = ceil(log2(max|x|))``, plus one
    for the sign bit when signed (Ristretto's rule for parameters and activations).
    """

    name = "dfp"

    def __init__(self, bits=8, frac_length=0, signed=True):
        self.bits = _check_bits("DynamicFixedPoint", bits, 1, 32)
        if not isinstance(frac_length, (int, np.integer)) or isinstance(frac_length, bool):
            raise ValueError(f"DynamicFixedPoint: frac_length must be an integer, got {frac_length!r}")
        self.frac_length = int(frac_length)
        self.signed = bool(signed)
        if self.signed:
            self.qmin, self.qmax = -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
        else:
            self.qmin, self.qmax = 0, 2 ** self.bits - 1
        self.step = 2.0 ** -self.frac_length
        self.code_bits = self.bits

    @classmethod
    def from_range(cls, max_abs, bits=8, signed=True):
        """``IL = ceil(log2(max_abs)) + signed``; ``FL = bits - IL``. max_abs <= 0 gives FL = bits - 1."""
        bits = _check_bits("DynamicFixedPoint.from_range", bits, 1, 32)
        max_abs = float(max_abs)
        if not np.isfinite(max_abs):
            raise ValueError(f"DynamicFixedPoint.from_range: max_abs must be finite, got {max_abs}")
        il = int(np.ceil(np.log2(max_abs))) if max_abs > 0 else 0
        il += int(bool(signed))
        return cls(bits, bits - il, signed)

    @classmethod
    def from_tensor(cls, x, bits=8, signed=None):
        """Range from ``x``; ``signed=None`` means signed iff ``x`` has negative values."""
        x = _check_finite("DynamicFixedPoint.from_tensor", _as_float("DynamicFixedPoint.from_tensor", x))
        if signed is None:
            signed = bool(x.size and x.min() < 0)
        return cls.from_range(np.abs(x).max() if x.size else 0.0, bits, signed)

    @property
    def integer_length(self):
        return self.bits - self.frac_length

    def quantize(self, x, rounding="nearest", rng=None):
        """Integer codes ``clip(round(x * 2^FL), qmin, qmax)`` as int64 (x's shape).

        Raises:
            ValueError: NaN or inf in ``x``.
        """
        x = _check_finite("dfp.quantize", _as_float("dfp.quantize", x))
        q = round_values(np.ldexp(x, self.frac_length), rounding, rng)
        return np.clip(q, self.qmin, self.qmax).astype(np.int64)

    def dequantize(self, q):
        """Reals ``q * 2^-FL`` (float64, q's shape)."""
        return np.ldexp(np.asarray(q, dtype=np.float64), -self.frac_length)

    def bounds(self):
        return self.qmin * self.step, self.qmax * self.step

    def levels(self):
        return np.arange(self.qmin, self.qmax + 1) * self.step

    @property
    def side_bytes(self):
        return 1

    def state(self):
        return {"bits": np.array(self.bits), "frac_length": np.array(self.frac_length),
                "signed": np.array(self.signed)}

    @classmethod
    def from_state(cls, s):
        return cls(int(s["bits"]), int(s["frac_length"]), bool(s["signed"]))

    def describe(self):
        return f"bits={self.bits}, IL={self.integer_length}, FL={self.frac_length}, signed={self.signed}"


# ------------------------------------------------------------------------ minifloat
class Minifloat(Format):
    """A small floating-point format: 1 sign bit, ``exp_bits`` exponent, ``man_bits`` mantissa.

    Value of (s, e, m): normal ``(-1)^s 2^(e - bias) (1 + m / 2^M)`` for ``e >= 1``;
    subnormal ``(-1)^s 2^(1 - bias) (m / 2^M)`` for ``e = 0`` (gradual underflow to 0).

    * ``saturate=True`` (default, as in the lecture's 8-bit formats): every exponent code is
      a finite value and overflow clips to the largest magnitude ``2^emax (2 - 2^-M)``,
      ``emax = 2^E - 1 - bias``; no infinities or NaNs.
    * ``saturate=False`` (IEEE 754 style, used for ``FP16``): the top exponent code is
      reserved for inf/NaN, ``emax = 2^E - 2 - bias``, and values that round beyond the
      largest finite magnitude become +-inf.

    Rounding to nearest ties to even *on the mantissa* (as IEEE does; with ``man_bits=0``
    the significand is 1 or 2 and a tie goes to 2, up in magnitude); the step in the
    binade of x is ``2^(max(floor(log2|x|), 1 - bias) - M)``.

    ``from_range(max_abs, exp_bits, man_bits)`` picks the bias so that the largest
    magnitude just covers ``max_abs`` (the lecture's "exponent bias chosen from the range").
    Codes are unsigned integers ``s << (E+M) | e << M | m``.
    """

    name = "minifloat"

    def __init__(self, exp_bits=4, man_bits=3, bias=None, saturate=True, subnormals=True):
        if not isinstance(exp_bits, (int, np.integer)) or isinstance(exp_bits, bool) or not 1 <= exp_bits <= 8:
            raise ValueError(f"Minifloat: exp_bits must be an integer in [1, 8], got {exp_bits!r}")
        if not isinstance(man_bits, (int, np.integer)) or isinstance(man_bits, bool) or not 0 <= man_bits <= 23:
            raise ValueError(f"Minifloat: man_bits must be an integer in [0, 23], got {man_bits!r}")
        if not saturate and exp_bits < 2:
            raise ValueError("Minifloat: an IEEE-style (saturate=False) format needs exp_bits >= 2")
        self.exp_bits, self.man_bits = int(exp_bits), int(man_bits)
        self.bias = 2 ** (self.exp_bits - 1) - 1 if bias is None else int(bias)
        self.saturate, self.subnormals = bool(saturate), bool(subnormals)
        top = 2 ** self.exp_bits - 1 if self.saturate else 2 ** self.exp_bits - 2
        self.emax = top - self.bias
        self.emin = 1 - self.bias
        if self.emax > 1023 or self.emin - self.man_bits < -1074:
            raise ValueError(f"Minifloat: bias {self.bias} puts the exponents {self.emin}..{self.emax} (smallest step "
                             f"2^{self.emin - self.man_bits}) outside float64, which simulates the format; expected "
                             f"emax <= 1023 and emin - man_bits >= -1074")
        self.max_value = float(np.ldexp(2.0 - 2.0 ** -self.man_bits, self.emax))
        self.min_normal = float(np.ldexp(1.0, self.emin))
        self.code_bits = 1 + self.exp_bits + self.man_bits

    @classmethod
    def from_range(cls, max_abs, exp_bits=4, man_bits=3, saturate=True, subnormals=True):
        """Bias such that ``max_value >= max_abs`` with the smallest possible emax."""
        max_abs = float(max_abs)
        top = 2 ** exp_bits - 1 if saturate else 2 ** exp_bits - 2
        if not np.isfinite(max_abs):
            raise ValueError(f"Minifloat.from_range: max_abs must be finite, got {max_abs}")
        emax = int(np.ceil(np.log2(max_abs / (2.0 - 2.0 ** -man_bits)))) if max_abs > 0 else 0
        return cls(exp_bits, man_bits, top - emax, saturate, subnormals)

    @classmethod
    def from_tensor(cls, x, exp_bits=4, man_bits=3, saturate=True, subnormals=True):
        x = _as_float("Minifloat.from_tensor", x)
        return cls.from_range(np.abs(x).max() if x.size else 0.0, exp_bits, man_bits, saturate, subnormals)

    def step_at(self, x):
        """Grid spacing in the binade of each |x| (the subnormal spacing below the normals)."""
        a = np.abs(_as_float("minifloat.step_at", x))
        with np.errstate(divide="ignore"):
            e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
        e = np.clip(e, self.emin, self.emax)
        return np.ldexp(1.0, (e - self.man_bits).astype(np.int64))

    def _round(self, x, rounding, rng):
        a = np.abs(x)
        # frexp gives a = f * 2^k with f in [0.5, 1): the binade exponent is k - 1, exactly.
        _, k = np.frexp(a)
        e = np.maximum(k.astype(np.int64) - 1, self.emin)
        shift = self.man_bits - e
        r = np.ldexp(round_values(np.ldexp(a, shift), rounding, rng), -shift)
        if not self.subnormals:
            r = np.where(r < self.min_normal, np.where(r >= self.min_normal / 2, self.min_normal, 0.0), r)
        if self.saturate:
            r = np.minimum(r, self.max_value)
        else:
            r = np.where(r > self.max_value, np.inf, r)
        return np.copysign(r, x)

    def _checked(self, op, x):
        """``x`` as floats; NaN and inf are refused unless the format has codes for them (IEEE style)."""
        x = _as_float(op, x)
        return x if not self.saturate else _check_finite(op, x)

    def quantize(self, x, rounding="nearest", rng=None):
        """Codes (uint64, x's shape) ``s << (E+M) | e << M | m`` of the rounded values.

        IEEE-style formats (``saturate=False``) code NaN and inf; saturating ones have no
        such codes.

        Raises:
            ValueError: NaN or inf in ``x`` for a saturating format.
        """
        x = self._checked("minifloat.quantize", x)
        r = self._round(x, rounding, rng)
        M = self.man_bits
        sign = np.signbit(r).astype(np.uint64)
        a = np.abs(r)
        finite = np.isfinite(a)
        af = np.where(finite, a, 0.0)
        _, k = np.frexp(af)
        e = k.astype(np.int64) - 1
        normal = af >= self.min_normal
        efield = np.where(normal, e + self.bias, 0)
        scale_exp = np.where(normal, M - e, M - self.emin)
        mant = np.rint(np.ldexp(af, scale_exp)).astype(np.int64)
        mfield = np.where(normal, mant - 2 ** M, mant)
        top = 2 ** self.exp_bits - 1
        efield = np.where(finite, efield, top)
        mfield = np.where(finite, mfield, np.where(np.isnan(a), 1, 0))
        return (sign << np.uint64(self.exp_bits + M)) | (efield.astype(np.uint64) << np.uint64(M)) \
            | mfield.astype(np.uint64)

    def dequantize(self, q):
        """Reals (float64, q's shape) of codes ``s << (E+M) | e << M | m``; IEEE style gives inf/NaN codes."""
        q = np.asarray(q).astype(np.uint64)
        M, E = self.man_bits, self.exp_bits
        m = (q & np.uint64(2 ** M - 1)).astype(np.int64)
        e = ((q >> np.uint64(M)) & np.uint64(2 ** E - 1)).astype(np.int64)
        s = ((q >> np.uint64(E + M)) & np.uint64(1)).astype(bool)
        val = np.where(e == 0, np.ldexp(m.astype(np.float64), self.emin - M),
                       np.ldexp((m + 2 ** M).astype(np.float64), e - self.bias - M))
        if not self.saturate:
            special = e == 2 ** E - 1
            val = np.where(special, np.where(m == 0, np.inf, np.nan), val)
        return np.where(s, -val, val)

    def fake(self, x, rounding="nearest", rng=None):
        """The rounded values in ``x``'s float dtype (see ``quantize`` for what it raises)."""
        x = self._checked(f"{self.name}.fake", x)
        return self._round(x.astype(np.float64), rounding, rng).astype(x.dtype, copy=False)

    def bounds(self):
        return -self.max_value, self.max_value

    def levels(self):
        n = 2 ** (self.code_bits - 1)
        pos = self.dequantize(np.arange(n, dtype=np.uint64))
        pos = pos[np.isfinite(pos)]
        return np.unique(np.concatenate([-pos, pos]))

    @property
    def side_bytes(self):
        return 1

    def state(self):
        return {"exp_bits": np.array(self.exp_bits), "man_bits": np.array(self.man_bits), "bias": np.array(self.bias),
                "saturate": np.array(self.saturate), "subnormals": np.array(self.subnormals)}

    @classmethod
    def from_state(cls, s):
        return cls(int(s["exp_bits"]), int(s["man_bits"]), int(s["bias"]), bool(s["saturate"]),
                   bool(s["subnormals"]))

    def describe(self):
        return f"1-{self.exp_bits}-{self.man_bits}, bias={self.bias}, max={self.max_value:g}"


class FP16OverflowWarning(RuntimeWarning):
    """A value overflowed float16 (became inf)."""


class FP16OverflowError(FloatingPointError):
    """A value overflowed float16 and ``on_overflow='raise'`` was requested."""


class FP16(Minifloat):
    """IEEE 754 binary16 (1-5-10, bias 15, subnormals, inf): storage through ``np.float16``.

    ``quantize`` returns the float16 bit patterns (uint16) — for round-to-nearest exactly
    ``x.astype(np.float16).view(np.uint16)`` — and ``fake`` the float16 values. Values
    whose magnitude rounds beyond 65504 become +-inf; that overflow is reported according
    to ``on_overflow``: ``"warn"`` (``FP16OverflowWarning``), ``"raise"``
    (``FP16OverflowError``) or ``"ignore"``. ``overflow_count`` accumulates the number of
    overflowed values seen.
    """

    name = "fp16"

    def __init__(self, on_overflow="warn"):
        super().__init__(5, 10, bias=15, saturate=False, subnormals=True)
        if on_overflow not in ("warn", "raise", "ignore"):
            raise ValueError(f"FP16: on_overflow must be 'warn', 'raise' or 'ignore', got {on_overflow!r}")
        self.on_overflow = on_overflow
        self.overflow_count = 0

    def check_overflow(self, x, r, where="fp16"):
        """Report values that are finite in ``x`` but infinite in ``r``; return their count."""
        n = int(np.count_nonzero(np.isinf(r) & np.isfinite(x)))
        if n:
            self.overflow_count += n
            msg = (f"{where}: {n} value(s) overflowed float16 (|x| > 65504 after rounding) and became inf; "
                   f"largest |x| = {float(np.nanmax(np.abs(np.where(np.isfinite(x), x, 0)))):g}")
            if self.on_overflow == "raise":
                raise FP16OverflowError(msg)
            if self.on_overflow == "warn":
                warnings.warn(msg, FP16OverflowWarning, stacklevel=3)
        return n

    def quantize(self, x, rounding="nearest", rng=None):
        """float16 bit patterns (uint16, x's shape); overflow is reported per ``on_overflow``."""
        x = _as_float("fp16.quantize", x)
        if rounding == "nearest":
            with np.errstate(over="ignore"):
                h = x.astype(np.float16)
            self.check_overflow(x, h)
            return h.view(np.uint16)
        r = self._round(x.astype(np.float64), rounding, rng)
        self.check_overflow(x, r)
        return r.astype(np.float16).view(np.uint16)

    def dequantize(self, q):
        """float16 bit patterns ``q`` read back as float64 (q's shape)."""
        return np.asarray(q).astype(np.uint16).view(np.float16).astype(np.float64)

    def fake(self, x, rounding="nearest", rng=None):
        x = _as_float("fp16.fake", x)
        return self.dequantize(self.quantize(x, rounding, rng)).astype(x.dtype, copy=False)

    @property
    def side_bytes(self):
        return 0

    def state(self):
        return {"on_overflow": np.array(self.on_overflow)}

    @classmethod
    def from_state(cls, s):
        return cls(str(s["on_overflow"]))

    def describe(self):
        return f"IEEE binary16, on_overflow={self.on_overflow!r}"


# ------------------------------------------------------------------ power of two
class PowerOfTwo(Format):
    """Multiplier-free weights: ``x -> sign(x) * 2^round(log2|x|)``, exponents in [min_exp, max_exp].

    Rounding happens on ``log2|x|`` (ties to even there): the grid is geometric, so the
    error is at most a factor ``2^(1/2)`` — half a step *in the log domain*. Magnitudes whose
    rounded exponent is above ``max_exp`` saturate to ``2^max_exp``; those whose rounded
    exponent is below ``min_exp`` become 0. (Stochastic rounding also acts on log2|x|.)

    With b bits (one sign bit), ``2^(b-1) - 1`` exponents plus the code for zero fit:
    ``from_range(max_abs, bits)`` sets ``max_exp = round(log2 max_abs)`` and
    ``min_exp = max_exp - (2^(b-1) - 2)``. Codes: 0 for zero, else
    ``sign * (e - min_exp + 1)`` (int64 in ``[-(2^(b-1)-1), 2^(b-1)-1]``).
    """

    name = "pow2"

    def __init__(self, min_exp=-7, max_exp=0):
        if int(min_exp) != min_exp or int(max_exp) != max_exp or min_exp > max_exp:
            raise ValueError(f"PowerOfTwo: need integers min_exp <= max_exp, got {min_exp}, {max_exp}")
        self.min_exp, self.max_exp = int(min_exp), int(max_exp)
        self.code_bits = 1 + int(np.ceil(np.log2(self.max_exp - self.min_exp + 2)))

    @classmethod
    def from_range(cls, max_abs, bits=4):
        """``max_exp = round(log2 max_abs)`` and ``bits - 1`` bits of exponents below it (max_abs <= 0: max_exp 0).

        Raises:
            ValueError: bits outside [2, 16], or max_abs NaN or inf.
        """
        bits = _check_bits("PowerOfTwo.from_range", bits, 2, 16)
        max_abs = float(max_abs)
        if not np.isfinite(max_abs):
            raise ValueError(f"PowerOfTwo.from_range: max_abs must be finite, got {max_abs}")
        top = int(np.rint(np.log2(max_abs))) if max_abs > 0 else 0
        return cls(top - (2 ** (bits - 1) - 2), top)

    @classmethod
    def from_tensor(cls, x, bits=4):
        x = _as_float("PowerOfTwo.from_tensor", x)
        return cls.from_range(np.abs(x).max() if x.size else 0.0, bits)

    def exponents(self, x, rounding="nearest", rng=None):
        """(sign int8 in {-1, 0, +1}, exponent int64) of each element; sign 0 means the value is 0.

        Raises:
            ValueError: NaN or inf in ``x``.
        """
        x = _check_finite("pow2.exponents", _as_float("pow2.exponents", x))
        a = np.abs(x)
        with np.errstate(divide="ignore"):
            e = round_values(np.log2(np.where(a > 0, a, 1.0)), rounding, rng)
        zero = (a == 0) | (e < self.min_exp)
        e = np.minimum(e, self.max_exp)
        sign = np.where(zero, 0, np.sign(x)).astype(np.int8)
        return sign, np.where(zero, self.min_exp, e).astype(np.int64)

    def quantize(self, x, rounding="nearest", rng=None):
        """Codes (int64, x's shape): 0 for zero, else ``sign * (e - min_exp + 1)``. Raises as ``exponents``."""
        sign, e = self.exponents(x, rounding, rng)
        return sign.astype(np.int64) * (e - self.min_exp + 1)

    def dequantize(self, q):
        """Reals ``sign(q) * 2^(|q| - 1 + min_exp)``, 0 for code 0 (float64, q's shape)."""
        q = np.asarray(q).astype(np.int64)
        mag = np.ldexp(1.0, np.abs(q) - 1 + self.min_exp)
        return np.where(q == 0, 0.0, np.sign(q) * mag)

    def bounds(self):
        hi = float(2.0 ** self.max_exp)
        return -hi, hi

    def levels(self):
        pos = 2.0 ** np.arange(self.min_exp, self.max_exp + 1)
        return np.concatenate([-pos[::-1], [0.0], pos])

    @property
    def side_bytes(self):
        return 2

    def state(self):
        return {"min_exp": np.array(self.min_exp), "max_exp": np.array(self.max_exp)}

    @classmethod
    def from_state(cls, s):
        return cls(int(s["min_exp"]), int(s["max_exp"]))

    def describe(self):
        return f"exponents {self.min_exp}..{self.max_exp} ({self.code_bits} bits)"


_FORMATS = {"affine": Affine, "dfp": DynamicFixedPoint, "minifloat": Minifloat, "fp16": FP16, "pow2": PowerOfTwo}


def get_format(name: str):
    """The format class called ``name`` (affine, dfp, minifloat, fp16, pow2)."""
    try:
        return _FORMATS[name]
    except KeyError:
        raise ValueError(f"quant: unknown format {name!r}; expected one of {sorted(_FORMATS)}") from None


# ----------------------------------------------------------------------------- exercises
def dfp_quantize(x, bits: int = 8):
    """Signed dynamic fixed point of one tensor in plain NumPy (exercise; ``DynamicFixedPoint`` is the library's way).

    Chooses the integer length ``IL = ceil(log2 max|x|) + 1`` (one bit for the sign; 1 for
    an all-zero x), the fractional length ``FL = bits - IL``, and rounds:
    ``codes = clip(round(x * 2^FL), -2^(bits-1), 2^(bits-1) - 1)``, ties to even.

    Args:
        x: real array, any shape; bits: 2..32.

    Returns:
        ``(codes, frac_length)``: int64 codes of x's shape and the int FL; the value of a
        code q is ``q * 2^-FL``.

    Raises:
        ValueError: NaN or inf in x; bits out of range.
    """
    x = _check_finite("dfp_quantize", _as_float("dfp_quantize", x))
    bits = _check_bits("dfp_quantize", bits, 2, 32)
    # BEGIN SOLUTION
    max_abs = float(np.abs(x).max()) if x.size else 0.0
    il = (int(np.ceil(np.log2(max_abs))) if max_abs > 0 else 0) + 1
    fl = bits - il
    q = np.clip(np.rint(np.ldexp(x, fl)), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return q.astype(np.int64), fl
    # END SOLUTION


def quantize_int8(x, scale: float, zero_point: int = 0) -> np.ndarray:
    """Affine int8 quantization in plain NumPy (exercise): ``clip(round(x / scale) + zero_point, -128, 127)``.

    Rounding is half to even. x: real array, any shape; scale > 0; zero_point an integer
    in [-128, 127]. Returns int8 codes of x's shape; the value of code q is
    ``(q - zero_point) * scale``. Raises ValueError for NaN/inf, scale <= 0 or a bad zero point.
    """
    x = _check_finite("quantize_int8", _as_float("quantize_int8", x))
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"quantize_int8: expected a finite scale > 0, got {scale}")
    if int(zero_point) != zero_point or not -128 <= zero_point <= 127:
        raise ValueError(f"quantize_int8: expected an integer zero_point in [-128, 127], got {zero_point}")
    # BEGIN SOLUTION
    return np.clip(np.rint(x / scale) + int(zero_point), -128, 127).astype(np.int8)
    # END SOLUTION
