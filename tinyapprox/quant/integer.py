"""Integer inference: the quantized model run on integers, equal bit for bit to its simulation.

``IntegerModel.from_fake(qmodel)`` reads a calibrated fake-quant model (``quant.ptq``) and
runs it without floats between the input quantizer and the logits:

* a weight layer multiplies integer activation codes by integer weight codes with an
  int32 accumulator — int8 x int8 on the C kernel (``kernels.gemm_int8``, convolution via
  im2col), or, for power-of-two weights, with shifts and adds only (``pow2_matmul``);
* the int32 bias codes (on the accumulator grid ``s_in * s_w``) are added;
* ReLU, max pooling and flatten act on the integers directly;
* the next ``ActQuant`` becomes a *requantization* ``q = clip(round(acc * M), lo, hi)`` with
  ``M = s_acc / s_out`` applied in integers: ``M = m0 * 2^-(30 + k)``, ``m0`` an int in
  [2^30, 2^31), ``acc * m0`` in int64, then an arithmetic right shift that rounds half to
  even (``round_shift``). A ReLU just before is fused into the clip (``lo = 0``). The
  requantizer is ``kernels.reference.requantize`` (re-exported here with ``multiplier`` and
  ``round_shift``): one implementation, which the C kernels are held to.

Why it equals the simulation exactly: when every scale is a power of two (``pow2_scale=True``
for int8, always for dynamic fixed point and power-of-two weights), ``M`` is a power of two,
``m0 = 2^30``, and the requantization is a pure shift with the same ties-to-even rule as
``np.rint`` in the simulation. The simulation's float32 arithmetic is itself exact as long
as ``K * max|q_x| * max|q_w| + max|q_b| < 2^24`` (all terms are integers times one power of
two) — ``check()`` reports this bound per layer next to the accumulator-overflow bound.
With arbitrary float scales the integer path still runs, but ``M`` is rounded to 31 bits
and results may differ from the float simulation by one step in rare cases.

``accumulator_bound`` / ``check`` answer the lecture's overflow caveat: can a K-term dot
product of these value ranges overflow an int32 (or int16) accumulator? ``acc_bits=16``
runs the model with a wrapping 16-bit accumulator to show what happens when it does.
"""
from __future__ import annotations

import numpy as np

from .. import kernels, nn
from ..conv import im2col
from ..kernels.reference import multiplier, requantize, round_shift  # the one requantizer, re-exported
from ..tensor import no_grad
from .fake import ActQuant, WeightQuant
from .formats import Affine, DynamicFixedPoint, PowerOfTwo

__all__ = ["round_shift", "requantize", "multiplier", "wrap", "accumulator_bound", "pow2_matmul",
           "pow2_matmul_reference", "IntegerModel"]


def wrap(v, bits):
    """Two's-complement wrap-around of integers to ``bits`` (what a narrow adder does)."""
    v = np.asarray(v, dtype=np.int64)
    half = 1 << (bits - 1)
    return ((v + half) & ((1 << bits) - 1)) - half


def accumulator_bound(K, x_max, w_max, b_max=0, acc_bits=32, w_abs_row_sums=None):
    """Can a dot product overflow a signed ``acc_bits`` accumulator?

    Worst case ``|acc| <= K * x_max * w_max + b_max`` (or, tighter, with the actual weights,
    ``x_max * max_row sum_j |w_j| + b_max`` when ``w_abs_row_sums`` is given). Returns
    ``{"bound", "limit", "safe", "headroom_bits"}`` with ``limit = 2^(acc_bits-1) - 1``.
    """
    if w_abs_row_sums is not None:
        bound = int(x_max) * int(np.max(w_abs_row_sums, initial=0)) + int(b_max)
    else:
        bound = int(K) * int(x_max) * int(w_max) + int(b_max)
    limit = 2 ** (acc_bits - 1) - 1
    head = float(np.log2(limit / bound)) if bound > 0 else float("inf")
    return {"bound": bound, "limit": limit, "safe": bound <= limit, "headroom_bits": head}


