"""``tinyapprox binarize``: train a binarized network and its float twin, pack it, time it.

Steps (all results go to ``--out``):
1. train the float twin, the deterministic BNN and (unless ``--no-stochastic``) the
   stochastic BNN with the paper's recipe (``bnn.train_bnn``), validating every epoch;
2. pack the deterministic BNN (``bnn.pack``), check that its predictions on the test set
   equal the float model's;
3. time a large binary matrix product and one trained hidden layer over the test batch
   (single thread, in a child process) with float32 BLAS, the XNOR kernel and the plain
   int8 baseline, and the whole network over the test set: float sign path vs packed;
4. model size in bytes and energy per inference, both from ``cost`` on the float and the
   packed model;
5. plots: ``fig1_training.png`` (training loss and validation error per epoch) and
   ``fig3_speed.png`` (kernel times); ``results.json``; models as ``.npz``.

Quick mode (``harness``): the quick data and epoch, a small MLP or ConvNet, a 512-wide
product; seconds, for tests and smoke runs.

Phases: ``train_models``, ``accuracy``, ``size_and_energy``, ``speed``, ``plot_training`` /
``plot_speed``; ``run`` calls them in order.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .. import cost, metrics
from ..train import evaluate, predict
from ..bnn.models import bnn_conv, bnn_mlp, float_conv, float_mlp
from ..bnn.packing import pack
from ..bnn.training import RECIPE, train_bnn
from . import bench_bnn as bench
from . import harness

def add_arguments(parser):
    """Options of ``tinyapprox binarize``."""
    parser.add_argument("--model", choices=["bnn-mlp", "bnn-conv"], default="bnn-mlp",
                        help="binarized MLP (3 x 1024 by default) or the small binary ConvNet")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs per model (default 35)")
    harness.add_run_options(parser, "runs/binarize")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", default="1024,1024,1024", help="hidden widths of bnn-mlp (comma separated)")
    parser.add_argument("--lr-start", type=float, default=RECIPE["lr_start"])
    parser.add_argument("--lr-end", type=float, default=RECIPE["lr_end"])
    parser.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    parser.add_argument("--no-stochastic", action="store_true", help="skip the stochastic-binarization model")
    parser.add_argument("--stochastic-lr-scale", type=float, default=RECIPE["stochastic_lr_scale"],
                        help="the stochastic BNN's learning rates are this multiple of --lr-start / --lr-end "
                             "(default 10: its latent weights must move far from 0 to give reliable signs; "
                             "1 trains it with the deterministic recipe, and it learns much more slowly)")
    parser.add_argument("--gemm", default="4096,8192",
                        help="sizes n of the n x n x n product (a size is skipped if predicted to take > 60 s)")
    parser.add_argument("--no-speed", action="store_true", help="skip the timing part")
    parser.add_argument("--resume", action="store_true", help="continue interrupted training from --out checkpoints")


def _builders(args, quick):
    if args.model == "bnn-mlp":
        hidden = (128, 128) if quick else tuple(int(h) for h in args.hidden.split(","))
        return (lambda s: float_mlp(hidden, seed=s), lambda s, st: bnn_mlp(hidden, seed=s, stochastic=st),
                f"MLP 784-{'-'.join(map(str, hidden))}-10")
    ch, fc = ((8, 16), 64) if quick else ((32, 64), 512)
    return (lambda s: float_conv(seed=s, channels=ch, fc=fc),
            lambda s, st: bnn_conv(seed=s, channels=ch, fc=fc, stochastic=st),
            f"ConvNet conv5x5@{ch[0]}-pool-conv5x5@{ch[1]}-pool-fc{fc}-10")


def plot_training(histories, path):
    """Figure 1 of the paper on this run: training loss and validation error per epoch."""
    fig, axes = harness.pyplot().subplots(1, 2, figsize=(10, 4))
    for name, h in histories.items():
        ep = h["epoch"]
        axes[0].plot(ep, h["loss"], marker=".", label=name)
        axes[1].plot(ep, [1 - v for v in h["val_top1"]], marker=".", label=name)
    axes[0].set(xlabel="epoch", ylabel="training loss (squared hinge)", title="training loss")
    axes[1].set(xlabel="epoch", ylabel="validation error", title="validation error (test set)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    harness.save_plot(fig, path)


def plot_speed(rows, path):
    """Figure 3 on this machine: seconds of each product with the three kernels (log scale)."""
    fig, ax = harness.pyplot().subplots(figsize=(9, 4.5))
    kinds = [("int8_s", "int8 baseline (unpacked, NumPy loop)"), ("float32_s", "float32 BLAS"),
             ("xnor_s", "XNOR/popcount kernel")]
    x = np.arange(len(rows))
    for i, (key, label) in enumerate(kinds):
        bars = ax.bar(x + (i - 1) * 0.27, [r.get(key, np.nan) for r in rows], width=0.27, label=label)
        ax.bar_label(bars, labels=[f"{r[key]:.3g}" if key in r else "" for r in rows], fontsize=7)
    ax.set_xticks(x, [r["label"] for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log scale)")
    ax.set_title("binary matrix products on this CPU (products and layer: 1 thread; whole net: all threads)")
    ax.grid(alpha=0.3, axis="y")
    fig.legend(loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    harness.save_plot(fig, path, tight=False)


def train_models(args, quick, out, dataset, epochs):
    """Train the float twin and the BNN(s) with the paper's recipe; returns ``(models, histories)``."""
    (tx, ty), (vx, vy) = dataset
    make_float, make_bnn, _ = _builders(args, quick)
    recipe = dict(lr_start=args.lr_start, lr_end=args.lr_end, batch_size=args.batch_size, seed=args.seed)
    scale = float(getattr(args, "stochastic_lr_scale", RECIPE["stochastic_lr_scale"]))
    stochastic = dict(recipe, lr_start=args.lr_start * scale, lr_end=args.lr_end * scale)
    variants = [("float", lambda: make_float(args.seed), recipe),
                ("BNN deterministic", lambda: make_bnn(args.seed, False), recipe)]
    if not args.no_stochastic:
        variants.append(("BNN stochastic", lambda: make_bnn(args.seed, True), stochastic))
    models, histories = {}, {}
    for name, build, settings in variants:
        tag = name.lower().replace(" ", "_")
        print(f"\n== training {name} (Adam, lr {settings['lr_start']:g} -> {settings['lr_end']:g})")
        model = build()
        hist = train_bnn(model, (tx, ty), epochs, val=(vx, vy), verbose=True,
                         checkpoint=out / f"checkpoint_{tag}.npz" if not quick else None,
                         resume=bool(getattr(args, "resume", False)), **settings)
        models[name] = model
        histories[name] = {k: hist[k] for k in ("epoch", "loss", "top1", "val_top1", "val_loss", "seconds", "lr")}
        np.savez(out / f"{tag}.npz", **model.state_dict())
    return models, histories


