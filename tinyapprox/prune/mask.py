"""Pruning masks as parameter transforms, and counting what was pruned.

A pruned parameter carries a ``PruneMask`` (a ``ParamTransform``): the forward pass uses
``w * mask``, so the gradient of a pruned entry is exactly zero, and after every optimizer
step ``after_step`` writes zeros back into ``param.data`` so pruned entries stay exactly
zero even under momentum, weight decay or Adam (whose buffers may still hold old values).

With ``revivable=True`` (dynamic network surgery, Guo et al. 2016) the mask is applied in
the forward pass only: the gradient reaches every weight (straight through the mask) and
``data`` is not zeroed, so a pruned weight that grows can come back the next time the
mask is recomputed from the current magnitudes.

``remove(model)`` bakes masks into the weights and drops them; the model's
``state_dict`` carries masks (``<param>.transform<i>.PruneMask.mask``) and
``load_state_dict`` rebuilds them.
"""
from __future__ import annotations

import numpy as np

from ..nn.module import Module, Parameter, ParamTransform, weight_layers
from ..tensor import Function, Tensor, no_grad

__all__ = ["PruneMask", "apply_mask", "apply_masks", "get_masks", "prunable", "remove", "sparsity",
           "count_zeros", "l0"]


class _MaskThrough(Function):
    """w * mask in the forward pass; the whole gradient passes through (revivable masks)."""

    @staticmethod
    def forward(ctx, w, mask):
        return w * mask

    @staticmethod
    def backward(ctx, g):
        return g, None


class PruneMask(ParamTransform):
    """Multiply a parameter by a fixed 0/1 mask of its shape.

    Args:
        mask: array of the parameter's shape; non-zero = keep. Stored as bool.
        revivable: see the module docstring.
    """

    order = ParamTransform.MASK

    def __init__(self, mask, revivable: bool = False):
        self.mask = np.asarray(mask).astype(bool)
        self.revivable = bool(revivable)

    def __call__(self, w: Tensor) -> Tensor:
        if w.shape != self.mask.shape:
            raise ValueError(f"PruneMask: mask of shape {self.mask.shape} applied to a parameter of shape {w.shape}")
        m = self.mask.astype(w.dtype)
        if self.revivable:
            return _MaskThrough.apply(w, m)
        return w * m

    def after_step(self, param) -> None:
        if not self.revivable:
            param.data[~self.mask] = 0

    def state(self) -> dict:
        return {"mask": self.mask.astype(np.uint8), "revivable": np.array(self.revivable, dtype=np.uint8)}

    @classmethod
    def from_state(cls, state: dict) -> "PruneMask":
        """Rebuild from ``state()``: ``{"mask": uint8 0/1 array, "revivable": uint8 0/1 scalar}``.

        Raises ValueError for a missing mask, or a mask or flag holding anything but 0 and 1
        (a corrupt checkpoint; "non-zero = keep" would silently keep damaged entries).
        """
        if "mask" not in state:
            raise ValueError(f"PruneMask.from_state: expected a 'mask' entry, got keys {sorted(state)}")
        mask = np.asarray(state["mask"])
        flag = np.asarray(state.get("revivable", 0))
        for what, arr in (("mask", mask), ("revivable flag", flag)):
            if arr.dtype.kind not in "biu" or (arr.size and not np.isin(arr, (0, 1)).all()):
                raise ValueError(f"PruneMask.from_state: expected a {what} of 0s and 1s, "
                                 f"got dtype {arr.dtype} with values {np.unique(arr)[:5]}")
        if flag.size != 1:
            raise ValueError(f"PruneMask.from_state: expected a scalar revivable flag, got shape {flag.shape}")
        return cls(mask.astype(bool), bool(flag.reshape(())))

    @property
    def sparsity(self) -> float:
        return 1.0 - float(self.mask.mean()) if self.mask.size else 0.0

    def __repr__(self):
        return f"PruneMask(shape={self.mask.shape}, sparsity={self.sparsity:.3f}{', revivable' if self.revivable else ''})"


