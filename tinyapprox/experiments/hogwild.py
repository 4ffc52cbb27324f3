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

__all__ = ["seed_runs", "compare", "format_table", "plot_comparison", "plot_time_accuracy", "add_arguments", "run"]


def seed_runs(seed: int, workers: int, epochs: int, lock: bool, lr: float, batch_size: int, model: str,
              limit=None, quick: bool = False, verbose: bool = True, lr_schedule: str = "linear",
              extra_epochs: int = 0) -> list:
    """Single-process, lock-free, (``lock``) locked and (``extra_epochs``) lock-free with more
    epochs, for one seed, back to back (single first, so load from other programs spreads over
    all of them), all on the same learning-rate schedule; returns their summaries."""
    train, test = harness.load_dataset(quick, limit)
    plan = [(1, False, epochs), (workers, False, epochs)] + ([(workers, True, epochs)] if lock else [])
    if extra_epochs:
        plan.append((workers, False, epochs + extra_epochs))
    out = []
    for w, lk, ep in plan:
        r = train_hogwild(workers=w, epochs=ep, lr=lr, batch_size=batch_size, seed=seed, lock=lk,
                          model=model, train=train, test=test, lr_schedule=lr_schedule)
        summary = r.summary()
        if ep != epochs:
            summary["variant"] = f"{r.variant}+{ep - epochs}ep"
        out.append(summary)
        if verbose:
            print(f"  seed {seed} {summary['variant']:<13} {r.seconds_per_epoch:7.2f} s/epoch-eq  top-1 {r.test_top1:.4f}  "
                  f"stale {r.stale_updates}/{r.updates}  overlapping {r.overlapping_updates}  "
                  f"lost increments {r.lost_increments}  cpu share {r.cpu_share:.2f}", flush=True)
    return out


def compare(workers: int = 2, epochs: int = 3, seeds=(0,), lock: bool = True, lr: float = 0.05,
            batch_size: int = 32, model: str = "lenet-300-100", limit=None, verbose: bool = True,
            quick: bool = False, executor=None, lr_schedule: str = "linear", extra_epochs: int = 0) -> dict:
    """Run lock-free, (locked) and single-process training on the same work, for each seed.

    The seeds are independent runs (``seed_runs``) spread over ``executor`` (None: one after
    the other here). Returns ``{"rows": [summary per variant], "runs": {variant:
    [HogwildResult summaries]}}``; a row holds the median seconds per epoch-equivalent,
    ``speedup`` = single's median / this median (same run, same machine), the mean test
    top-1 over seeds and the summed update counts; ``seconds`` is the median wall time of the
    whole run (what the accuracy-against-time plot uses).

    The learning rate follows ``lr_schedule`` in every variant (default "linear": decaying
    to 0, so the final weights are an average-like end of the run rather than the last few
    noisy steps; with a constant rate the final-iterate accuracy of one seed is a lottery).
    """
    points = [dict(seed=s, workers=workers, epochs=epochs, lock=lock, lr=lr, batch_size=batch_size, model=model,
                   limit=limit, quick=quick, verbose=verbose, lr_schedule=lr_schedule, extra_epochs=extra_epochs)
              for s in seeds]
    runs = {}
    for summaries in sweep(seed_runs, points, executor):
        for summary in summaries:
            runs.setdefault(summary["variant"], []).append(summary)
    base = float(np.median([s["seconds_per_epoch"] for s in runs["single"]]))
    rows = []
    for variant, summaries in runs.items():
        sec = float(np.median([s["seconds_per_epoch"] for s in summaries]))
        rows.append({"variant": variant, "workers": summaries[0]["workers"], "seconds_per_epoch": sec,
                     "seconds": float(np.median([s["seconds"] for s in summaries])),
                     "epochs": summaries[0]["epochs"],
                     "speedup": base / sec, "test_top1": float(np.mean([s["test_top1"] for s in summaries])),
                     "test_top1_per_seed": [s["test_top1"] for s in summaries],
                     **{k: int(sum(s[k] for s in summaries)) for k in
                        ("updates", "stale_updates", "overlapping_updates", "lost_increments")},
                     "mean_staleness": float(np.mean([s["mean_staleness"] for s in summaries])),
                     "cpu_share": float(np.mean([s["cpu_share"] for s in summaries]))})
    return {"rows": rows, "runs": runs, "config": {"workers": workers, "epochs": epochs, "seeds": list(seeds),
                                                   "lr": lr, "batch_size": batch_size, "model": model,
                                                   "limit": limit, "lr_schedule": lr_schedule,
                                                   "extra_epochs": extra_epochs}}


