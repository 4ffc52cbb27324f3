"""The shape every lowered model shares: eval-only layers that each make one fused kernel call.

``prune.to_sparse``, ``quant.convert`` and ``bnn.pack`` each turn a trained model into an
``nn.Module`` built from ``InferenceModule`` layers (CSR, int8, bit-packed). They take a
Tensor or an ndarray like any layer and return a Tensor without a graph, so
``train.predict`` / ``train.evaluate``, ``Module.summary`` and the ``cost`` functions run
them like the float model they came from.

What the float layers tell ``summary`` and ``cost`` through their ``Parameter`` s, an
inference layer tells through two methods: ``stored_values()``, the number of values it
keeps (weights, biases, scales, thresholds; counted by ``Module.num_parameters``), and
``inference_cost(x, y)``: given the input and output arrays of one call, a dict

* ``kind``: "linear", "conv", "pool", "activation" or "other";
* ``weights`` / ``nonzero_weights``: entries of the dense weight it stands for, and the non-zero ones;
* ``macs`` / ``nonzero_macs``: multiply-accumulates of this call, dense and non-zero-only;
* ``executed_macs``: the ones the kernel actually performs (non-zero only for CSR, all for
  a dense int8 or binary product);
* ``mult_op`` / ``add_op``: the keys of ``cost.ENERGY_PJ_45NM`` (or of the extra energies
  ``cost.inference_energy`` knows, such as ``"xnor1"``) one executed MAC is priced with;
  ``None`` for no such operation.

and ``stored_bytes()``, its storage as it keeps it (values, indices, scales, thresholds).
The activations' traffic is read off the arrays themselves: int8 codes are 8 bits, packed
+-1 activations 1 bit per value (64 per uint64 word), floats 32.
"""
from __future__ import annotations

import threading

import numpy as np

from ..tensor import Tensor
from .module import Module

__all__ = ["InferenceModule", "MaxPool2dNHWC", "as_array", "nchw_columns_to_nhwc"]


def as_array(x) -> np.ndarray:
    """The ndarray behind a Tensor, or ``np.asarray(x)`` (dtype kept)."""
    return x.data if isinstance(x, Tensor) else np.asarray(x)


_local = threading.local()


def scratch(key, shape, dtype) -> np.ndarray:
    """A per-thread work array of ``shape`` and ``dtype`` reused across calls under ``key``.

    For intermediates a layer consumes before it returns (patch matrices): a fresh array
    of tens of MB costs page faults on every batch. Never return it to a caller.
    """
    store = getattr(_local, "arrays", None)
    if store is None:
        store = _local.arrays = {}
    arr = store.get(key)
    shape, dtype = tuple(shape), np.dtype(dtype)
    if arr is None or arr.dtype != dtype or arr.size < int(np.prod(shape)):
        arr = store[key] = np.empty(shape, dtype=dtype)
    return arr.reshape(-1)[:int(np.prod(shape))].reshape(shape)


def patches(layer, x, kh, kw, stride, padding):
    """Row-major patch matrix of channels-last ``x`` for ``layer`` (``kernels.im2col`` into a
    per-thread scratch array; read it before the layer's next call)."""
    from .. import kernels
    n, h, w, c = x.shape
    oh, ow = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    out = scratch(("im2col", id(layer)), (n * oh * ow, kh * kw * c), x.dtype)
    return kernels.im2col(np.ascontiguousarray(x), kh, kw, stride, padding, threads=getattr(layer, "threads", None),
                          backend=getattr(layer, "backend", None), out=out)


