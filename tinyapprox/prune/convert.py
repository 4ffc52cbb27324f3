"""Turning a pruned model into a smaller or faster one.

* ``to_sparse(model)``: an eval-only copy in which every Linear/Conv2d weight is a CSR
  matrix on the fused CSR kernel (``sparse.SparseLinear`` / ``sparse.SparseConv2d``, bias
  and a following ReLU fused into the call).
* ``remove_filters(model, input_shape)``: physical removal of fully pruned filters (output
  neurons / output maps) from a ``Sequential`` chain, with their biases and the matching
  input columns / channels of the next weight layer; the result is a smaller *dense* model
  computing the same function.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import nn
from ..cost import effective_weight, trace_layers
from ..sparse.layers import SparseConv2d, SparseLinear
from .mask import PruneMask, apply_mask

__all__ = ["to_sparse", "remove_filters"]


def to_sparse(model, min_sparsity: float = 0.0, threads=None, backend=None):
    """An eval-only inference copy of ``model`` with pruned weight layers in CSR.

    Every leaf layer whose weight is 2-D (Linear) or 4-D (Conv2d) and whose effective
    weight has at least ``min_sparsity`` zeros is replaced by ``SparseLinear`` /
    ``SparseConv2d`` (masks applied), each one call of ``kernels.csr_linear`` with the bias
    fused; a ``ReLU`` that directly follows such a layer in a ``Sequential`` is fused into
    it (and removed). The original model is not modified. The copy takes ndarrays or
    Tensors and returns float32 Tensors without a graph; ``threads`` and ``backend`` go to
    the kernel.

    Raises ValueError for ``min_sparsity`` outside [0, 1].
    """
    if not 0.0 <= min_sparsity <= 1.0:
        raise ValueError(f"to_sparse: expected min_sparsity in [0, 1], got {min_sparsity}")
    out = copy.deepcopy(model)
    for pname, parent in list(out.named_modules()):
        items = list(parent._modules.items())
        fused = set()
        for pos, (cname, child) in enumerate(items):
            if child._modules or cname in fused:
                continue
            w = effective_weight(child)
            if w is None or w.ndim not in (2, 4) or (w.size and np.mean(w == 0) < min_sparsity):
                continue
            relu = isinstance(parent, nn.Sequential) and pos + 1 < len(items) and type(items[pos + 1][1]) is nn.ReLU
            if w.ndim == 2:
                new = SparseLinear.from_linear(child, relu, threads, backend)
            else:
                new = SparseConv2d.from_conv(child, relu, threads, backend)
            parent._modules[cname] = new  # in place, so the call order of a Sequential is kept
            object.__setattr__(parent, cname, new)
            if relu:
                fused.add(items[pos + 1][0])
        for cname in fused:
            del parent._modules[cname]
            parent.__dict__.pop(cname, None)
    return out.eval()


_ZERO_PRESERVING = (nn.ReLU, nn.Tanh, nn.Hardtanh, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Dropout)


def remove_filters(model, input_shape) -> nn.Sequential:
    """A smaller Sequential without the filters whose weights and bias are all zero.

    A filter (a Conv2d output map, or a Linear output neuron) whose effective weight row
    and bias are zero outputs exactly 0; when every layer until the next weight layer
    maps 0 to 0 (ReLU, Tanh, Hardtanh, pooling, Flatten, Dropout) that map can be deleted
    together with the next layer's matching input channel (Conv2d) or input columns
    (Linear, ``H*W`` columns per channel after a Flatten). The last weight layer keeps all
    its outputs. Remaining masks are carried over (restricted to the kept rows/columns).

    Args:
        model: ``nn.Sequential`` of Linear, Conv2d and the zero-preserving layers above.
        input_shape: e.g. (1, 1, 28, 28), used to find the spatial size at a Flatten.

    Raises:
        TypeError: not a Sequential, or a layer that does not map 0 to 0 (Sigmoid, BatchNorm)
            between two weight layers.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"remove_filters: expected an nn.Sequential, got {type(model).__name__}")
    records = trace_layers(model, np.zeros(tuple(input_shape), dtype=np.float32))
    layers = list(model)
    weight_idx = [i for i, m in enumerate(layers) if isinstance(m, (nn.Linear, nn.Conv2d))]
    new_layers, keep_in, spatial = [], None, 1
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Flatten) and keep_in is not None:
            spatial = int(np.prod(records[i][2].shape[2:])) if records[i][2].ndim == 4 else 1
            new_layers.append(copy.deepcopy(layer))
            continue
        if not isinstance(layer, (nn.Linear, nn.Conv2d)):
            if keep_in is not None and not isinstance(layer, _ZERO_PRESERVING):
                raise TypeError(f"remove_filters: layer {i} ({type(layer).__name__}) does not map 0 to 0, so "
                                "the zero maps before it cannot be removed")
            new_layers.append(copy.deepcopy(layer))
            continue
        w = effective_weight(layer)
        b = None if layer.bias is None else np.asarray(layer.bias.effective().data)
        old_mask = layer.weight.find_transform(PruneMask)
        mask = old_mask.mask if old_mask is not None else np.ones(w.shape, bool)
        if keep_in is not None:
            cols = keep_in if isinstance(layer, nn.Conv2d) or spatial == 1 else \
                (keep_in[:, None] * spatial + np.arange(spatial)).reshape(-1)
            w, mask = w[:, cols], mask[:, cols]
        last = i == weight_idx[-1]
        alive = np.ones(w.shape[0], bool) if last else (w.reshape(w.shape[0], -1) != 0).any(axis=1)
        if b is not None and not last:
            alive |= b != 0
        keep_out = np.flatnonzero(alive)
        if isinstance(layer, nn.Linear):
            new = nn.Linear(w.shape[1], len(keep_out), bias=b is not None, seed=0)
        else:
            new = nn.Conv2d(w.shape[1], len(keep_out), layer.kernel_size, stride=layer.stride,
                            padding=layer.padding, bias=b is not None, impl=layer.impl, seed=0)
        new.weight.data = np.ascontiguousarray(w[keep_out], dtype=np.float32)
        if b is not None:
            new.bias.data = np.ascontiguousarray(b[keep_out], dtype=np.float32)
        if old_mask is not None:
            apply_mask(new.weight, mask[keep_out])
        new_layers.append(new)
        keep_in, spatial = keep_out, 1
    return nn.Sequential(*new_layers)
