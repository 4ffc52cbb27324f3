"""``quant.convert``: a calibrated fake-quant model lowered to integer inference layers.

``convert(qmodel)`` reads a calibrated fake-quant model (``quant.ptq``) and returns a
``QuantizedModel`` (an ``nn.Sequential`` of ``nn.InferenceModule`` s) that runs without
floats between the input quantizer and the logits:

* ``QuantizeInput``: the images are quantized once (``kernels.quantize_int8``) to int8
  codes, which then flow from layer to layer;
* ``QuantizedLinear`` / ``QuantizedConv2d``: one fused call of ``kernels.int8_linear``
  per layer (convolution through ``conv.im2col``): the exact int32 accumulator of int8
  codes times int8 weight codes, plus the int32 bias codes (on the accumulator grid
  ``s_in * s_w``), then *requantization* to the next layer's int8 codes
  ``q = clip(round(acc * M), lo, hi)``, ``M = s_acc / s_out = m0 * 2^-shift`` (``m0`` an
  int in [2^30, 2^31), ``quant.integer.multiplier``), rounding half to even -- the
  project's one requantizer, ``quant.integer.requantize``. The last layer returns float32
  ``acc * s_acc`` instead;
* max pooling on the codes (``nn.MaxPool2dNHWC``; ``IntMaxPool2d`` before any convolution).

Convolutions produce their output channels-last, (N*OH*OW, O) rows being (N, OH, OW, O),
and the codes stay in that layout up to the next weight layer: the next convolution
gathers its patches from it directly (``conv.im2col(..., channels_last=True)``), and a
Linear after a Flatten has its weight columns reordered once at conversion. Only a model
ending in a convolution turns its float output back to NCHW.

Requantization is moved up into the weight layer that produces the accumulator: in the
float model the next ``ActQuant`` comes after ReLU / max pooling / flatten, but rounding
and clipping are monotone, and a monotone map commutes with ReLU (it becomes the lower
clip bound, ``lo = 0``), with max pooling and with any reshaping.

Exactness: when every scale is a power of two (``pow2_scale=True`` for int8, always for
dynamic fixed point and power-of-two weights) ``M`` is a power of two, ``m0 = 2^30``, and
requantization is one shift with the ties-to-even rule of ``np.rint`` in the simulation,
so the converted model equals the fake-quant simulation bit for bit (as long as the
simulation's float32 sums are exact, which ``check()`` reports as ``sim_exact``). With
arbitrary float scales ``M`` is rounded to 31 significant bits, and a code may differ
from the simulation by one step where ``acc * M`` lies within about ``|acc| * M * 2^-31``
of a rounding boundary.

Layers the int8 kernel cannot run (codes wider than 8 bits, power-of-two weights, an
accumulator narrower than 32 bits to show overflow) run the same arithmetic on NumPy
int64: ``kind`` is "int8" (fused kernel), "int64" (NumPy integer product) or "shift"
(power-of-two weights, shifts and adds only, ``quant.integer.pow2_matmul``).
"""
from __future__ import annotations

import numpy as np

from .. import kernels, nn
from ..conv import conv_output_size
from ..nn.inference import InferenceModule, MaxPool2dNHWC, as_array, nchw_columns_to_nhwc, patches
from ..tensor import Tensor, no_grad
from .fake import ActQuant, WeightQuant
from .formats import Affine, DynamicFixedPoint, PowerOfTwo
from .integer import accumulator_bound, multiplier, pow2_matmul, requantize, wrap

__all__ = ["convert", "QuantizedModel", "QuantizeInput", "QuantizedLinear", "QuantizedConv2d", "IntMaxPool2d"]

_INT32 = 2 ** 31 - 1
_QUANTIZE_ONE_THREAD = 1 << 22      # inputs smaller than this are quantized on one thread


def _act_code_params(fmt):
    """(scale, lo, hi) of a per-tensor symmetric activation format; ValueError otherwise."""
    if isinstance(fmt, Affine):
        if fmt.axis is not None or np.any(fmt.zero_point != 0):
            raise ValueError("convert: activations must be per-tensor and symmetric (zero point 0)")
        return float(fmt.scale), int(fmt.qmin), int(fmt.qmax)
    if isinstance(fmt, DynamicFixedPoint):
        return float(fmt.step), int(fmt.qmin), int(fmt.qmax)
    raise ValueError(f"convert: activations in {type(fmt).__name__} have no integer codes; "
                     "use int8/affine or dfp activations")


