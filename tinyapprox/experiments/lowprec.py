"""Low-precision training compared: weights stored only on a narrow grid against shadow weights.

``train_lowprec`` trains LeNet-300-100 under each recipe of ``quant.lowprec.VARIANTS`` with
the same seed, data order and learning rate and records test accuracy during training;
``plot_lowprec`` draws the curves (``tinyapprox hogwild --lowprec``).
"""
from __future__ import annotations

from ..quant.lowprec import VARIANTS, apply_variant
from . import harness

__all__ = ["train_lowprec", "plot_lowprec"]


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

    if train is None or test is None:
        (tx, ty), (vx, vy) = data.load("fashion-mnist", limit=limit)
        train = train if train is not None else (tx, ty)
        test = test if test is not None else (vx, vy)
    small = (test[0][:eval_limit], test[1][:eval_limit]) if eval_limit else test
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

def plot_lowprec(curves: dict, path, title: str = "LeNet-300-100, SGD with low-precision weights"):
    """Write a PNG of test accuracy against epochs, one line per variant."""
    styles = {"store": "--", "store-sr": ":", "shadow": "-"}
    fig, ax = harness.pyplot().subplots(figsize=(6.5, 4))
    for name, c in curves.items():
        storage = VARIANTS.get(name, (None, None))[1]
        ax.plot(c["epoch"], c["test_top1"], styles.get(storage, "-"), marker=".", label=name,
                color="black" if name == "fp32" else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 (subset)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    harness.save_plot(fig, path, dpi=110)
