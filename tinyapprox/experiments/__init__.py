"""The applications: the ``tinyapprox`` command, its experiments and benchmarks.

The top floor of the package: it imports the library, and nothing in the library imports
it. ``harness`` holds what every command shares (run directory, quick mode, data, recipes,
timing, JSON, plots); ``compress``, ``quantize``, ``binarize``, ``hogwild`` and ``lowprec``
are the experiments; ``bench``, ``bench_kernels`` and ``bench_bnn`` the benchmarks;
``cli`` the command line; ``course`` releases and grades the exercises; ``sweep(fn, grid,
executor=None)`` runs independent runs in grid order on any ``concurrent.futures.Executor``
(``parallel``). ``bench_inference`` is ``tinyapprox bench inference --model ...``: the
end-to-end speed of every lowered model (``prune.to_sparse``, ``quant.convert``,
``bnn.pack``) in one table.
"""
from .parallel import sweep

__all__ = ["sweep"]
