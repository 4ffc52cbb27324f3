"""Model inspection: which leaf layers ran, on what, and with which weights.

``trace_layers(model, x)`` runs one batch and records every leaf layer call (the tracer
behind ``Module.summary``, ``cost.layer_costs``, ``prune.report`` and ``prune.to_sparse``);
``effective_weight(module)`` is the weight the forward pass uses, as an array.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..tensor import Tensor, no_grad

__all__ = ["trace_layers", "effective_weight"]


@contextlib.contextmanager
def _recording(model):
    """Temporarily wrap each leaf module's ``forward`` to record (name, module, input, output)."""
    records = []
    leaves = [(n, m) for n, m in model.named_modules() if not m._modules]
    own = {id(m): m.__dict__["forward"] for _, m in leaves if "forward" in m.__dict__}  # put back afterwards
    for name, mod in leaves:
        original = mod.forward

        def wrapped(*args, _orig=original, _name=name, _mod=mod, **kwargs):
            out = _orig(*args, **kwargs)
            x = args[0] if args else None
            records.append((_name, _mod, _as_array(x), _as_array(out)))
            return out

        object.__setattr__(mod, "forward", wrapped)
    try:
        yield records
    finally:
        for _, mod in leaves:
            mod.__dict__.pop("forward", None)
            if id(mod) in own:
                object.__setattr__(mod, "forward", own[id(mod)])


def _as_array(x):
    if isinstance(x, Tensor):
        return x.data
    return None if x is None else np.asarray(x)


def trace_layers(model, x) -> list:
    """Run ``x`` through ``model`` (eval mode, no graph) and record every leaf layer call.

    x: an ndarray or Tensor batch. Returns a list of ``(name, module, input, output)``
    with ndarray input/output, in call order (a layer called twice appears twice).
    """
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float32))
    was_training = model.training
    model.eval()
    try:
        with no_grad(), _recording(model) as records:
            model(x)
    finally:
        model.train(was_training)
    return records


def effective_weight(module) -> np.ndarray | None:
    """The weight the forward pass uses (transforms such as masks applied), or None."""
    w = module._parameters.get("weight") if hasattr(module, "_parameters") else None
    if w is None:
        return None
    with no_grad():
        eff = w.effective() if hasattr(w, "effective") else w
    return np.asarray(eff.data if isinstance(eff, Tensor) else eff)
