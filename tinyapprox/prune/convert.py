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
from ..nn.inference import MaxPool2dNHWC
from ..nn.tracing import effective_weight, trace_layers
from ..sparse.layers import SparseConv2d, SparseLinear
from .mask import PruneMask, apply_mask

__all__ = ["to_sparse", "remove_filters"]


def to_sparse(model, min_sparsity: float = 0.0, threads=None, backend=None):
    """An eval-only inference copy of ``model`` with pruned weight layers in CSR.

    Every leaf layer whose weight is 2-D (Linear) or 4-D (Conv2d) and whose effective
    weight has at least ``min_sparsity`` zeros is replaced by ``SparseLinear`` /
    ``SparseConv2d`` (masks applied), each one call of ``kernels.csr_linear`` with the bias
    fused; a ``ReLU`` that directly follows such a layer in a ``Sequential`` is fused into
    it (and removed). Inside a ``Sequential``, a convolution whose output reaches the next
    lowered layer only through element-wise activations, max pooling and a Flatten keeps
    it channels-last (its kernel's natural layout): the pools become ``nn.MaxPool2dNHWC``
    and the Linear after the Flatten gets its columns reordered once, so the activations
    are never transposed. The original model is not modified. The copy takes ndarrays or
    Tensors and returns float32 Tensors without a graph; ``threads`` and ``backend`` go to
    the kernel.

    Raises ValueError for ``min_sparsity`` outside [0, 1].
    """
    if not 0.0 <= min_sparsity <= 1.0:
        raise ValueError(f"to_sparse: expected min_sparsity in [0, 1], got {min_sparsity}")
    out = copy.deepcopy(model)

    def eligible(m):
        if m._modules:
            return False
        w = effective_weight(m)
        return w is not None and w.ndim in (2, 4) and not (w.size and np.mean(w == 0) < min_sparsity)

    for _, parent in list(out.named_modules()):
        if isinstance(parent, nn.Sequential):
            _lower_sequential(parent, eligible, threads, backend)
            continue
        for cname, child in list(parent._modules.items()):
            if eligible(child):
                new = (SparseLinear.from_linear(child, False, threads, backend) if effective_weight(child).ndim == 2
                       else SparseConv2d.from_conv(child, False, threads, backend))
                parent._modules[cname] = new
                object.__setattr__(parent, cname, new)
    return out.eval()


_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Hardtanh, nn.Sigmoid, nn.Dropout)


def _keeps_nhwc(items, i, eligible) -> bool:
    """Can the output of the conv at position i stay channels-last until the next lowered layer?"""
    flat = False
    for _, m in items[i + 1:]:
        if isinstance(m, _ELEMENTWISE):
            continue
        if isinstance(m, nn.MaxPool2d) and not flat and tuple(m.padding) == (0, 0):
            continue
        if isinstance(m, nn.Flatten) and not flat and (m.start_dim, m.end_dim) in ((1, -1), (1, 3)):
            flat = True
            continue
        w = effective_weight(m) if not m._modules else None
        return eligible(m) and w.ndim == (2 if flat else 4)
    return False


def _lower_sequential(seq, eligible, threads, backend):
    """Replace the eligible layers of one Sequential in place, choosing each activation's layout."""
    items = list(seq._modules.items())
    new, skip = [], set()
    layout, channels = "NCHW", None          # layout of the activation flowing now; channels if NHWC
    for i, (name, m) in enumerate(items):
        if i in skip:
            continue
        if eligible(m):
            relu = i + 1 < len(items) and type(items[i + 1][1]) is nn.ReLU
            if relu:
                skip.add(i + 1)
            if effective_weight(m).ndim == 4:
                out_layout = "NHWC" if _keeps_nhwc(items, i, eligible) else "NCHW"
                m = SparseConv2d.from_conv(m, relu, threads, backend, "NHWC" if layout == "NHWC" else "NCHW",
                                           out_layout)
                layout, channels = out_layout, m.out_channels
            else:
                m = SparseLinear.from_linear(m, relu, threads, backend,
                                             nhwc_channels=channels if layout == "NHWC-flat" else None)
                layout = "NCHW"
        elif layout == "NHWC" and isinstance(m, nn.MaxPool2d):
            m = MaxPool2dNHWC.from_pool(m)
        elif layout == "NHWC" and isinstance(m, nn.Flatten):
            layout = "NHWC-flat"
        new.append((name, m))
    for name, _ in items:
        seq._modules.pop(name)
        seq.__dict__.pop(name, None)
    for name, m in new:
        seq._modules[name] = m
        object.__setattr__(seq, name, m)


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