# --------------------------------------------------------------- power-of-two weights
def pow2_matmul(x_int, sign, exp, min_exp):
    """``z[n, o] = sum_j sign[o, j] * (x[n, j] << (exp[o, j] - min_exp))`` — shifts and adds only.

    Args:
        x_int: (N, K) integer activation codes (fixed point, any scale).
        sign: (O, K) in {-1, 0, +1} (0 = pruned / underflowed weight); exp: (O, K) exponents
            >= min_exp.
    Returns int64 (N, O); the real product is ``z * 2^min_exp * x_scale``.

    One pass per exponent value e: every activation is shifted left by ``e - min_exp`` once,
    then the shifted values are added (weight sign +1) or subtracted (sign -1) into the
    outputs that use exponent e — the sums are a product with a 0/1 selection matrix.
    """
    x = np.asarray(x_int, dtype=np.int64)
    sign, exp = np.asarray(sign), np.asarray(exp, dtype=np.int64)
    if x.ndim != 2 or sign.shape != exp.shape or sign.ndim != 2 or sign.shape[1] != x.shape[1]:
        raise ValueError(f"pow2_matmul: expected x (N, K), sign and exp (O, K); got {x.shape}, {sign.shape}, "
                         f"{exp.shape}")
    z = np.zeros((x.shape[0], sign.shape[0]), dtype=np.int64)
    for e in np.unique(exp[sign != 0]):
        shifted = x << (int(e) - min_exp)
        plus = ((sign > 0) & (exp == e)).astype(np.int64)
        minus = ((sign < 0) & (exp == e)).astype(np.int64)
        z += shifted @ plus.T - shifted @ minus.T
    return z


def pow2_matmul_reference(x_int, sign, exp, min_exp):
    """The literal loop of ``pow2_matmul`` (slow; for tests, and an exercise).

    x_int: (N, K) integers; sign: (O, K) in {-1, 0, +1}; exp: (O, K) >= min_exp.
    Returns int64 (N, O): ``z[n, o] = sum_j sign[o, j] * (x[n, j] << (exp[o, j] - min_exp))``
    with Python integers (no overflow), shifts and adds only.
    """
    x = np.asarray(x_int, dtype=np.int64)
    N, K = x.shape
    O = sign.shape[0]
    # BEGIN SOLUTION
    z = np.zeros((N, O), dtype=np.int64)
    for n in range(N):
        for o in range(O):
            acc = 0
            for j in range(K):
                if sign[o, j] > 0:
                    acc += int(x[n, j]) << int(exp[o, j] - min_exp)
                elif sign[o, j] < 0:
                    acc -= int(x[n, j]) << int(exp[o, j] - min_exp)
            z[n, o] = acc
    return z
    # END SOLUTION


# --------------------------------------------------------------- the integer model
def _act_code_params(fmt):
    if isinstance(fmt, Affine):
        if fmt.axis is not None or np.any(fmt.zero_point != 0):
            raise ValueError("IntegerModel: activations must be per-tensor and symmetric (zero point 0)")
        return float(fmt.scale), fmt.qmin, fmt.qmax
    if isinstance(fmt, DynamicFixedPoint):
        return fmt.step, fmt.qmin, fmt.qmax
    raise ValueError(f"IntegerModel: activations in {type(fmt).__name__} have no integer codes; "
                     "use int8/affine or dfp activations")


