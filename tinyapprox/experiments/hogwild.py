"""``tinyapprox hogwild``: Hogwild! against single-process SGD, and low-precision training.

``compare`` runs ``optim.hogwild.train_hogwild`` lock-free, (locked) and single-process
on the same work for each seed (``seed_runs``; the seeds are independent and go through
``experiments.sweep``: ``--seed-workers N`` or ``--dask ADDRESS`` run them side by side,
with the same accuracies and counts but, sharing the cores, meaningless times);
``format_table`` and ``plot_comparison`` show the result. ``--lowprec`` runs
``experiments.lowprec.train_lowprec`` instead.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from ..optim.hogwild import train_hogwild
from . import harness
from .parallel import add_executor_options, executor_from_args, sweep

__all__ = ["seed_runs", "compare", "format_table", "plot_comparison", "add_arguments", "run"]


def seed_runs(seed: int, workers: int, epochs: int, lock: bool, lr: float, batch_size: int, model: str,
              limit=None, quick: bool = False, verbose: bool = True) -> list:
    """Single-process, lock-free and (``lock``) locked training of one seed, back to back (single
    first, so load from other programs spreads over all of them); returns their summaries."""
    train, test = harness.load_dataset(quick, limit)
    plan = [(1, False)] + [(workers, False)] + ([(workers, True)] if lock else [])
    out = []
    for w, lk in plan:
        r = train_hogwild(workers=w, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, lock=lk,
                          model=model, train=train, test=test)
        out.append(r.summary())
        if verbose:
            print(f"  seed {seed} {r.variant:<9} {r.seconds_per_epoch:7.2f} s/epoch-eq  top-1 {r.test_top1:.4f}  "
                  f"stale {r.stale_updates}/{r.updates}  overlapping {r.overlapping_updates}  "
                  f"lost increments {r.lost_increments}  cpu share {r.cpu_share:.2f}", flush=True)
    return out


def compare(workers: int = 2, epochs: int = 3, seeds=(0,), lock: bool = True, lr: float = 0.05,
            batch_size: int = 32, model: str = "lenet-300-100", limit=None, verbose: bool = True,
            quick: bool = False, executor=None) -> dict:
    """Run lock-free, (locked) and single-process training on the same work, for each seed.

    The seeds are independent runs (``seed_runs``) spread over ``executor`` (None: one after
    the other here). Returns ``{"rows": [summary per variant], "runs": {variant:
    [HogwildResult summaries]}}``; a row holds the median seconds per epoch-equivalent,
    ``speedup`` = single's median / this median (same run, same machine), the mean test
    top-1 over seeds and the summed update counts.
    """
    points = [dict(seed=s, workers=workers, epochs=epochs, lock=lock, lr=lr, batch_size=batch_size, model=model,
                   limit=limit, quick=quick, verbose=verbose) for s in seeds]
    runs = {}
    for summaries in sweep(seed_runs, points, executor):
        for summary in summaries:
            runs.setdefault(summary["variant"], []).append(summary)
    base = float(np.median([s["seconds_per_epoch"] for s in runs["single"]]))
    rows = []
    for variant, summaries in runs.items():
        sec = float(np.median([s["seconds_per_epoch"] for s in summaries]))
        rows.append({"variant": variant, "workers": summaries[0]["workers"], "seconds_per_epoch": sec,
                     "speedup": base / sec, "test_top1": float(np.mean([s["test_top1"] for s in summaries])),
                     "test_top1_per_seed": [s["test_top1"] for s in summaries],
                     **{k: int(sum(s[k] for s in summaries)) for k in
                        ("updates", "stale_updates", "overlapping_updates", "lost_increments")},
                     "mean_staleness": float(np.mean([s["mean_staleness"] for s in summaries])),
                     "cpu_share": float(np.mean([s["cpu_share"] for s in summaries]))})
    return {"rows": rows, "runs": runs, "config": {"workers": workers, "epochs": epochs, "seeds": list(seeds),
                                                   "lr": lr, "batch_size": batch_size, "model": model,
                                                   "limit": limit}}


def format_table(rows) -> str:
    """The comparison as a text table (one line per variant)."""
    head = (f"{'variant':<10}{'workers':>8}{'s/epoch-eq':>12}{'speedup':>9}{'test top-1':>12}{'updates':>9}"
            f"{'stale':>8}{'mean tau':>10}{'overlapping':>13}{'lost incr.':>12}{'cpu share':>11}")
    lines = [head]
    for r in rows:
        lines.append(f"{r['variant']:<10}{r['workers']:>8}{r['seconds_per_epoch']:>12.2f}{r['speedup']:>8.2f}x"
                     f"{r['test_top1']:>12.4f}{r['updates']:>9}{r['stale_updates']:>8}{r['mean_staleness']:>10.2f}"
                     f"{r['overlapping_updates']:>13}{r['lost_increments']:>12}{r['cpu_share']:>11.2f}")
    return "\n".join(lines)


def plot_comparison(result: dict, path, title=None):
    """Write a PNG: seconds per epoch-equivalent and test top-1 (one dot per seed) per variant."""
    plt = harness.pyplot()
    rows = result["rows"]
    names = [r["variant"] for r in rows]
    x = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax1.bar(x, [r["seconds_per_epoch"] for r in rows], color=["#888", "#c44", "#48c"][:len(rows)])
    for i, r in enumerate(rows):
        ax1.text(i, r["seconds_per_epoch"], f"{r['speedup']:.2f}x", ha="center", va="bottom", fontsize=9)
    ax1.set_xticks(x, [f"{n}\n({r['workers']} proc)" for n, r in zip(names, rows)])
    ax1.set_ylabel("seconds per epoch-equivalent")
    for i, r in enumerate(rows):
        ys = r["test_top1_per_seed"]
        ax2.plot([i] * len(ys), ys, "o", color="#444")
        ax2.text(i, max(ys), f"stale {r['stale_updates']}\nlost {r['lost_increments']}", ha="center", va="bottom",
                 fontsize=7)
    ax2.set_xticks(x, names)
    ax2.set_xlim(-0.5, len(rows) - 0.5)
    ax2.margins(y=0.3)
    ax2.set_ylabel("test top-1 (one dot per seed)")
    cfg = result.get("config", {})
    fig.suptitle(title or f"Hogwild! SGD, {cfg.get('model', '')}, batch {cfg.get('batch_size')}, lr {cfg.get('lr')}, "
                 f"{cfg.get('epochs')} epochs", fontsize=10)
    harness.save_plot(fig, path, dpi=110)


def add_arguments(parser):
    """Options of ``tinyapprox hogwild``."""
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the parallel variants")
    parser.add_argument("--epochs", type=int, default=None, help="epoch-equivalents (default 3)")
    parser.add_argument("--lock", action="store_true", help="also run the locked variant (a lock around each update)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to average over (default 0)")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="lenet-300-100", choices=["lenet-300-100", "lenet5", "small-convnet"])
    parser.add_argument("--limit", type=int, default=None, help="use only the first LIMIT images of each split")
    parser.add_argument("--lowprec", action="store_true",
                        help="run the low-precision training experiments instead: weights stored in fp16 / 8-bit "
                             "fixed point, then activations and gradients rounded (with loss scaling)")
    harness.add_run_options(parser, "runs/hogwild")
    add_executor_options(parser, workers_flag="--seed-workers")


def run_lowprec(args, quick, epochs, seed, out) -> int:
    """``--lowprec``: the low-precision training curves (weights, then activations and gradients),
    their plots and JSON."""
    from ..quant.lowprec import VARIANTS
    from .lowprec import TENSOR_VARIANTS, plot_lowprec, train_lowprec, train_lowprec_tensors

    train, test = harness.load_dataset(quick, args.limit)
    print(f"low-precision training: LeNet-300-100, SGD lr {args.lr}, batch {args.batch_size}, {epochs} epochs, "
          f"seed {seed}, {len(train[0])} / {len(test[0])} images")
    curves = train_lowprec(tuple(VARIANTS), epochs=epochs, lr=args.lr, batch_size=args.batch_size, seed=seed,
                           train=train, test=test, verbose=True)
    plot_lowprec(curves, out / "lowprec.png")
    harness.write_json(out / "lowprec.json", curves)
    print(f"wrote {out / 'lowprec.png'}, {out / 'lowprec.json'}")
    print("activations and gradients in low precision (float32 master weights):")
    tensors = train_lowprec_tensors(tuple(TENSOR_VARIANTS), epochs=epochs, lr=args.lr, batch_size=args.batch_size,
                                    seed=seed, train=train, test=test, verbose=True)
    plot_lowprec(tensors, out / "lowprec_tensors.png",
                 title="LeNet-300-100, SGD with low-precision activations and gradients")
    harness.write_json(out / "lowprec_tensors.json", tensors)
    print(f"wrote {out / 'lowprec_tensors.png'}, {out / 'lowprec_tensors.json'}")
    return 0


def run(args) -> int:
    """``tinyapprox hogwild``: print the comparison (or the low-precision curves) and write a plot and JSON."""
    quick = harness.is_quick(args)
    out = harness.run_dir(args.out)
    harness.quick_banner("hogwild", quick)
    epochs = harness.resolve_epochs(args.epochs, 3, quick)
    seeds = args.seeds or [0]
    if args.lowprec:
        return run_lowprec(args, quick, epochs, seeds[0], out)
    if args.workers < 2:
        print("tinyapprox hogwild: --workers must be >= 2 (one worker is the single-process baseline)", file=sys.stderr)
        return 2
    print(f"Hogwild! SGD: {args.model}, batch {args.batch_size}, lr {args.lr}, {epochs} epoch-equivalents, "
          f"{args.workers} workers (one BLAS thread each), seeds {seeds}"
          f"{f', {args.limit} images' if args.limit else ''}; {os.cpu_count()} CPUs")
    with executor_from_args(args) as executor:
        result = compare(workers=args.workers, epochs=epochs, seeds=seeds, lock=args.lock, lr=args.lr,
                         batch_size=args.batch_size, model=args.model, limit=args.limit, quick=quick,
                         executor=executor)
    print(format_table(result["rows"]))
    print("stale: updates computed from weights another worker changed meanwhile; overlapping: updates written "
          "while another worker was writing; lost incr.: lock-free increments of a shared counter overwritten "
          "(see tinyapprox.optim.hogwild); cpu share: CPU time / wall time of the workers (1 = a core each)")
    plot_comparison(result, out / "hogwild.png")
    harness.write_json(out / "hogwild.json", result)
    print(f"wrote {out / 'hogwild.png'}, {out / 'hogwild.json'}")
    return 0