def accuracy(models, histories, packed, vx, vy) -> dict:
    """Top-1 of every model and of the packed BNN, and whether the packed predictions equal the
    float sign path on the whole test set."""
    acc = {name: evaluate(m, vx, vy)["top1"] for name, m in models.items()}
    float_pred = predict(models["BNN deterministic"], vx).argmax(axis=1)
    same = bool(np.array_equal(predict(packed, vx).argmax(axis=1), float_pred))
    acc["BNN packed"] = evaluate(packed, vx, vy)["top1"]
    epoch_s = {name: float(np.median(h["seconds"])) for name, h in histories.items()}
    print("\naccuracy on the test set (AccLoss = float top-1 - model top-1, percentage points)")
    print(f"{'model':<22} {'top-1':>7} {'AccLoss':>9} {'s/epoch':>8}")
    for name, a in acc.items():
        loss_pp = 100 * metrics.acc_loss(acc["float"], a)
        s = f"{epoch_s[name]:8.1f}" if name in epoch_s else f"{'':>8}"
        print(f"{name:<22} {a:7.4f} {loss_pp:+9.2f} {s}")
    print(f"packed predictions equal the float sign path: {same}")
    return {"accuracy": acc, "seconds_per_epoch": epoch_s, "packed_equals_float": same}


def size_and_energy(models, packed) -> dict:
    """Model size in bytes and energy per inference, both through ``cost`` (the packed model
    prices its own bits and XNORs)."""
    fbytes, pbytes = cost.model_bytes(models["float"]), cost.model_bytes(packed)
    e_float = cost.inference_energy(models["float"], (1, 1, 28, 28))
    e_bnn = cost.inference_energy(packed, (1, 1, 28, 28))
    print(f"\nmodel size: float {fbytes:,} bytes; BNN packed {pbytes:,} bytes; compression ratio "
          f"{fbytes / pbytes:.1f}x")
    print(f"energy per inference (Horowitz 45 nm): float {e_float.total_pj / 1e6:.2f} uJ, "
          f"BNN {e_bnn.total_pj / 1e6:.2f} uJ ({e_float.total_pj / e_bnn.total_pj:.1f}x less)")
    print(e_bnn.assumptions)
    return {"size": {"float_bytes": fbytes, "bnn_bytes": pbytes, "compression_ratio": fbytes / pbytes},
            "energy_pj": {"float": e_float.total_pj, "bnn": e_bnn.total_pj,
                          "float_breakdown": e_float.breakdown_pj, "bnn_breakdown": e_bnn.breakdown_pj}}


