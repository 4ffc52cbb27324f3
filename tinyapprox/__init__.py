"""tinyapprox: a NumPy-only neural-network engine for teaching approximate computing.

Start with ``tensor`` (autograd), ``functional`` (ops and losses) and ``nn`` (layers);
the approximation techniques live in ``prune``, ``quant`` and ``bnn``; their costs in
``cost`` and the compiled hot paths in ``kernels``. The applications (the ``tinyapprox``
command, its experiments and benchmarks) live in ``tinyapprox.experiments``, which nothing
in the library imports.
"""
from .tensor import Function, Tensor, is_grad_enabled, no_grad, ones, tensor, zeros

__version__ = "0.1.0"

_SUBMODULES = ("functional", "nn", "optim", "data", "metrics", "models", "train", "prune", "sparse",
               "quant", "bnn", "cost", "kernels", "testing", "conv")


def __getattr__(name):
    """Import submodules on first use so ``import tinyapprox`` stays fast."""
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in ("fit", "evaluate"):
        return getattr(importlib.import_module(".train", __name__), name)
    raise AttributeError(f"module 'tinyapprox' has no attribute {name!r}")


__all__ = ["Tensor", "Function", "tensor", "zeros", "ones", "no_grad", "is_grad_enabled", *_SUBMODULES]
