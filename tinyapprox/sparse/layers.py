"""Inference-only layers that keep a pruned weight in CSR and multiply on the CSR kernel.

``SparseLinear`` computes ``y = x @ W^T + b`` as ``(W_csr @ x^T)^T``: the kernel takes
CSR (M x K) times a row-major dense (K x N), so the weight (out, in) is the sparse
operand and the batch becomes the kernel's N (the dense columns it vectorises over).
The result is returned as a transposed view of the kernel's (out, N) array, so a chain
of sparse layers with element-wise activations between them transposes only once, at
the first layer (measured on LeNet-300-100, batch 256: about 0.35 ms less per batch
than copying back to row-major after every layer).
``SparseConv2d`` lowers the convolution to the same product with ``conv.im2col``:
``W_csr (O, kh*kw*C) @ cols^T (kh*kw*C, N*OH*OW)``, the weight's columns flattened in
the (u, v, c) order of the patch matrix.

Both accept a ``Tensor`` or an ndarray and return a ``Tensor`` (no gradient: these layers
are for inference). Their ``weight`` attribute is the CSR matrix, so ``nbytes`` and
``nnz`` are one attribute away.
"""
from __future__ import annotations

import numpy as np

from ..conv import im2col
from ..nn.module import Module
from ..tensor import Tensor
from .formats import CSR

__all__ = ["SparseLinear", "SparseConv2d"]


def _array(x) -> np.ndarray:
    return np.asarray(x.data if isinstance(x, Tensor) else x, dtype=np.float32)


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
    return np.asarray(eff.data if isinstance(eff, Tensor) else eff, dtype=np.float32).copy()


class SparseLinear(Module):
    """y = x @ W^T + b with W (out, in) stored as CSR.

    Args:
        weight: a ``CSR`` of shape (out, in).
        bias: float32 (out,) or None.
        backend: passed to ``kernels.csr_matmul`` (None = default, "numpy", "c").

    forward: x (N, in) or (in,) -> (N, out) or (out,) float32 Tensor.
    Raises ValueError when x's last dimension is not ``in``.
    """

    def __init__(self, weight: CSR, bias=None, backend=None):
        super().__init__()
        if not isinstance(weight, CSR):
            raise TypeError(f"SparseLinear: expected weight to be a CSR matrix, got {type(weight).__name__}")
        if bias is not None:
            bias = np.asarray(bias, dtype=np.float32)
            if bias.shape != (weight.shape[0],):
                raise ValueError(f"SparseLinear: expected bias of shape ({weight.shape[0]},), got {bias.shape}")
        self.weight, self.bias, self.backend = weight, bias, backend
        self.out_features, self.in_features = weight.shape

    @classmethod
    def from_linear(cls, linear, backend=None) -> "SparseLinear":
        """Convert a (pruned) dense ``Linear``: its effective weight (masks applied) goes to CSR."""
        w = _dense_weight(linear, "SparseLinear.from_linear")
        if w.ndim != 2:
            raise ValueError(f"SparseLinear.from_linear: expected a 2-D weight (out, in), got {w.shape}")
        return cls(CSR.from_dense(w), _bias(linear), backend)

    def forward(self, x):
        x = _array(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"SparseLinear: expected input (..., {self.in_features}), got {x.shape}")
        lead = x.shape[:-1]
        xt = np.ascontiguousarray(x.reshape(int(np.prod(lead)), self.in_features).T)
        yt = self.weight.matmul(xt, backend=self.backend)
        if self.bias is not None:
            yt += self.bias[:, None]
        # (N, out) as a transposed view of the kernel's (out, N) result: no copy, and the
        # next SparseLinear (after an element-wise activation, which keeps the layout)
        # gets its (in, N) operand back without a copy either.
        return Tensor(yt.T.reshape(lead + (self.out_features,)))

    def extra_repr(self):
        return f"in={self.in_features}, out={self.out_features}, nnz={self.weight.nnz}"


