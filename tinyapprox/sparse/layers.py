"""Inference-only layers that keep a pruned weight in CSR and run on the fused CSR kernel.

``SparseLinear`` computes ``y = relu?(x @ W^T + b)`` in one call of
``kernels.csr_linear``: the activations stay row-major (N, features), the weight (out, in)
is the CSR operand, and the bias and an optional ReLU are applied inside the kernel, so
nothing is transposed or copied in Python between layers.

``SparseConv2d`` lowers the convolution to the same call with the project's one patch
matrix, ``conv.im2col`` (gathered in C by ``kernels.im2col``, its fast twin): rows
(N*OH*OW, kh*kw*C) in row-major order, the weight's columns
flattened in the same (u, v, c) order. The kernel's output (N*OH*OW, O) *is* the
channels-last map (N, OH, OW, O); ``prune.to_sparse`` lets it flow on in that layout to the
next lowered layer (through ``nn.MaxPool2dNHWC`` and a Flatten, the next Linear's columns
reordered once at lowering time) and returns NCHW only where the float model's layers
need it.

Both accept a ``Tensor`` or an ndarray and return a float32 ``Tensor`` (no gradient: they
are ``nn.InferenceModule`` s). Their ``weight`` attribute is the CSR matrix, so ``nbytes``
and ``nnz`` are one attribute away; ``inference_cost`` tells ``cost`` what they store and
how many multiply-adds a call makes.
"""
from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..conv import conv_output_size
from ..nn.inference import InferenceModule, as_array, nchw_columns_to_nhwc, patches
from ..tensor import Tensor
from .formats import CSR

__all__ = ["SparseLinear", "SparseConv2d"]


def _float_input(x) -> np.ndarray:
    return np.ascontiguousarray(as_array(x), dtype=np.float32)


def _dense_weight(layer, op: str) -> np.ndarray:
    w = getattr(layer, "weight", None)
    if w is None:
        raise TypeError(f"{op}: expected a layer with a weight parameter, got {type(layer).__name__}")
    eff = w.effective() if hasattr(w, "effective") else w
    return np.asarray(eff.data if isinstance(eff, Tensor) else eff, dtype=np.float32)


def _bias(layer):
    b = getattr(layer, "bias", None)
    if b is None:
        return None
    eff = b.effective() if hasattr(b, "effective") else b
    return np.ascontiguousarray(eff.data if isinstance(eff, Tensor) else eff, dtype=np.float32).copy()


def _check_bias(op, bias, n):
    if bias is None:
        return None
    bias = np.ascontiguousarray(bias, dtype=np.float32)
    if bias.shape != (n,):
        raise ValueError(f"{op}: expected bias of shape ({n},), got {bias.shape}")
    return bias


class _SparseBase(InferenceModule):
    """Shared: the fused CSR call and the cost entries."""

    def _linear(self, x2):
        w = self.weight
        return kernels.csr_linear(x2, w.indptr, w.indices, w.data, bias=self.bias, relu=self.relu,
                                  shape=w.shape, threads=self.threads, backend=self.backend)

    def stored_values(self):
        return self.weight.nnz + (0 if self.bias is None else self.bias.size)

    def stored_bytes(self):
        return self.weight.nbytes + (0 if self.bias is None else 4 * self.bias.size)

    def _cost(self, kind, positions):
        nnz, size = self.weight.nnz, int(np.prod(self.weight.shape))
        return {"kind": kind, "weights": size, "nonzero_weights": nnz, "macs": positions * size,
                "nonzero_macs": positions * nnz, "executed_macs": positions * nnz,
                "mult_op": "float32_mult", "add_op": "float32_add"}


class SparseLinear(_SparseBase):
    """y = x @ W^T + b (ReLU fused if ``relu``) with W (out, in) stored as CSR.

    Args:
        weight: a ``CSR`` of shape (out, in).
        bias: float32 (out,) or None.
        relu: apply max(y, 0) inside the kernel (``to_sparse`` fuses a following ReLU).
        threads, backend: passed to ``kernels.csr_linear`` (None = defaults).

    forward: x (N, in) or (..., in) float32 -> (N, out) or (..., out) float32 Tensor.
    Raises ValueError when x's last dimension is not ``in``; TypeError for a weight that is
    not a CSR.
    """

    def __init__(self, weight: CSR, bias=None, relu=False, threads=None, backend=None):
        super().__init__()
        if not isinstance(weight, CSR):
            raise TypeError(f"SparseLinear: expected weight to be a CSR matrix, got {type(weight).__name__}")
        self.weight, self.bias = weight, _check_bias("SparseLinear", bias, weight.shape[0])
        self.relu, self.threads, self.backend = bool(relu), threads, backend
        self.out_features, self.in_features = weight.shape

    @classmethod
    def from_linear(cls, linear, relu=False, threads=None, backend=None, nhwc_channels=None) -> "SparseLinear":
        """Convert a (pruned) dense ``Linear``: its effective weight (masks applied) goes to CSR.

        ``nhwc_channels=C``: the input is a flattened channels-last (H, W, C) map, so the
        columns are reordered from the float model's (C, H, W) flattening once, here.
        """
        w = _dense_weight(linear, "SparseLinear.from_linear")
        if w.ndim != 2:
            raise ValueError(f"SparseLinear.from_linear: expected a 2-D weight (out, in), got {w.shape}")
        if nhwc_channels:
            w = nchw_columns_to_nhwc(w, nhwc_channels)
        return cls(CSR.from_dense(w), _bias(linear), relu, threads, backend)

    def forward(self, x):
        x = _float_input(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"SparseLinear: expected input (..., {self.in_features}), got {x.shape}")
        lead = x.shape[:-1]
        y = self._linear(x.reshape(math.prod(lead), self.in_features))
        return Tensor(y.reshape(lead + (self.out_features,)))

    def inference_cost(self, x, y):
        return self._cost("linear", int(np.prod(y.shape[:-1])))

    def extra_repr(self):
        return f"in={self.in_features}, out={self.out_features}, nnz={self.weight.nnz}, relu={self.relu}"


