"""Low-precision training compared: weights stored only on a narrow grid against shadow weights.

``train_lowprec`` trains LeNet-300-100 under each recipe of ``quant.lowprec.VARIANTS`` with
the same seed, data order and learning rate and records test accuracy during training;
``plot_lowprec`` draws the curves (``tinyapprox hogwild --lowprec``).
"""
from __future__ import annotations

from ..quant.lowprec import VARIANTS, apply_variant
from . import harness

__all__ = ["train_lowprec", "plot_lowprec", "TENSOR_VARIANTS", "train_lowprec_tensors"]


def _splits(train, test, limit, eval_limit):
    """``(train, test, small)``: the given splits or the run's dataset (``limit`` per split), and
    the first ``eval_limit`` test images the curves are measured on (all when None)."""
    if train is None or test is None:
        (tx, ty), (vx, vy) = harness.load_data(limit=limit)
        train = train if train is not None else (tx, ty)
        test = test if test is not None else (vx, vy)
    small = (test[0][:eval_limit], test[1][:eval_limit]) if eval_limit else test
    return train, test, small


def train_lowprec(variants=("fp32", "fp16-store", "fp16-shadow", "fixed8-store", "fixed8-shadow"), epochs: int = 3,
                  lr: float = 0.05, batch_size: int = 32, seed: int = 0, train=None, test=None, limit=None,
                  evals_per_epoch: int = 4, eval_limit=2000, verbose: bool = False) -> dict:
    """Train LeNet-300-100 with plain SGD under each low-precision recipe, same data order.

    Args:
        variants: keys of ``VARIANTS``.
        epochs, lr, batch_size, seed: the SGD run shared by all variants.
        train, test: ``(images, labels)``; default Fashion-MNIST (``limit`` per split).
        evals_per_epoch: test-accuracy points recorded per epoch (plus one at the start).
        eval_limit: evaluate on the first ``eval_limit`` test images (None: all); the final
            accuracy ``final_top1`` always uses the whole test set.

    Returns:
        ``{variant: {"epoch": [float], "test_top1": [float], "final_top1": float,
        "vanished_fraction": float or None, "seconds": float}}`` where
        ``vanished_fraction`` = vanished / attempted coordinate updates (store variants).
    """
    import time

    from .. import data, models
    from .. import functional as F
    from ..optim import SGD
    from ..train import evaluate, fit

    train, test, small = _splits(train, test, limit, eval_limit)
    out = {}
    for variant in variants:
        model = models.lenet_300_100(seed=seed)
        stored = apply_variant(model, variant, seed)
        loader = data.DataLoader(*train, batch_size=batch_size, shuffle=True, seed=seed)
        every = max(len(loader) // max(evals_per_epoch, 1), 1)
        curve = {"epoch": [0.0], "test_top1": [evaluate(model, *small)["top1"]]}

        class _Probe:
            def on_step(self, m, step):
                if step % every == 0:
                    curve["epoch"].append(step / len(loader))
                    curve["test_top1"].append(evaluate(m, *small)["top1"])

        t0 = time.perf_counter()
        fit(model, loader, F.cross_entropy, SGD(model.parameters(), lr=lr), epochs, callbacks=[_Probe()],
            verbose=False)
        seconds = time.perf_counter() - t0
        attempted = sum(t.attempted for t in stored)
        curve.update(final_top1=evaluate(model, *test)["top1"], seconds=seconds,
                     vanished_fraction=(sum(t.vanished for t in stored) / attempted) if attempted else None)
        out[variant] = curve
        if verbose:
            v = curve["vanished_fraction"]
            print(f"  {variant:<16} test top-1 {curve['final_top1']:.4f}"
                  + (f"   vanished updates {100 * v:5.1f}%" if v is not None else "") + f"   ({seconds:.1f} s)",
                  flush=True)
    return out

def plot_lowprec(curves: dict, path, title: str = "LeNet-300-100, SGD with low-precision weights",
                 eval_images=None):
    """Write a PNG of test accuracy against epochs, one line per variant.

    ``eval_images``: how many test images each point was measured on (the ``eval_limit`` of
    the run), written on the y axis so the curve is not mistaken for the whole-split figure."""
    styles = {"store": "--", "store-sr": ":", "shadow": "-"}
    fig, ax = harness.pyplot().subplots(figsize=(6.5, 4))
    for name, c in curves.items():
        storage = VARIANTS.get(name, (None, None))[1]
        ax.plot(c["epoch"], c["test_top1"], styles.get(storage, "-"), marker=".", label=name,
                color="black" if name == "fp32" else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1" + (f" (first {eval_images:,} test images)" if eval_images else ""))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    harness.save_plot(fig, path, dpi=110)


#: Recipe name -> (tensor format or None, rounding, loss scaling) for ``train_lowprec_tensors``.
TENSOR_VARIANTS = {
    "fp32": (None, None, False),
    "fp16": ("fp16", "nearest", False),
    "fp16-loss-scaled": ("fp16", "nearest", True),
    "fixed8-nearest": ("fixed8", "nearest", False),
    "fixed8-stochastic": ("fixed8", "stochastic", False),
}


def train_lowprec_tensors(variants=tuple(TENSOR_VARIANTS), epochs: int = 3, lr: float = 0.05, batch_size: int = 32,
                          seed: int = 0, train=None, test=None, limit=None, evals_per_epoch: int = 4,
                          eval_limit=2000, verbose: bool = False) -> dict:
    """Train LeNet-300-100 with activations and gradients in a narrow format (fp32 master weights).

    Each variant of ``TENSOR_VARIANTS`` rounds every layer's output forward and the gradient
    into it backward (``quant.lowprec.round_tensors``); the weight gradients are float32
    sums of rounded terms and update float32 weights, so only the tensors between layers
    are narrow. "fp16-loss-scaled" adds dynamic loss scaling. Same seed, data order and
    learning rate for every variant.

    Returns ``{variant: {"epoch", "test_top1", "final_top1", "underflow_fraction",
    "subnormal_fraction", "skipped_steps", "final_loss_scale", "seconds"}}``;
    ``underflow_fraction`` = non-zero values rounded to 0 / values rounded, over all
    activations and gradients; ``subnormal_fraction`` the share left below fp16's normal range.
    """
    import time

    import numpy as np

    from .. import data, models
    from .. import functional as F
    from ..optim import SGD
    from ..quant.lowprec import LossScaler, round_tensors
    from ..train import evaluate

    unknown = [v for v in variants if v not in TENSOR_VARIANTS]
    if unknown:
        raise ValueError(f"train_lowprec_tensors: unknown variants {unknown}; expected some of {sorted(TENSOR_VARIANTS)}")
    train, test, small = _splits(train, test, limit, eval_limit)
    out = {}
    for variant in variants:
        fmt, rounding, scaled = TENSOR_VARIANTS[variant]
        base = models.lenet_300_100(seed=seed)
        model, rounders = (base, []) if fmt is None else round_tensors(base, fmt, rounding, seed=seed)
        scaler = LossScaler(dynamic=True) if scaled else None
        opt = SGD(model.parameters(), lr=lr)
        loader = data.DataLoader(*train, batch_size=batch_size, shuffle=True, seed=seed)
        every = max(len(loader) // max(evals_per_epoch, 1), 1)
        curve = {"epoch": [0.0], "test_top1": [evaluate(base, *small)["top1"]]}
        t0, step = time.perf_counter(), 0
        for _ in range(epochs):
            model.train()
            for x, y in loader:
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                (scaler.scale(loss) if scaler else loss).backward()
                if scaler is None or scaler.unscale(model.parameters()):
                    opt.step()
                if scaler is not None:
                    scaler.update()
                step += 1
                if step % every == 0:
                    curve["epoch"].append(step / len(loader))
                    curve["test_top1"].append(evaluate(model, *small)["top1"])
        seen = sum(r.seen for r in rounders)
        curve.update(final_top1=evaluate(model, *test)["top1"], seconds=time.perf_counter() - t0,
                     underflow_fraction=(sum(r.zeroed for r in rounders) / seen) if seen else None,
                     subnormal_fraction=(sum(r.subnormal for r in rounders) / seen) if seen else None,
                     skipped_steps=scaler.skipped if scaler else 0,
                     final_loss_scale=float(np.float64(scaler.scale_value)) if scaler else None)
        out[variant] = curve
        if verbose:
            u = curve["underflow_fraction"]
            print(f"  {variant:<18} test top-1 {curve['final_top1']:.4f}"
                  + (f"   underflow to 0: {100 * u:5.2f}%, subnormal {100 * curve['subnormal_fraction']:5.2f}%"
                     if u is not None else "")
                  + (f"   skipped steps {curve['skipped_steps']}" if scaler else "")
                  + f"   ({curve['seconds']:.1f} s)", flush=True)
    return out