def _pair1(v, op, what):
    v = (v, v) if np.ndim(v) == 0 else tuple(v)
    if len(set(v)) != 1:
        raise ValueError(f"{op}: only square {what} is supported, got {v}")
    return int(v[0])


class QuantizeInput(InferenceModule):
    """Float input -> integer codes ``clip(round(x / scale), lo, hi)``, once at the model's entry.

    Args:
        scale: positive float; lo, hi: the code range; fmt: the activation format (used
            when the codes do not fit int8). uint8 images are scaled to [0, 1] first.

    forward: x (N, ...) float32 -> codes (N, ...) int8 (int64 if wider than 8 bits) Tensor.
    Raises ValueError for NaN input (from the kernel).
    """

    def __init__(self, scale, lo, hi, fmt, threads=None, backend=None):
        super().__init__()
        self.scale, self.lo, self.hi, self.fmt = float(scale), int(lo), int(hi), fmt
        self.int8 = -128 <= self.lo and self.hi <= 127
        self.threads, self.backend = threads, backend

    def forward(self, x):
        x = as_array(x)
        if x.dtype == np.uint8:
            from .pipeline import images_to_float
            x = images_to_float(x)
        if not self.int8:
            return Tensor(self.fmt.quantize(x))
        x = np.ascontiguousarray(x, dtype=np.float32)
        flat = x.reshape(x.shape[0] if x.ndim else 1, -1)
        # One memory-bound pass: below a few million values a second thread costs more to start
        # (measured: 0.2 ms on one thread vs a 4 ms median on two for 1000 x 784 under load).
        threads = 1 if flat.size < _QUANTIZE_ONE_THREAD else self.threads
        q = kernels.quantize_int8(flat, self.scale, lo=self.lo, hi=self.hi, threads=threads, backend=self.backend)
        return Tensor(q.reshape(x.shape))

    def stored_values(self):
        return 1

    def stored_bytes(self):
        return 4

    def extra_repr(self):
        return f"scale={self.scale:.6g}, codes=[{self.lo}, {self.hi}]"