def run(args) -> int:
    """Run the experiment; returns 0 on success (see the module docstring)."""
    quick = harness.is_quick(args)
    out = harness.run_dir(args.out)
    harness.quick_banner("binarize", quick)
    dataset = harness.load_dataset(quick)
    (tx, ty), (vx, vy) = dataset
    epochs = harness.resolve_epochs(args.epochs, 35, quick)
    arch = _builders(args, quick)[2]
    recipe = dict(lr_start=args.lr_start, lr_end=args.lr_end, batch_size=args.batch_size, seed=args.seed)
    print(f"binarize: {args.model} ({arch}) on Fashion-MNIST, {len(tx)} train / {len(vx)} test images, "
          f"{epochs} epochs; recipe: squared hinge, Adam, lr {args.lr_start:g} -> {args.lr_end:g}, "
          f"batch {args.batch_size}")
    results = {"model": args.model, "architecture": arch, "epochs": epochs, "train_images": len(tx),
               "test_images": len(vx), "recipe": recipe}
    models, histories = train_models(args, quick, out, dataset, epochs)
    plot_training(histories, out / "fig1_training.png")
    results["history"] = histories
    packed = pack(models["BNN deterministic"])
    x_test = harness.images_to_float(vx)
    results.update(accuracy(models, histories, packed, vx, vy))
    results.update(size_and_energy(models, packed))
    if not args.no_speed:
        results["speed"] = speed(args, quick, out, packed, models["BNN deterministic"], x_test, vy)
    harness.write_json(out / "results.json", results)
    print(f"\nwrote {out / 'fig1_training.png'}, {out / 'results.json'}" +
          ("" if args.no_speed else f", {out / 'fig3_speed.png'}"))
    return 0


def speed(args, quick, out, packed, bnn_model, x_test, vy) -> dict:
    """Time binary products (single thread, in a child process) and the whole packed network."""
    print("\nspeed (wall clock, median of repeats; the machine is shared, so treat as noisy)")
    rows, res = [], {}
    sizes = [512] if quick else [int(s) for s in args.gemm.split(",") if s]
    prev = None
    for n in sizes:
        if prev is not None:
            predicted = (prev["float32_s"] + prev["xnor_s"]) * (n / prev["K"]) ** 3
            if predicted > 60:
                print(f"  gemm {n}: skipped (predicted {predicted:.0f} s > 60 s)")
                continue
        r = bench.single_thread({"gemm": n, "repeat": 1 if n >= 4096 else 3, "baseline_rows": 32 if n >= 4096 else 64})
        prev = r
        res[f"gemm_{n}"] = r
        rows.append({"label": f"{n}^3 product", **r})
        print(f"  {n}x{n}x{n} (1 thread): int8 baseline {harness.format_seconds(r['int8_s'])}"
              f"{' (extrapolated from ' + str(r['int8_rows_timed']) + ' rows)' if r['int8_extrapolated'] else ''}, "
              f"float32 BLAS {harness.format_seconds(r['float32_s'])}, XNOR {harness.format_seconds(r['xnor_s'])} "
              f"-> XNOR {r['speedup_xnor_vs_float32']:.1f}x faster than float32, "
              f"{r['speedup_xnor_vs_int8']:.0f}x than the baseline")

    # one trained hidden layer over the whole test batch, on its real activations
    hidden = packed.hidden(x_test)
    layer = next((m for m in list(packed)[1:] if hasattr(m, "w_bits") and m.wb.ndim == 2), None)
    if layer is not None and hidden:
        x_bits = hidden[0] > 0
        w_bits = layer.wb.reshape(layer.out_channels, -1) > 0
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "layer.npz"
            np.savez(path, x=x_bits, w=w_bits)
            r = bench.single_thread({"layer": str(path), "repeat": 5, "baseline_rows": 256})
        res["trained_layer"] = r
        rows.append({"label": f"layer {r['K']}x{r['N']}\nbatch {r['M']}", **r})
        print(f"  trained {r['K']}x{r['N']} binary layer over {r['M']} images (1 thread): float32 "
              f"{harness.format_seconds(r['float32_s'])}, XNOR {harness.format_seconds(r['xnor_s'])} "
              f"(+{harness.format_seconds(r['pack_s'])} packing the input), int8 baseline "
              f"{harness.format_seconds(r['int8_s'])} -> XNOR "
              f"{r['speedup_xnor_vs_float32']:.1f}x faster than float32 "
              f"({r['speedup_xnor_with_packing_vs_float32']:.1f}x with packing)")

    # the whole network over the test set: the float sign path vs the packed model
    whole = {}
    for name, m in (("float32", bnn_model), ("xnor", packed)):
        t, pred = bench.result_and_time(lambda: predict(m, x_test, batch_size=len(x_test)).argmax(axis=1), 3)
        whole[name] = {"seconds": t, "top1": metrics.accuracy(pred, vy)}
    res["whole_network"] = whole
    rows.append({"label": f"whole net\n{len(x_test)} images", **{f"{k}_s": v["seconds"] for k, v in whole.items()}})
    print(f"  whole network over {len(x_test)} test images (default threads): " + ", ".join(
        f"{k} {harness.format_seconds(v['seconds'])} (top-1 {v['top1']:.4f})" for k, v in whole.items()) +
        " (tinyapprox bench inference --model bnn-mlp times it against the float twin too)")
    plot_speed(rows, out / "fig3_speed.png")
    return res