class InferenceModule(Module):
    """Base of eval-only lowered layers (see the module docstring for ``inference_cost``).

    Subclasses keep their arrays as plain attributes (no ``Parameter`` s: nothing here is
    trained) and implement ``forward`` and ``inference_cost``.
    """

    def __init__(self):
        super().__init__()
        self.training = False

    def stored_values(self) -> int:
        """Number of values this layer stores (what ``Module.num_parameters`` counts for it)."""
        return 0

    def stored_bytes(self) -> int:
        """Bytes this layer stores (values, indices, scales, thresholds)."""
        return 0

    def inference_cost(self, x, y) -> dict:
        """Counts for one call with input ``x`` and output ``y`` (ndarrays); see the module docstring."""
        return {"kind": "other", "weights": 0, "nonzero_weights": 0, "macs": 0, "nonzero_macs": 0,
                "executed_macs": 0, "mult_op": None, "add_op": None}


class MaxPool2dNHWC(InferenceModule):
    """Max pooling of channels-last activations (N, H, W, C) -> (N, OH, OW, C), any dtype.

    What a lowered model puts where the float model had ``nn.MaxPool2d``, between
    inference layers that keep activations channels-last (their row-major output
    (N*OH*OW, C) *is* (N, OH, OW, C)), so no transpose is needed. Max pooling commutes
    with every monotone map, so it runs on int8 codes as well as on floats. No padding.

    Raises ValueError for an input that is not 4-D or smaller than the window.
    """

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kh, self.kw = (kernel_size, kernel_size) if np.ndim(kernel_size) == 0 else tuple(kernel_size)
        s = (self.kh, self.kw) if stride is None else stride
        self.sh, self.sw = (s, s) if np.ndim(s) == 0 else tuple(s)

    @classmethod
    def from_pool(cls, pool) -> "MaxPool2dNHWC":
        """From an ``nn.MaxPool2d`` without padding (ValueError otherwise)."""
        if tuple(pool.padding) != (0, 0):
            raise ValueError(f"MaxPool2dNHWC.from_pool: padding is not supported, got {pool.padding}")
        return cls(pool.kernel_size, pool.stride)

    def forward(self, x):
        x = as_array(x)
        if x.ndim != 4:
            raise ValueError(f"MaxPool2dNHWC: expected channels-last input (N, H, W, C), got {x.shape}")
        n, h, w, c = x.shape
        oh, ow = (h - self.kh) // self.sh + 1, (w - self.kw) // self.sw + 1
        if oh <= 0 or ow <= 0:
            raise ValueError(f"MaxPool2dNHWC: input {x.shape} is smaller than the window {(self.kh, self.kw)}")
        # One element-wise maximum per window offset, each over contiguous runs of C values
        # (a reduction over the strided window axes is several times slower).
        out = None
        for u in range(self.kh):
            for v in range(self.kw):
                tap = x[:, u:u + (oh - 1) * self.sh + 1:self.sh, v:v + (ow - 1) * self.sw + 1:self.sw]
                if out is None:
                    out = tap.copy()
                else:
                    np.maximum(out, tap, out=out)
        return Tensor(out)

    def inference_cost(self, x, y):
        return {**super().inference_cost(x, y), "kind": "pool"}

    def extra_repr(self):
        return f"kernel_size=({self.kh}, {self.kw}), stride=({self.sh}, {self.sw})"


def nchw_columns_to_nhwc(w: np.ndarray, channels: int) -> np.ndarray:
    """Reorder the input columns of a (out, C*H*W) weight from the float model's (c, h, w)
    flattening to the (h, w, c) order of flattened channels-last activations.

    Args: w (out, C*H*W) array of any dtype; channels: C, an int >= 1 dividing C*H*W.
    Returns a contiguous (out, H*W*C) array of w's dtype.
    Raises ValueError if w is not 2-D or ``channels`` does not divide its columns.
    """
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"nchw_columns_to_nhwc: expected a 2-D weight (out, C*H*W), got {w.shape}")
    out, k = w.shape
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1 or k % channels:
        raise ValueError(f"nchw_columns_to_nhwc: expected channels an int >= 1 dividing the {k} columns, "
                         f"got {channels!r}")
    return np.ascontiguousarray(w.reshape(out, channels, k // channels).transpose(0, 2, 1).reshape(out, k))