class IntMaxPool2d(InferenceModule):
    """Max pooling on integer codes (N, C, H, W) -> (N, C, OH, OW), same dtype; no padding."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kh, self.kw = (kernel_size, kernel_size) if np.ndim(kernel_size) == 0 else tuple(kernel_size)
        s = (self.kh, self.kw) if stride is None else stride
        self.sh, self.sw = (s, s) if np.ndim(s) == 0 else tuple(s)

    def forward(self, x):
        x = as_array(x)
        if x.ndim != 4:
            raise ValueError(f"IntMaxPool2d: expected codes of shape (N, C, H, W), got {x.shape}")
        n, c, h, w = x.shape
        oh, ow = conv_output_size(h, self.kh, self.sh), conv_output_size(w, self.kw, self.sw)
        if oh <= 0 or ow <= 0:
            raise ValueError(f"IntMaxPool2d: input {x.shape} is smaller than the window {(self.kh, self.kw)}")
        if (self.kh, self.kw) == (self.sh, self.sw):      # non-overlapping windows: one reshape
            v = x[:, :, :oh * self.kh, :ow * self.kw].reshape(n, c, oh, self.kh, ow, self.kw)
            return Tensor(v.max(axis=(3, 5)))
        win = np.lib.stride_tricks.sliding_window_view(x, (self.kh, self.kw), axis=(2, 3))
        return Tensor(np.ascontiguousarray(win[:, :, ::self.sh, ::self.sw].max(axis=(4, 5))))

    def inference_cost(self, x, y):
        return {**super().inference_cost(x, y), "kind": "pool"}

    def extra_repr(self):
        return f"kernel_size=({self.kh}, {self.kw}), stride=({self.sh}, {self.sw})"


class _QuantizedLayer(InferenceModule):
    """Weight codes, scales, bias codes and the output stage of one integer weight layer.

    Built by ``convert`` from a fake-quant layer (``_from_fake``); see ``QuantizedLinear``.
    """

    def _from_fake(self, module, in_scale, in_lo, in_hi, acc_bits, threads, backend, nhwc_channels=None):
        op = f"convert ({type(module).__name__})"
        wq = module.weight.find_transform(WeightQuant)
        if wq is None:
            raise ValueError(f"{op}: the layer has no WeightQuant transform")
        w = np.asarray(module.weight.data)
        fmt = wq.calibrate(w) if wq.dynamic or wq.fmt is None else wq.fmt
        O = w.shape[0]
        self.shape = w.shape
        self.in_scale, self.acc_bits, self.threads, self.backend = in_scale, int(acc_bits), threads, backend
        in_max = max(abs(in_lo), abs(in_hi))
        if w.ndim == 4:
            rows = lambda a: a.transpose(0, 2, 3, 1).reshape(O, -1)     # noqa: E731  (u, v, c) columns
        elif nhwc_channels:
            rows = lambda a: nchw_columns_to_nhwc(a.reshape(O, -1), nhwc_channels)  # noqa: E731
        else:
            rows = lambda a: a.reshape(O, -1)     # noqa: E731
        if isinstance(fmt, PowerOfTwo):
            sign, e = fmt.exponents(w)
            self.kind, self.weight_bits = "shift", int(wq.bits)
            self.sign, self.exp, self.min_exp = rows(sign), rows(e), int(fmt.min_exp)
            w_scale = np.full(O, 2.0 ** fmt.min_exp)
            mags = np.abs(self.sign).astype(np.int64) << (self.exp - self.min_exp)
            w_abs, w_max = mags.sum(axis=1), int(mags.max(initial=0))
            self.codes = None
        else:
            if isinstance(fmt, Affine):
                if np.any(fmt.zero_point != 0):
                    raise ValueError(f"{op}: weights must be symmetric (zero point 0)")
                w_scale = np.broadcast_to(np.asarray(fmt.scale, dtype=np.float64), (O,)).copy()
            elif isinstance(fmt, DynamicFixedPoint):
                w_scale = np.full(O, float(fmt.step))
            else:
                raise ValueError(f"{op}: {type(fmt).__name__} weights have no integer codes")
            codes = rows(fmt.quantize(w)).astype(np.int64)
            w_abs, w_max = np.abs(codes).sum(axis=1), int(np.abs(codes).max(initial=0))
            fits = (codes.min(initial=0) >= -128 and codes.max(initial=0) <= 127 and in_lo >= -128
                    and in_hi <= 127 and acc_bits >= 32)
            self.kind, self.weight_bits = ("int8" if fits else "int64"), int(wq.bits)
            self.codes = codes
        self.acc_scale = in_scale * w_scale
        self.bias = None
        b_max = 0
        bias = module._parameters.get("bias")
        if bias is not None:
            with no_grad():
                b_val = np.asarray(bias.effective().data, dtype=np.float64)
            b_int = b_val / self.acc_scale
            # A float32 bias on the accumulator grid is a code times the step, rounded to float32:
            # within a relative 2^-24 of an integer (exact when the step is a power of two).
            near = np.abs(b_int - np.rint(b_int)) <= 1e-6 * np.abs(b_int) + 1e-3
            b_int = np.where(near, np.rint(b_int), b_int)
            if not np.all(np.isfinite(b_int)) or not np.array_equal(b_int, np.rint(b_int)):
                raise ValueError(f"{op}: a bias is not an integer multiple of its accumulator step (input scale * "
                                 "weight scale); use int32 accumulator biases (quant.finalize) or a fixed-point bias "
                                 "with a coarser step")
            self.bias = b_int.astype(np.int64)
            b_max = int(np.abs(self.bias).max(initial=0))
        if self.kind == "int8" and b_max > _INT32:
            self.kind = "int64"
        K = int(np.prod(w.shape[1:]))
        self.overflow = accumulator_bound(K, in_max, w_max, b_max, self.acc_bits, w_abs)
        self.sim_exact = accumulator_bound(K, in_max, w_max, b_max, 25, w_abs)["safe"]
        if self.kind == "int8":
            self.packed = kernels.prepare_int8(np.ascontiguousarray(self.codes.T.astype(np.int8)))
            self.bias32 = None if self.bias is None else self.bias.astype(np.int32)
        self.out_features = O
        self.relu = False
        self.set_output(None)
        return self

    def set_output(self, out, relu=False):
        """Output stage: ``out = (scale, lo, hi)`` requantizes to the next layer's codes, None gives float32."""
        self.relu = bool(relu)
        self.out = out
        self.mult = self.shift = None
        if out is not None:
            m0, shift = multiplier(self.acc_scale / out[0])
            self.fused_requant = bool(np.all(shift >= 0) and np.all(shift <= 62))
            # one (m0, shift) for the whole layer when the scales are per tensor: the kernel's
            # per-call argument checks are then on two ints instead of two arrays
            self.mult = int(m0[0]) if np.all(m0 == m0[0]) else m0
            self.shift = int(shift[0]) if np.all(shift == shift[0]) else shift
        scale = np.asarray(self.acc_scale, dtype=np.float64)
        self.out_scale = float(scale[0]) if scale.size and np.all(scale == scale[0]) else scale

    def _accumulate(self, x2):
        """int64 accumulators (N, O) of codes x2 (N, K) on NumPy, wrapped to ``acc_bits``."""
        if self.kind == "shift":
            acc = pow2_matmul(x2, self.sign, self.exp, self.min_exp)
        else:
            acc = x2.astype(np.int64) @ self.codes.T
        if self.bias is not None:
            acc = acc + self.bias
        return wrap(acc, self.acc_bits) if self.acc_bits < 64 else acc

    def _run(self, x2):
        """codes (N, K) -> next codes (N, O) int8/int64, or float32 (N, O) for the last layer."""
        relu = self.relu
        if self.kind == "int8":
            kw = dict(bias=self.bias32, threads=self.threads, backend=self.backend)
            if self.out is None:
                return kernels.int8_linear(x2, self.packed, relu=relu, out="float32",
                                           out_scale=self.out_scale, **kw)
            _, lo, hi = self.out
            if self.fused_requant and -128 <= lo and hi <= 127:
                return kernels.int8_linear(x2, self.packed, multiplier=self.mult, shift=self.shift, lo=lo, hi=hi,
                                           relu=relu, out="int8", **kw)
            acc = kernels.int8_linear(x2, self.packed, out="int32", **kw)
        else:
            acc = self._accumulate(x2)
        if self.out is None:
            if relu:
                acc = np.maximum(acc, 0)
            return (acc.astype(np.float64) * self.acc_scale).astype(np.float32)
        _, lo, hi = self.out
        q = requantize(acc, self.acc_scale / self.out[0], lo, hi, relu, channel_axis=1)
        return q.astype(np.int8) if -128 <= lo and hi <= 127 else q

    def _codes(self, x):
        x = as_array(x)
        if self.kind == "int8":
            if x.dtype != np.int8:
                raise TypeError(f"{type(self).__name__}: expected int8 codes (from QuantizeInput or the previous "
                                f"layer), got {x.dtype}")
            return np.ascontiguousarray(x)
        if x.dtype.kind not in "iu":
            raise TypeError(f"{type(self).__name__}: expected integer codes, got {x.dtype}")
        return x

    def check(self) -> dict:
        """Accumulator bound of this layer vs. its ``acc_bits`` limit, and float32-exactness of the simulation."""
        return {"kind": self.kind, **self.overflow, "acc_bits": self.acc_bits, "sim_exact": self.sim_exact}

    def stored_values(self):
        return int(np.prod(self.shape)) + (0 if self.bias is None else self.out_features)

    def stored_bytes(self):
        """Weight codes at ``weight_bits``, int32 bias codes, float32 scales and the (m0, shift) pairs."""
        O = self.out_features
        side = 4 * O + (0 if self.bias is None else 4 * O) + (0 if self.out is None else 8 * O)
        return -(-int(np.prod(self.shape)) * self.weight_bits // 8) + side

    def _cost(self, kind, positions):
        size = int(np.prod(self.shape))
        nnz = int(np.count_nonzero(self.sign if self.kind == "shift" else self.codes))
        mult = None if self.kind == "shift" else ("int8_mult" if self.weight_bits <= 8 else "int32_mult")
        return {"kind": kind, "weights": size, "nonzero_weights": nnz, "macs": positions * size,
                "nonzero_macs": positions * nnz, "executed_macs": positions * size, "mult_op": mult,
                "add_op": "int32_add"}

    def _extra(self):
        out = "float32" if self.out is None else f"codes [{self.out[1]}, {self.out[2]}]"
        return f"kind={self.kind}, relu={self.relu}, out={out}"


class QuantizedLinear(_QuantizedLayer):
    """Integer linear layer: codes (N, in) -> next codes (N, out) int8, or float32 logits.

    ``acc = x_codes @ W_codes^T + bias_codes`` exactly (int32), then requantization with
    ``M = s_in * s_w / s_out`` (ReLU fused as the lower clip bound), or ``acc * s_in * s_w``
    in float32 for the last layer. Built by ``quant.convert``. ``kind`` says which
    arithmetic runs: "int8" (``kernels.int8_linear``), "int64" (NumPy), "shift" (power-of-two
    weights). Raises TypeError for non-integer input, ValueError for a wrong width.
    """

    @classmethod
    def from_fake(cls, linear, in_scale, in_lo, in_hi, acc_bits=32, threads=None, backend=None, nhwc_channels=None):
        """From a fake-quant ``Linear`` whose input codes have ``in_scale`` and range [in_lo, in_hi];
        ``nhwc_channels=C`` when the input is a flattened channels-last (H, W, C) map."""
        return cls()._from_fake(linear, in_scale, in_lo, in_hi, acc_bits, threads, backend, nhwc_channels)

    def forward(self, x):
        x = self._codes(x)
        if x.ndim != 2 or x.shape[1] != self.shape[1]:
            raise ValueError(f"QuantizedLinear: expected codes (N, {self.shape[1]}), got {x.shape}")
        return Tensor(self._run(x))

    def inference_cost(self, x, y):
        return self._cost("linear", int(y.shape[0]))

    def extra_repr(self):
        return f"in={self.shape[1]}, out={self.shape[0]}, " + self._extra()


class QuantizedConv2d(_QuantizedLayer):
    """Integer convolution: codes (N, C, H, W) or channels-last (N, H, W, C) -> next codes.

    The patch matrix of the codes (``conv.im2col``, rows (N*OH*OW, kh*kw*C)) goes through
    the same fused call as ``QuantizedLinear``; the result (N*OH*OW, O) is returned as
    channels-last (N, OH, OW, O) codes (``out_layout="NHWC"``, what ``convert`` uses between
    layers) or as (N, O, OH, OW) (``"NCHW"``: a model ending in this layer).
    """

    @classmethod
    def from_fake(cls, conv, in_scale, in_lo, in_hi, acc_bits=32, threads=None, backend=None, in_layout="NCHW",
                  out_layout="NHWC"):
        """From a fake-quant ``Conv2d`` whose input codes have ``in_scale`` and range [in_lo, in_hi]."""
        layer = cls()._from_fake(conv, in_scale, in_lo, in_hi, acc_bits, threads, backend)
        layer.stride = _pair1(getattr(conv, "stride", 1), "convert", "stride")
        layer.padding = _pair1(getattr(conv, "padding", 0), "convert", "padding")
        layer.in_layout, layer.out_layout = in_layout, out_layout
        return layer

    def forward(self, x):
        x = self._codes(x)
        O, C, kh, kw = self.shape
        nhwc = self.in_layout == "NHWC"
        if x.ndim != 4 or x.shape[3 if nhwc else 1] != C:
            want = f"(N, H, W, {C})" if nhwc else f"(N, {C}, H, W)"
            raise ValueError(f"QuantizedConv2d: expected codes {want}, got {x.shape}")
        if not nhwc:
            x = x.transpose(0, 2, 3, 1)
        n, h, w, _ = x.shape
        oh = conv_output_size(h, kh, self.stride, self.padding)
        ow = conv_output_size(w, kw, self.stride, self.padding)
        y = self._run(patches(self, x, kh, kw, self.stride, self.padding)).reshape(n, oh, ow, O)
        return Tensor(y if self.out_layout == "NHWC" else np.ascontiguousarray(y.transpose(0, 3, 1, 2)))

    def inference_cost(self, x, y):
        return self._cost("conv", int(y.size // self.out_features))

    def extra_repr(self):
        O, C, kh, kw = self.shape
        return (f"{C}, {O}, kernel=({kh}, {kw}), stride={self.stride}, padding={self.padding}, " + self._extra()
                + f", {self.in_layout}->{self.out_layout}")


class QuantizedModel(nn.Sequential):
    """The result of ``quant.convert``: integer inference layers in order, plus ``check()``."""

    def weight_layers(self) -> list:
        """The ``QuantizedLinear`` / ``QuantizedConv2d`` layers in order."""
        return [m for m in self if isinstance(m, _QuantizedLayer)]

    def check(self) -> list:
        """Per weight layer: accumulator bound vs. limit (``safe``), headroom bits, and whether the
        float32 simulation is exact (``sim_exact``: bound below 2^24)."""
        return [{"layer": i, **L.check()} for i, L in enumerate(self.weight_layers())]

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("QuantizedModel: a converted model is for inference only; train the fake-quant "
                               "model and convert it again")
        return super().train(False)


def convert(qmodel, acc_bits: int = 32, threads=None, backend=None) -> QuantizedModel:
    """Lower a calibrated fake-quant model to integer inference (see the module docstring).

    Args:
        qmodel: output of ``quant.ptq`` / ``calibrate`` (int8/affine symmetric, dfp or pow2
            weights; symmetric int8 or dfp activations; an ``ActQuant`` in front of every
            weight layer; biases on their accumulator grid (``quant.finalize``)); its leaf
            layers in order may be ActQuant, Linear, Conv2d, ReLU, MaxPool2d, Flatten,
            Dropout, and it must end with a weight layer (optionally a ReLU).
        acc_bits: accumulator width (32; 16 shows overflow by wrap-around, on NumPy; 64 = no wrap).
        threads, backend: passed to the kernels.

    Returns a ``QuantizedModel``: ``model(images) -> float32 logits Tensor``; ``check()``.
    Raises ValueError for a structure or format the integer path cannot run.
    """
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, (int, np.integer)) or not 2 <= acc_bits <= 64:
        raise ValueError(f"convert: expected acc_bits an int in [2, 64], got {acc_bits!r}")
    leaves = [m for _, m in qmodel.named_modules() if not m._modules]
    layers = []
    codes = None                 # (scale, lo, hi) of the codes flowing now; None = still float
    pending = None               # the weight layer whose accumulator has not been requantized yet
    relu_after = False
    layout, channels = "NCHW", None      # layout of the codes flowing now ("NHWC-flat" after a Flatten)
    for m in leaves:
        if isinstance(m, ActQuant):
            if m.mode != "quantize":
                raise ValueError("convert: every ActQuant must be calibrated (mode 'quantize')")
            s, lo, hi = _act_code_params(m.fmt)
            if pending is None:
                if codes is not None:
                    raise ValueError("convert: two ActQuants without a weight layer between them")
                layers.append(QuantizeInput(s, lo, hi, m.fmt, threads, backend))
            else:
                pending.set_output((s, lo, hi), relu_after)
                pending, relu_after = None, False
            codes = (s, lo, hi)
        elif m._parameters.get("weight") is not None and m.weight.ndim in (2, 4):
            if codes is None or pending is not None:
                raise ValueError(f"convert: weight layer {type(m).__name__} is not preceded by an ActQuant")
            if m.weight.ndim == 4:
                pending = QuantizedConv2d.from_fake(m, *codes, acc_bits, threads, backend,
                                                    "NHWC" if layout == "NHWC" else "NCHW", "NHWC")
                layout, channels = "NHWC", m.weight.shape[0]
            else:
                pending = QuantizedLinear.from_fake(m, *codes, acc_bits, threads, backend,
                                                    channels if layout == "NHWC-flat" else None)
                layout = "NCHW"
            layers.append(pending)
            codes = None
        elif isinstance(m, nn.ReLU):
            if pending is None:
                raise ValueError("convert: a ReLU must follow a weight layer (it is fused into its requantization)")
            relu_after = True
        elif isinstance(m, nn.MaxPool2d):
            if tuple(m.padding) != (0, 0):
                raise ValueError("convert: max pooling with padding is not supported on codes")
            layers.append(MaxPool2dNHWC.from_pool(m) if layout == "NHWC" else IntMaxPool2d(m.kernel_size, m.stride))
        elif isinstance(m, nn.Flatten):
            if layout == "NHWC" and (m.start_dim, m.end_dim) not in ((1, -1), (1, 3)):
                raise ValueError("convert: only a Flatten of all but the batch axis can follow a convolution")
            layers.append(nn.Flatten(m.start_dim, m.end_dim))
            layout = "NHWC-flat" if layout == "NHWC" else layout
        elif isinstance(m, nn.Dropout):
            continue
        else:
            raise ValueError(f"convert: cannot run {type(m).__name__} on integer codes")
    if pending is None or not layers or layers[-1] is not pending:
        raise ValueError("convert: the model must end with a weight layer (its accumulator gives the logits)")
    pending.set_output(None, relu_after)
    if isinstance(pending, QuantizedConv2d):
        pending.out_layout = "NCHW"           # the logits leave in the float model's layout
    return QuantizedModel(*layers).eval()