class _Layer:
    """One integer weight layer: codes, scales and how to multiply."""

    def __init__(self, module, in_scale, in_max, acc_bits, backend):
        wq = module.weight.find_transform(WeightQuant)
        if wq is None:
            raise ValueError(f"IntegerModel: layer {module!r} has no WeightQuant transform")
        w = module.weight.data
        fmt = wq.calibrate(w) if wq.dynamic or wq.fmt is None else wq.fmt
        self.conv = w.ndim == 4
        self.stride, self.padding = (getattr(module, "stride", 1), getattr(module, "padding", 0))
        self.shape = w.shape
        O = w.shape[0]
        if isinstance(fmt, PowerOfTwo):
            sign, e = fmt.exponents(w)
            self.kind = "shift"
            self.sign, self.exp, self.min_exp = sign.reshape(O, -1), e.reshape(O, -1), fmt.min_exp
            if self.conv:
                self.sign = sign.transpose(0, 2, 3, 1).reshape(O, -1)
                self.exp = e.transpose(0, 2, 3, 1).reshape(O, -1)
            w_scale = np.full(O, 2.0 ** fmt.min_exp)
            w_abs = np.abs(self.sign.astype(np.int64) << (self.exp - self.min_exp)).sum(axis=1)
            w_max = int(np.max(np.abs(self.sign) * (1 << (self.exp - self.min_exp)), initial=0))
        else:
            if isinstance(fmt, Affine):
                if np.any(fmt.zero_point != 0):
                    raise ValueError("IntegerModel: weights must be symmetric (zero point 0)")
                w_scale = np.broadcast_to(fmt.scale, (O,)).astype(np.float64)
            elif isinstance(fmt, DynamicFixedPoint):
                w_scale = np.full(O, fmt.step)
            else:
                raise ValueError(f"IntegerModel: {type(fmt).__name__} weights have no integer codes")
            codes = fmt.quantize(w)
            if self.conv:
                codes = codes.transpose(0, 2, 3, 1)
            codes = codes.reshape(O, -1)
            w_abs = np.abs(codes).sum(axis=1)
            w_max = int(np.abs(codes).max(initial=0))
            fits = codes.min(initial=0) >= -128 and codes.max(initial=0) <= 127 and in_max <= 127
            self.kind = "int8" if fits else "int64"
            self.codes = codes
            if fits:
                self.packed = kernels.prepare_int8(np.ascontiguousarray(codes.T.astype(np.int8)))
        self.acc_scale = in_scale * w_scale
        bias = module._parameters.get("bias")
        self.bias = None
        b_max = 0
        if bias is not None:
            # The bias must sit on the accumulator grid: an AccumulatorBias puts it there; a
            # fixed-point bias does when its step is a multiple of the accumulator's.
            with no_grad():
                b_val = np.asarray(bias.effective().data, dtype=np.float64)
            b_int = b_val / self.acc_scale
            if not np.all(np.isfinite(b_int)) or not np.array_equal(b_int, np.rint(b_int)):
                raise ValueError("IntegerModel: a bias is not an integer multiple of its accumulator step "
                                 "(input scale * weight scale); use int32 accumulator biases (quant.finalize) or a "
                                 "fixed-point bias with a coarser step")
            self.bias = b_int.astype(np.int64)
            b_max = int(np.abs(self.bias).max(initial=0))
        K = int(np.prod(w.shape[1:]))
        self.overflow = accumulator_bound(K, in_max, w_max, b_max, acc_bits, w_abs)
        self.float32_exact = accumulator_bound(K, in_max, w_max, b_max, 25, w_abs)["safe"]
        self.acc_bits, self.backend = acc_bits, backend

    def _matmul(self, a):
        if self.kind == "shift":
            return pow2_matmul(a, self.sign, self.exp, self.min_exp)
        if self.kind == "int8":
            return kernels.gemm_int8(np.ascontiguousarray(a, dtype=np.int8), self.packed, backend=self.backend)
        return a.astype(np.int64) @ self.codes.T.astype(np.int64)

    def __call__(self, x):
        if self.conv:
            N = x.shape[0]
            O, C, kh, kw = self.shape
            cols = im2col(x.astype(np.float32), kh, kw, self.stride, self.padding)
            OH = (x.shape[2] + 2 * _pair(self.padding)[0] - kh) // _pair(self.stride)[0] + 1
            OW = (x.shape[3] + 2 * _pair(self.padding)[1] - kw) // _pair(self.stride)[1] + 1
            acc = self._matmul(cols.astype(np.int64 if self.kind != "int8" else np.int8))
            acc = acc.reshape(N, OH, OW, O).transpose(0, 3, 1, 2)
            bias = None if self.bias is None else self.bias.reshape(1, O, 1, 1)
        else:
            acc = self._matmul(x)
            bias = self.bias
        if bias is not None:
            acc = acc + bias.astype(acc.dtype)
        if self.acc_bits < 32 or (self.acc_bits < 64 and acc.dtype == np.int64):
            acc = wrap(acc, self.acc_bits)
        return acc


def _pair(v):
    return (v, v) if np.ndim(v) == 0 else tuple(v)