class SparseConv2d(Module):
    """Cross-correlation with the weight (O, C, kh, kw) stored as CSR of shape (O, kh*kw*C).

    Args:
        weight: a ``CSR`` (O, kh*kw*C) whose column ``(u*kw + v)*C + c`` holds
            ``w[o, c, u, v]``: the (u, v, c) order of ``conv.im2col``'s patch columns, i.e.
            ``CSR.from_dense(w.transpose(0, 2, 3, 1).reshape(O, -1))`` (``from_conv`` does it).
        kernel_size: (kh, kw); in_channels: C; bias: float32 (O,) or None.
        stride, padding: ints (the same along both axes); backend: as for ``SparseLinear``.

    forward: x (N, C, H, W) -> (N, O, OH, OW) float32 Tensor, OH = (H + 2p - kh)//s + 1.
    Raises ValueError for a wrong channel count, a wrong bias shape or an input smaller
    than the kernel; TypeError for a weight that is not a CSR.
    """

    def __init__(self, weight: CSR, kernel_size, in_channels, bias=None, stride=1, padding=0, backend=None):
        super().__init__()
        if not isinstance(weight, CSR):
            raise TypeError(f"SparseConv2d: expected weight to be a CSR matrix, got {type(weight).__name__}")
        self.kh, self.kw = kernel_size
        self.in_channels, self.out_channels = in_channels, weight.shape[0]
        if weight.shape[1] != in_channels * self.kh * self.kw:
            raise ValueError(f"SparseConv2d: expected weight columns kh*kw*C = {in_channels * self.kh * self.kw}, "
                             f"got {weight.shape[1]}")
        if bias is not None:
            bias = np.asarray(bias, dtype=np.float32)
            if bias.shape != (self.out_channels,):
                raise ValueError(f"SparseConv2d: expected bias of shape ({self.out_channels},), got {bias.shape}")
        self.weight, self.bias = weight, bias
        self.stride, self.padding, self.backend = int(stride), int(padding), backend

    @classmethod
    def from_conv(cls, conv, backend=None) -> "SparseConv2d":
        """Convert a (pruned) ``Conv2d``; reads ``stride`` and ``padding`` attributes (int or pair)."""
        w = _dense_weight(conv, "SparseConv2d.from_conv")
        if w.ndim != 4:
            raise ValueError(f"SparseConv2d.from_conv: expected a 4-D weight (O, C, kh, kw), got {w.shape}")
        o, c, kh, kw = w.shape
        stride, padding = _single(getattr(conv, "stride", 1), "stride"), _single(getattr(conv, "padding", 0), "padding")
        return cls(CSR.from_dense(w.transpose(0, 2, 3, 1).reshape(o, kh * kw * c)), (kh, kw), c, _bias(conv),
                   stride, padding, backend)

    def forward(self, x):
        x = _array(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SparseConv2d: expected input (N, {self.in_channels}, H, W), got {x.shape}")
        n, _, h, w = x.shape
        oh = (h + 2 * self.padding - self.kh) // self.stride + 1
        ow = (w + 2 * self.padding - self.kw) // self.stride + 1
        if oh <= 0 or ow <= 0:
            raise ValueError(f"SparseConv2d: input {x.shape} is smaller than the kernel {(self.kh, self.kw)}")
        patches = im2col(x, self.kh, self.kw, self.stride, self.padding)
        y = self.weight.matmul(patches.T, backend=self.backend).reshape(self.out_channels, n, oh, ow)
        if self.bias is not None:
            y += self.bias[:, None, None, None]
        return Tensor(np.ascontiguousarray(y.transpose(1, 0, 2, 3)))

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel=({self.kh}, {self.kw}), stride={self.stride}, "
                f"padding={self.padding}, nnz={self.weight.nnz}")


def _single(v, what):
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"SparseConv2d.from_conv: only square {what} is supported, got {v}")
        v = v[0]
    return int(v)
