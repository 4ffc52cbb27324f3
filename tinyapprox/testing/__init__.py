"""Testing tools, public so course exercises can use them.

* ``gradcheck``: compare a function's analytic gradients with central differences.
* ``strategies``: hypothesis strategies that find the corners (odd shapes, size-1 and
  empty dimensions, non-contiguous views, values near quantizer steps and near zero), and
  whole problems per topic (convolution, pooling, batch-norm folding, Hogwild races, CSR,
  int8 and sign products).
* ``properties``: the "write the property" exercises and the references they are graded on.
"""
from .gradcheck import GradcheckError, gradcheck, numerical_grad

__all__ = ["gradcheck", "numerical_grad", "GradcheckError", "strategies"]


def __getattr__(name):
    if name == "strategies":  # hypothesis is a test dependency, imported only on use
        import sys

        import tinyapprox.testing.strategies  # noqa: F401  (a plain import: no importlib)
        return sys.modules[f"{__name__}.strategies"]
    raise AttributeError(f"module 'tinyapprox.testing' has no attribute {name!r}")
