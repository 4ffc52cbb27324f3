"""Sweeps over independent runs, on this process, a local process pool, or a Dask cluster.

``sweep(fn, grid, executor=None)`` calls ``fn(**point)`` for each point of ``grid`` and
returns the results in grid order. Every run takes its seed from its point, so the results
do not depend on where or in which order the runs execute: in-process, ``--workers N``
(a process pool, one BLAS thread per worker) or ``--dask ADDRESS`` (a Dask cluster,
through ``distributed.Client(ADDRESS).get_executor(pure=False)``) give the same numbers.

``fn`` must be a module-level function and the points plain values (numbers, strings,
tuples, dicts of arrays) so that they can be sent to another process.
"""
from __future__ import annotations

import contextlib
import itertools
import os
from concurrent.futures import Executor, ProcessPoolExecutor

__all__ = ["sweep", "grid_points", "executor_from_args", "add_executor_options", "make_executor", "ONE_THREAD_ENV"]

#: Environment of pool workers: one BLAS / OpenMP thread each, so N workers use N cores.
ONE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "VECLIB_MAXIMUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}


def grid_points(grid) -> list:
    """The points of ``grid`` as a list of dicts.

    ``grid`` is either a sequence of dicts (used as given, in order) or a dict mapping each
    argument name to a list of values (expanded to the Cartesian product, the last name
    varying fastest).

    Raises:
        TypeError: anything else, or a point that is not a dict.
    """
    if isinstance(grid, dict):
        names = list(grid)
        for name in names:
            if isinstance(grid[name], (str, bytes)) or not hasattr(grid[name], "__iter__"):
                raise TypeError(f"sweep: expected a list of values for {name!r}, got {type(grid[name]).__name__}")
        return [dict(zip(names, values)) for values in itertools.product(*(list(grid[n]) for n in names))]
    points = list(grid)
    for i, point in enumerate(points):
        if not isinstance(point, dict):
            raise TypeError(f"sweep: expected each grid point to be a dict of keyword arguments, "
                            f"got {type(point).__name__} at position {i}")
    return points


def sweep(fn, grid, executor: Executor | None = None) -> list:
    """``[fn(**point) for point in grid]``, possibly run in parallel, in grid order.

    Args:
        fn: a picklable (module-level) function.
        grid: a list of dicts of keyword arguments, or a dict of lists (its Cartesian
            product, see ``grid_points``).
        executor: any ``concurrent.futures.Executor`` (``make_executor`` builds the
            process pool and the Dask one); None runs the points one after the other in
            this process.

    Returns:
        The results, one per point, in grid order. The first exception raised by a run is
        raised again here (after the other submitted runs have finished).
    """
    points = grid_points(grid)
    if executor is None:
        return [fn(**point) for point in points]
    futures = [executor.submit(fn, **point) for point in points]
    return [f.result() for f in futures]


def _one_blas_thread():
    """Pool-worker initializer: limit the BLAS in this worker to one thread (threadpoolctl if present)."""
    os.environ.update(ONE_THREAD_ENV)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


@contextlib.contextmanager
def _environment(values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, val in saved.items():
            if val is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = val


@contextlib.contextmanager
def make_executor(workers: int | None = None, dask: str | None = None):
    """Context manager yielding the executor of a command: None (in-process), a process pool
    of ``workers`` processes, or a Dask cluster's executor at address ``dask``.

    Pool workers start with the ``spawn`` method and ``ONE_THREAD_ENV`` in their
    environment (set in this process while the pool exists, so each worker's NumPy starts
    with one BLAS thread); with threadpoolctl installed their initializer enforces it too.
    Dask workers keep the threads they were started with (``dask worker --nthreads 1``
    for one BLAS thread per task).

    Raises:
        ValueError: both ``workers`` and ``dask``, or ``workers`` < 1.
        ImportError: ``dask`` given without ``distributed`` installed
            (``pip install "tinyapprox[cluster]"``).
    """
    if workers is not None and dask is not None:
        raise ValueError("sweep: expected --workers or --dask, not both")
    if dask is not None:
        try:
            import distributed
        except ImportError as exc:
            raise ImportError("sweep: --dask needs the distributed package; "
                              "pip install \"tinyapprox[cluster]\"") from exc
        client = distributed.Client(dask)
        try:
            yield client.get_executor(pure=False)
        finally:
            client.close()
        return
    if workers is None:
        yield None
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"sweep: expected --workers >= 1, got {workers!r}")
    import multiprocessing as mp

    with _environment(ONE_THREAD_ENV):
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                 initializer=_one_blas_thread) as pool:
            yield pool


def add_executor_options(parser, workers_flag: str = "--workers") -> None:
    """Add ``--workers N`` (or ``workers_flag`` where a command already uses that name) and
    ``--dask ADDRESS``: where the independent runs of the command's sweeps go."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(workers_flag, dest="sweep_workers", type=int, default=None, metavar="N",
                       help="run the independent runs of the sweeps in N local processes (one BLAS thread "
                            "each); default: one after the other in this process")
    group.add_argument("--dask", default=None, metavar="ADDRESS",
                       help="run the sweeps on the Dask cluster whose scheduler is at ADDRESS "
                            "(pip install \"tinyapprox[cluster]\")")


def executor_from_args(args):
    """``make_executor`` for the options added by ``add_executor_options``."""
    return make_executor(getattr(args, "sweep_workers", None), getattr(args, "dask", None))