class IntegerModel:
    """A calibrated fake-quant Sequential, compiled to integer steps (see the module docstring).

    Build it with ``IntegerModel.from_fake(qmodel)``. ``model(images) -> logits`` (float64
    (N, classes)); ``check()`` lists per-layer bounds.

    Attributes:
        steps: the compiled steps in order, tuples led by their kind: ``("quant" | "requant",
            fmt, out_scale, lo, hi, relu)``, ``("layer", _Layer)``, ``("relu",)``,
            ``("maxpool", module)``, ``("flatten",)``.
        acc_bits: accumulator width the layers wrap to.
    """

    def __init__(self, steps, acc_bits=32):
        self.steps, self.acc_bits = steps, acc_bits

    @classmethod
    def from_fake(cls, qmodel, acc_bits=32, backend=None):
        """Compile a calibrated fake-quant model into integer steps.

        Args:
            qmodel: output of ``quant.ptq`` / ``calibrate`` (int8/affine symmetric, dfp or pow2
                weights; symmetric int8 or dfp activations; an ``ActQuant`` in front of every
                weight layer; biases on their accumulator grid).
            acc_bits: accumulator width (32; 16 shows overflow by wrap-around; 64 = no wrap).
            backend: kernel backend for the int8 GEMM (None = best available).

        Returns an ``IntegerModel``.

        Raises:
            ValueError: a structure or format the integer path cannot run (an uncalibrated
                ``ActQuant``, a weight layer without one in front, an unsupported layer).
        """
        leaves = [m for _, m in qmodel.named_modules() if not m._modules]
        steps = []
        scale = None            # current scale: None = float input, scalar = codes, array = per-channel acc
        in_max = None
        for i, m in enumerate(leaves):
            if isinstance(m, ActQuant):
                if m.mode != "quantize":
                    raise ValueError("IntegerModel: every ActQuant must be calibrated (mode 'quantize')")
                s, lo, hi = _act_code_params(m.fmt)
                relu = bool(steps) and steps[-1][0] == "relu"
                if relu:
                    steps.pop()
                steps.append(("quant" if scale is None else "requant", m.fmt, s, lo, hi, relu))
                scale, in_max = s, max(abs(lo), abs(hi))
            elif nn.is_weight_layer(m):
                if not isinstance(scale, float):
                    raise ValueError(f"IntegerModel: weight layer {m!r} is not preceded by an ActQuant")
                layer = _Layer(m, scale, in_max, acc_bits, backend)
                steps.append(("layer", layer))
                scale = layer.acc_scale
            elif isinstance(m, nn.ReLU):
                steps.append(("relu",))
            elif isinstance(m, nn.MaxPool2d):
                steps.append(("maxpool", m))
            elif isinstance(m, nn.Flatten):
                steps.append(("flatten",))
            elif isinstance(m, nn.Dropout):
                continue
            else:
                raise ValueError(f"IntegerModel: cannot run {type(m).__name__} on integers")
        if not isinstance(scale, np.ndarray):
            raise ValueError("IntegerModel: the model must end with a weight layer (its int32 output is the logits)")
        return cls(steps, acc_bits)

    def layers(self):
        return [s[1] for s in self.steps if s[0] == "layer"]

    def check(self):
        """Per weight layer: accumulator bound vs. limit (``safe``) and float32-exactness."""
        return [{"layer": i, "kind": L.kind, **L.overflow, "acc_bits": L.acc_bits, "sim_exact": L.float32_exact}
                for i, L in enumerate(self.layers())]

    def __call__(self, images, batch_size=1000):
        from ..data import images_to_float
        x_all = images_to_float(images)
        outs = []
        for i in range(0, len(x_all), batch_size):
            outs.append(self._run(x_all[i:i + batch_size]))
        return np.concatenate(outs) if outs else np.zeros((0,))

    def _run(self, x):
        scale = None
        for step in self.steps:
            kind = step[0]
            if kind == "quant":
                fmt = step[1]
                x, scale = fmt.quantize(x), step[2]
            elif kind == "requant":
                _, _, s, lo, hi, relu = step
                x = requantize(x, np.asarray(scale) / s, lo, hi, relu, channel_axis=1)
                scale = s
            elif kind == "layer":
                L = step[1]
                x = L(x)
                scale = L.acc_scale
            elif kind == "relu":
                x = np.maximum(x, 0)
            elif kind == "maxpool":
                m = step[1]
                x = _int_max_pool(x, m)
            elif kind == "flatten":
                if np.ndim(scale) and x.ndim == 4:       # per-channel scales follow the NCHW flattening
                    scale = np.repeat(scale, x.shape[2] * x.shape[3])
                x = x.reshape(x.shape[0], -1)
        return x.astype(np.float64) * np.asarray(scale)


def _int_max_pool(x, m):
    """Max pooling on integers (exact through float64 for |x| < 2^53)."""
    from ..conv import max_pool2d
    y = max_pool2d(x.astype(np.float64), m.kernel_size, m.stride, m.padding)
    return np.asarray(y.data).astype(np.int64)


# ----------------------------------------------------------------------------- exercises
def requantize_int8(acc, M, zero_point: int = 0) -> np.ndarray:
    """int32 accumulators to int8 codes with integer arithmetic only (exercise).

    ``clip(round(acc * M) + zero_point, -128, 127)`` where ``M`` (a positive scalar, e.g.
    ``s_in * s_w / s_out``) is applied as ``m0 * 2^-shift`` from ``multiplier(M)`` and the
    rounding is ``round_shift`` (half to even). acc: int array, any shape, |acc| < 2^31.
    Returns int8 of acc's shape. Raises ValueError for M <= 0 or a zero point outside int8.
    """
    if int(zero_point) != zero_point or not -128 <= zero_point <= 127:
        raise ValueError(f"requantize_int8: expected an integer zero_point in [-128, 127], got {zero_point}")
    acc = np.asarray(acc, dtype=np.int64)
    m0, shift = multiplier(M)
    # BEGIN SOLUTION
    q = round_shift(acc * m0, shift) + int(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)
    # END SOLUTION