def prunable(model, params=None) -> dict:
    """The parameters pruning acts on: ``{name: Parameter}``.

    By default the ``weight`` of every leaf layer whose weight has 2 dims (Linear) or 4
    dims (Conv2d) - not biases, not batch-norm scales. ``params`` selects explicitly: an
    iterable of names from ``model.named_parameters()``.

    Raises: KeyError naming an unknown parameter; TypeError for a non-Module.
    """
    if not isinstance(model, Module):
        raise TypeError(f"prune: expected a Module, got {type(model).__name__}")
    named = dict(model.named_parameters())
    if params is not None:
        params = [params] if isinstance(params, str) else list(params)
        unknown = [p for p in params if p not in named]
        if unknown:
            raise KeyError(f"prune: unknown parameters {unknown}; the model has {list(named)}")
        return {p: named[p] for p in params}
    return {f"{mname}.weight" if mname else "weight": mod.weight for mname, mod in weight_layers(model)}


def apply_mask(param: Parameter, mask, revivable: bool = False) -> PruneMask:
    """Attach (or replace) the ``PruneMask`` of ``param`` and zero the pruned entries of ``data``.

    The mask goes first in the transform chain (``PruneMask.order`` is ``MASK``), in front
    of any quantizer, replacing an earlier mask.
    Raises ValueError when the mask shape differs from the parameter's.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.shape != param.shape:
        raise ValueError(f"apply_mask: expected a mask of shape {param.shape}, got {mask.shape}")
    new = PruneMask(mask, revivable)
    param.remove_transform(PruneMask)
    param.add_transform(new)
    if not revivable:
        param.data[~mask] = 0
    return new


def apply_masks(model, masks: dict, revivable: bool = False) -> Module:
    """Attach ``{param name: mask}`` to ``model`` (e.g. masks of another model of the same shape)."""
    named = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in named:
            raise KeyError(f"apply_masks: unknown parameter {name!r}; the model has {list(named)}")
        apply_mask(named[name], mask, revivable)
    return model


def get_masks(model) -> dict:
    """``{param name: bool mask}`` of every parameter carrying a ``PruneMask`` (copies)."""
    out = {}
    for name, p in model.named_parameters():
        t = p.find_transform(PruneMask)
        if t is not None:
            out[name] = t.mask.copy()
    return out


def remove(model, name: str | None = None) -> Module:
    """Bake masks into the weights (``data *= mask``) and drop the ``PruneMask`` transforms.

    ``model``: a model or a single layer; ``name``: one parameter name (as in
    ``named_parameters``) or None for all. Later transforms (a quantizer) stay attached.
    Raises KeyError for an unknown name.
    """
    named = dict(model.named_parameters())
    if name is not None:
        if name not in named:
            raise KeyError(f"prune.remove: unknown parameter {name!r}; the model has {list(named)}")
        named = {name: named[name]}
    for p in named.values():
        p.bake(PruneMask)
    return model


def _effective(p) -> np.ndarray:
    with no_grad():
        return p.effective().data if isinstance(p, Parameter) else np.asarray(getattr(p, "data", p))


def count_zeros(model, params=None) -> dict:
    """Per-parameter counts on the effective weights: ``{name: {"zeros", "nonzeros", "total", "sparsity"}}``.

    ``nonzeros`` is what is often called the "L0 norm" of the tensor; it is not a norm
    (scaling a tensor by 2 does not double it), just a count. Default parameters as in
    ``prunable``; pass ``params="all"`` for every parameter.
    """
    table = dict(model.named_parameters()) if params == "all" else prunable(model, params)
    out = {}
    for name, p in table.items():
        arr = _effective(p)
        nz = int(np.count_nonzero(arr))
        out[name] = {"zeros": int(arr.size - nz), "nonzeros": nz, "total": int(arr.size),
                     "sparsity": (arr.size - nz) / arr.size if arr.size else 0.0}
    return out


def l0(x) -> int:
    """Number of non-zero entries of an array, Tensor or Parameter (its effective value).

    The customary "L0 norm"; not a norm, since l0(2x) == l0(x).
    """
    return int(np.count_nonzero(_effective(x) if isinstance(x, Tensor) else np.asarray(x)))


def sparsity(model, params=None) -> float:
    """Zeros / total over the prunable weights (or ``params``; "all" for every parameter).

    Raises ValueError when the selection is empty.
    """
    counts = count_zeros(model, params)
    total = sum(c["total"] for c in counts.values())
    if total == 0:
        raise ValueError("prune.sparsity: the model has no prunable parameters")
    return sum(c["zeros"] for c in counts.values()) / total