def format_table(rows) -> str:
    """The comparison as a text table (one line per variant)."""
    head = (f"{'variant':<14}{'workers':>8}{'s/epoch-eq':>12}{'speedup':>9}{'test top-1':>12}{'updates':>9}"
            f"{'stale':>8}{'mean tau':>10}{'overlapping':>13}{'lost incr.':>12}{'cpu share':>11}")
    lines = [head]
    for r in rows:
        lines.append(f"{r['variant']:<14}{r['workers']:>8}{r['seconds_per_epoch']:>12.2f}{r['speedup']:>8.2f}x"
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
    ax1.bar(x, [r["seconds_per_epoch"] for r in rows], color=["#888", "#c44", "#48c", "#c84"][:len(rows)])
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


def plot_time_accuracy(result: dict, path):
    """Write a PNG: mean test top-1 against wall-clock seconds of the whole run, one point per variant
    (Hogwild!'s claim: lock-free SGD given a few more epochs still beats full locking on time)."""
    plt = harness.pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for r in result["rows"]:
        ax.plot(r["seconds"], r["test_top1"], "o", ms=8, label=f"{r['variant']} ({r['epochs']} epochs)")
    ax.set_xlabel("wall-clock seconds of the run (median over seeds)")
    ax.set_ylabel("test top-1 (mean over seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    cfg = result.get("config", {})
    ax.set_title(f"accuracy against time, lr schedule {cfg.get('lr_schedule')}", fontsize=10)
    harness.save_plot(fig, path, dpi=110)


def add_arguments(parser):
    """Options of ``tinyapprox hogwild``."""
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the parallel variants")
    parser.add_argument("--epochs", type=int, default=None, help="epoch-equivalents (default 3)")
    parser.add_argument("--lock", action="store_true", help="also run the locked variant (a lock around each update)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to average over (default 0)")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--lr-schedule", default="linear", choices=["linear", "constant"],
                        help="every variant's learning rate: decaying linearly to 0 (default; stable final "
                             "accuracy) or constant (the final iterate of one seed is a lottery)")
    parser.add_argument("--extra-epochs", type=int, default=1,
                        help="also run lock-free with this many more epochs (0: not), for the accuracy-against-"
                             "time plot")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="lenet-300-100", choices=["lenet-300-100", "lenet5", "small-convnet"])
    parser.add_argument("--limit", type=int, default=None, help="use only the first LIMIT images of each split")
    parser.add_argument("--lowprec", action="store_true",
                        help="run the low-precision training experiments instead: weights stored in fp16 / 8-bit "
                             "fixed point, then activations and gradients rounded (with loss scaling)")
    harness.add_run_options(parser, "runs/hogwild")
    add_executor_options(parser, workers_flag="--seed-workers",
                         what="the seeds (side by side, so their timings mean nothing)")


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
                         executor=executor, lr_schedule=args.lr_schedule, extra_epochs=args.extra_epochs)
    print(format_table(result["rows"]))
    print("stale: updates computed from weights another worker changed meanwhile; overlapping: updates written "
          "while another worker was writing; lost incr.: lock-free increments of a shared counter overwritten "
          "(see tinyapprox.optim.hogwild); cpu share: CPU time / wall time of the workers (1 = a core each)")
    plot_comparison(result, out / "hogwild.png")
    plot_time_accuracy(result, out / "hogwild_time_accuracy.png")
    harness.write_json(out / "hogwild.json", result)
    print(f"wrote {out / 'hogwild.png'}, {out / 'hogwild_time_accuracy.png'}, {out / 'hogwild.json'}")
    return 0
