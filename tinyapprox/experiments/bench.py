"""Benchmarks that print ratios against a baseline measured in the same run.

Nothing here asserts a time: the figures are for reading (and for the JSON file the
``tinyapprox bench ... --json`` command writes). Each timing is the median of repeats
after a warm-up.
"""
from __future__ import annotations

import os

import numpy as np

from .harness import median_time


def bench_autograd(quick: bool = False) -> dict:
    """Microseconds per forward+backward of ((a*b + c).relu()).sum() on 4-element tensors."""
    import tinyapprox as ta

    rng = np.random.default_rng(0)
    a, b, c = (ta.tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True) for _ in range(3))
    na, nb, nc = a.data.copy(), b.data.copy(), c.data.copy()

    def engine():
        a.grad = b.grad = c.grad = None
        ((a * b + c).relu()).sum().backward()

    def plain_numpy_forward():
        np.maximum(na * nb + nc, 0).sum()

    number = 2000 if quick else 20000
    t_engine = median_time(engine, repeat=5, number=number)
    t_numpy = median_time(plain_numpy_forward, repeat=5, number=number)
    result = {"engine_fwd_bwd_us": t_engine * 1e6, "numpy_fwd_only_us": t_numpy * 1e6,
              "ratio_engine_over_numpy": t_engine / t_numpy}
    print("autograd: ((a*b + c).relu()).sum() on 4-element float32 tensors")
    print(f"  tinyapprox forward+backward  {result['engine_fwd_bwd_us']:8.2f} us/iter")
    print(f"  plain NumPy forward only     {result['numpy_fwd_only_us']:8.2f} us/iter")
    print(f"  ratio                        {result['ratio_engine_over_numpy']:8.1f}x")
    return result


def bench_training(quick: bool = False) -> dict:
    """Seconds per epoch (60k images, batch 128) of LeNet-300-100 and LeNet-5 with SGD+momentum.

    The baseline printed next to it is the same epoch's pure BLAS matmul time (the forward
    and backward GEMMs alone), measured in the same run, so the ratio shows the engine's
    overhead over the arithmetic it cannot avoid.
    """
    from .. import data, models, optim, train
    from .. import functional as F

    (x, y), _ = data.load("fashion-mnist")
    results = {}
    for name in ("lenet-300-100", "lenet5"):
        batches = 40 if quick else (None if name == "lenet-300-100" else 120)
        n = len(x) if batches is None else batches * 128
        model = models.get(name, seed=0)
        loader = data.DataLoader(x[:n], y[:n], batch_size=128, shuffle=True, seed=0)
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        hist = train.fit(model, loader, F.cross_entropy, opt, 1, verbose=False)
        per_epoch = hist["seconds"][0] * len(x) / n
        results[name] = {"seconds_per_epoch": per_epoch, "measured_images": n}
        print(f"training {name}: {per_epoch:.2f} s per 60k-image epoch (batch 128, measured on {n} images, "
              f"BLAS threads from the environment: OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')})")
    w = [np.random.default_rng(0).standard_normal(s).astype(np.float32) for s in ((784, 300), (300, 100), (100, 10))]
    xb = np.random.default_rng(1).standard_normal((128, 784)).astype(np.float32)

    def gemms():
        h = xb
        for wi in w:
            g = h @ wi
            _ = g @ wi.T
            _ = h.T @ g
            h = g
    t = median_time(gemms, repeat=5, number=20) * 469
    results["lenet-300-100"]["blas_only_seconds_per_epoch"] = t
    results["lenet-300-100"]["ratio_over_blas_only"] = results["lenet-300-100"]["seconds_per_epoch"] / t
    print(f"  LeNet-300-100 GEMMs alone: {t:.2f} s per epoch -> engine/BLAS-only ratio "
          f"{results['lenet-300-100']['ratio_over_blas_only']:.2f}x")
    return results


def run(what: str = "all", quick: bool = False, threads=None) -> dict:
    """Run the named benchmark group(s) and return their figures."""
    results = {}
    if what in ("autograd", "all"):
        results["autograd"] = bench_autograd(quick)
    if what in ("training", "all"):
        results["training"] = bench_training(quick)
    if what in ("kernels", "all"):
        from . import bench_kernels as kbench
        results["kernels"] = kbench.run(quick=quick, threads=threads or 1)
    return results