class SparseConv2d(_SparseBase):
    """Cross-correlation with the weight (O, C, kh, kw) stored as CSR of shape (O, kh*kw*C).

    Args:
        weight: a ``CSR`` (O, kh*kw*C) whose column ``(u*kw + v)*C + c`` holds
            ``w[o, c, u, v]``: the (u, v, c) order of ``conv.im2col``'s patch columns, i.e.
            ``CSR.from_dense(w.transpose(0, 2, 3, 1).reshape(O, -1))`` (``from_conv`` does it).
        kernel_size: (kh, kw); in_channels: C; bias: float32 (O,) or None.
        stride, padding: ints (the same along both axes); relu, threads, backend: as for
            ``SparseLinear``.
        in_layout, out_layout: "NCHW" (the float model's) or "NHWC" (channels-last, as the
            kernel produces it: no transpose).

    forward: x (N, C, H, W) (or (N, H, W, C)) -> (N, O, OH, OW) (or (N, OH, OW, O)) float32
    Tensor, OH = (H + 2p - kh)//s + 1.
    Raises ValueError for a wrong channel count, a wrong bias shape, an unknown layout or an
    input smaller than the kernel; TypeError for a weight that is not a CSR.
    """

    def __init__(self, weight: CSR, kernel_size, in_channels, bias=None, stride=1, padding=0, relu=False,
                 threads=None, backend=None, in_layout="NCHW", out_layout="NCHW"):
        super().__init__()
        if not isinstance(weight, CSR):
            raise TypeError(f"SparseConv2d: expected weight to be a CSR matrix, got {type(weight).__name__}")
        if in_layout not in ("NCHW", "NHWC") or out_layout not in ("NCHW", "NHWC"):
            raise ValueError(f"SparseConv2d: expected layouts 'NCHW' or 'NHWC', got {in_layout!r}, {out_layout!r}")
        self.kh, self.kw = kernel_size
        self.in_channels, self.out_channels = in_channels, weight.shape[0]
        if weight.shape[1] != in_channels * self.kh * self.kw:
            raise ValueError(f"SparseConv2d: expected weight columns kh*kw*C = {in_channels * self.kh * self.kw}, "
                             f"got {weight.shape[1]}")
        self.weight, self.bias = weight, _check_bias("SparseConv2d", bias, self.out_channels)
        self.stride, self.padding = int(stride), int(padding)
        self.relu, self.threads, self.backend = bool(relu), threads, backend
        self.in_layout, self.out_layout = in_layout, out_layout

    @classmethod
    def from_conv(cls, conv, relu=False, threads=None, backend=None, in_layout="NCHW",
                  out_layout="NCHW") -> "SparseConv2d":
        """Convert a (pruned) ``Conv2d``; reads ``stride`` and ``padding`` attributes (int or pair)."""
        w = _dense_weight(conv, "SparseConv2d.from_conv")
        if w.ndim != 4:
            raise ValueError(f"SparseConv2d.from_conv: expected a 4-D weight (O, C, kh, kw), got {w.shape}")
        o, c, kh, kw = w.shape
        stride, padding = _single(getattr(conv, "stride", 1), "stride"), _single(getattr(conv, "padding", 0), "padding")
        return cls(CSR.from_dense(w.transpose(0, 2, 3, 1).reshape(o, kh * kw * c)), (kh, kw), c, _bias(conv),
                   stride, padding, relu, threads, backend, in_layout, out_layout)

    def forward(self, x):
        x = as_array(x)
        nhwc = self.in_layout == "NHWC"
        if x.ndim != 4 or x.shape[3 if nhwc else 1] != self.in_channels:
            want = f"(N, H, W, {self.in_channels})" if nhwc else f"(N, {self.in_channels}, H, W)"
            raise ValueError(f"SparseConv2d: expected input {want}, got {x.shape}")
        x = x.astype(np.float32, copy=False)
        if not nhwc:
            x = x.transpose(0, 2, 3, 1)
        n, h, w, _ = x.shape
        oh = conv_output_size(h, self.kh, self.stride, self.padding)
        ow = conv_output_size(w, self.kw, self.stride, self.padding)
        if oh <= 0 or ow <= 0:
            raise ValueError(f"SparseConv2d: input {x.shape} is smaller than the kernel {(self.kh, self.kw)}")
        rows = patches(self, x, self.kh, self.kw, self.stride, self.padding)
        y = self._linear(rows).reshape(n, oh, ow, self.out_channels)
        return Tensor(y if self.out_layout == "NHWC" else np.ascontiguousarray(y.transpose(0, 3, 1, 2)))

    def inference_cost(self, x, y):
        return self._cost("conv", int(y.size // self.out_channels))

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel=({self.kh}, {self.kw}), stride={self.stride}, "
                f"padding={self.padding}, nnz={self.weight.nnz}, relu={self.relu}, "
                f"{self.in_layout}->{self.out_layout}")


def _single(v, what):
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"SparseConv2d.from_conv: only square {what} is supported, got {v}")
        v = v[0]
    return int(v)
