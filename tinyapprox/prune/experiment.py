"""``tinyapprox compress``: train, prune to a target compression, report - the main job.

With no options: train LeNet-300-100 on the bundled Fashion-MNIST (or reuse the dense
model cached in ``--out``), prune it iteratively by magnitude to 12x fewer parameters
with retraining between rounds (Han et al. 2015), print the per-layer table and the
accuracy / compression / speedup summary, and compare at the same sparsities:

* one-shot: the dense model pruned directly, no retraining;
* iterative: prune, retrain, repeat (the schedule chosen with ``--schedule``);
* random: the same iterative schedule with random instead of magnitude scores;
* from-init: the final masks of each round on a freshly initialised model, trained from
  scratch for ``--epochs`` (the retrain-the-pruned-architecture control).

Writes into ``--out``: results.json, the pruned model (.npz), report.png,
accuracy_vs_sparsity.png, weight_histograms.png, inference_time.png.

The target: ``--target T`` means T times fewer non-zero parameters (biases count and are
not pruned). The pruning amount reaching it is solved from the parameter counts and, by
default, spread over layers by global magnitude ranking (``--scope global``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run"]

_MODELS = ("lenet-300-100", "lenet5")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tinyapprox compress``."""
    from .criteria import GRANULARITIES

    parser.add_argument("--model", choices=_MODELS, default="lenet-300-100")
    parser.add_argument("--schedule", choices=("iterative", "oneshot", "gradual"), default="iterative",
                        help="iterative prune-retrain rounds; oneshot: prune once then retrain as long; "
                             "gradual: Zhu & Gupta's cubic schedule during retraining")
    parser.add_argument("--granularity", choices=GRANULARITIES, default="element")
    parser.add_argument("--scope", choices=("global", "layer"), default=None,
                        help="default: global for element granularity, layer for the structured ones (group "
                             "averages vary less than single weights, so a global ranking would empty whole "
                             "conv layers before the fc layers lose their small weights)")
    parser.add_argument("--norm", choices=("l1", "l2"), default="l1")
    parser.add_argument("--target", type=float, default=12.0, help="compression: times fewer non-zero parameters")
    parser.add_argument("--rounds", type=int, default=5, help="prune-retrain rounds (iterative)")
    parser.add_argument("--epochs", type=int, default=None, help="dense training epochs (default: the recipe's)")
    parser.add_argument("--retrain-epochs", type=int, default=3, help="retraining epochs per round")
    parser.add_argument("--retrain-lr", type=float, default=None, help="default: the recipe's lr / 10")
    parser.add_argument("--no-compare", action="store_true", help="skip the one-shot/random/from-init comparison")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=20, help="timing repeats (median reported)")
    parser.add_argument("--quant-bits", type=int, nargs="*", default=None,
                        help="weight-sharing widths for the Deep Compression figure (default 8 6 5 4 3 2; "
                             "give none to skip)")
    parser.add_argument("--quick", action="store_true", help="tiny data and epochs: a smoke run in seconds")
    parser.add_argument("--out", default="runs/compress")


def _amount_for_target(model, target: float, params) -> float:
    """Fraction of the prunable weights to zero so that params / non-zero params >= target."""
    total = sum(p.size for p in model.parameters())
    prunable_n = sum(p.size for p in params.values())
    keep = math.floor(total / target) - (total - prunable_n)
    if keep <= 0:
        raise ValueError(f"compress: a {target}x compression needs fewer non-zero parameters than the "
                         f"{total - prunable_n} unpruned ones (biases)")
    return float(min(1.0, max(0.0, 1.0 - keep / prunable_n)))


def run(args) -> int:
    """Run the experiment described in the module docstring; returns 0 on success."""
    from .. import data, models, optim, train
    from .. import functional as F
    from . import (GradualPruning, apply_masks, get_masks, iterative, magnitude, prunable, report,
                   round_sparsities, sparsity, time_inference, to_sparse)
    from .criteria import random as random_prune

    if args.target <= 1:
        raise ValueError(f"compress: expected --target > 1 (times fewer parameters), got {args.target}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    recipe = dict(train.RECIPES[args.model])
    limit = 1500 if args.quick else None
    epochs = args.epochs if args.epochs is not None else (1 if args.quick else recipe["epochs"])
    retrain_epochs = 1 if args.quick and args.retrain_epochs == 3 else args.retrain_epochs
    rounds = min(args.rounds, 2) if args.quick else args.rounds
    repeats = 3 if args.quick else args.repeats
    retrain_lr = args.retrain_lr if args.retrain_lr is not None else recipe["lr"] / 10
    (train_x, train_y), (test_x, test_y) = data.load("fashion-mnist", limit=limit)
    if args.quick:
        test_x, test_y = test_x[:500], test_y[:500]

    def accuracy(model):
        return train.evaluate(model, test_x, test_y)["top1"]

    def retrainer(lr, n_epochs, callbacks=()):
        def retrain(model, k):
            loader = data.DataLoader(train_x, train_y, batch_size=recipe["batch_size"], shuffle=True,
                                     seed=args.seed + 1000 * k)
            opt = optim.SGD(model.parameters(), lr=lr, momentum=recipe["momentum"])
            train.fit(model, loader, F.cross_entropy, opt, n_epochs, callbacks=callbacks, verbose=False)
        return retrain

    def clone(model):
        return models.get(args.model, seed=args.seed).load_state_dict(model.state_dict())

    # ---------------------------------------------------------------- dense model
    print(f"[compress] {args.model} on Fashion-MNIST{' (quick)' if args.quick else ''}: dense training, "
          f"{epochs} epochs (cached in {out})", flush=True)
    dense, _, dense_metrics = train.train_baseline(args.model, epochs=epochs, seed=args.seed, out_dir=out,
                                                   limit=limit, verbose=False)
    dense_acc = accuracy(dense)
    params = prunable(dense)
    if args.granularity == "filter":  # removing output neurons of the classifier would remove classes
        params = dict(list(params.items())[:-1])
    amount = _amount_for_target(dense, args.target, params)
    scope = args.scope or ("global" if args.granularity == "element" else "layer")
    kw = dict(granularity=args.granularity, scope=scope, norm=args.norm, params=list(params))
    print(f"[compress] dense top-1 {dense_acc:.4f}; target {args.target}x -> prune {amount:.2%} of the weights "
          f"({scope} scope, {args.granularity} granularity, {args.schedule} schedule)", flush=True)

    # ---------------------------------------------------------------- the main schedule
    model = clone(dense)
    round_masks = []

    def retrain_and_keep_masks(m, k):
        round_masks.append(get_masks(m))
        retrainer(retrain_lr, retrain_epochs)(m, k)

    if args.schedule == "iterative":
        records = iterative(model, retrain_and_keep_masks, accuracy, amount, rounds=rounds, verbose=True, **kw)
    elif args.schedule == "oneshot":
        magnitude(model, amount=amount, **kw)
        acc_pruned = accuracy(model)
        round_masks.append(get_masks(model))
        retrainer(retrain_lr, retrain_epochs * rounds)(model, 1)
        records = [{"round": 1, "target": amount, "sparsity": sparsity(model), "acc_pruned": acc_pruned,
                    "acc": accuracy(model), "stopped": "target"}]
    else:
        steps_per_epoch = -(-len(train_x) // recipe["batch_size"])
        total = steps_per_epoch * retrain_epochs * rounds
        freq = max(1, total // (10 * rounds))
        end = 1 + freq * max(1, (int(0.75 * total) - 1) // freq)
        cb = GradualPruning(amount, start_step=1, end_step=end, frequency=freq, **kw)
        retrainer(retrain_lr, retrain_epochs * rounds, callbacks=(cb,))(model, 1)
        round_masks.append(get_masks(model))
        records = [{"round": i + 1, "step": s, "target": cb.sparsity_at(s), "sparsity": sp, "acc_pruned": None,
                    "acc": None, "stopped": None} for i, (s, sp) in enumerate(cb.events)]
        records[-1].update(acc=accuracy(model), stopped="target")
    final_acc = accuracy(model)
    rep = report(model, data=test_x, repeats=repeats, batch_size=256)
    print(rep, flush=True)
    csr_acc = accuracy(to_sparse(model))          # the lowered model on the whole test set
    print(f"[compress] the CSR model (prune.to_sparse) reaches top-1 {csr_acc:.4f} on the test set "
          f"({'equal to' if csr_acc == final_acc else 'differs from'} the masked model's {final_acc:.4f})", flush=True)
    train.save_model(model, out / f"pruned_{args.model}.npz")

    # ---------------------------------------------------------------- comparison at the same sparsities
    comparison = None
    dense_retrained_acc = None
    if not args.no_compare:
        # the pruned model was retrained rounds * retrain_epochs more epochs: train the dense
        # model as long at the same rate, so extra training is not credited to pruning
        longer = clone(dense)
        retrainer(retrain_lr, retrain_epochs * rounds)(longer, 999)
        dense_retrained_acc = accuracy(longer)
        print(f"[compress] reference: the dense model retrained {retrain_epochs * rounds} more epochs at lr "
              f"{retrain_lr:g} reaches {dense_retrained_acc:.4f}; AccLoss of pruning against it "
              f"{100 * (dense_retrained_acc - final_acc):+.2f} pp", flush=True)
        levels = round_sparsities(amount, rounds) if args.schedule == "iterative" else [amount]
        comparison = {"sparsity": [], "oneshot": [], "iterative": [], "random": [], "from_init": []}
        print("[compress] comparison: one-shot (no retraining), random (same schedule), from-init "
              f"({epochs} epochs from a fresh initialisation with the round's masks)", flush=True)
        # random pruning reaches the same per-layer sparsities as the magnitude masks
        per_layer = {n: float(1.0 - m.mean()) for n, m in get_masks(model).items() if n in params}
        rand = clone(dense)
        rand_rec = iterative(rand, retrainer(retrain_lr, retrain_epochs), accuracy, per_layer, rounds=len(levels),
                             criterion="random", seed=args.seed, granularity=args.granularity,
                             params=list(per_layer)) \
            if args.schedule == "iterative" else None
        for k, s in enumerate(levels):
            one = clone(dense)
            magnitude(one, amount=s, **kw)
            fresh = apply_masks(models.get(args.model, seed=args.seed + 1), round_masks[k])
            retrainer(recipe["lr"], epochs)(fresh, 100 + k)
            if rand_rec is None:
                r = clone(dense)
                random_prune(r, amount=per_layer, granularity=args.granularity, seed=args.seed)
                retrainer(retrain_lr, retrain_epochs * rounds)(r, 200)
                rand_acc = accuracy(r)
            else:
                rand_acc = rand_rec[k]["acc"]
            it_acc = records[k]["acc"] if args.schedule == "iterative" else final_acc
            row = (sparsity(one), accuracy(one), it_acc, rand_acc, accuracy(fresh))
            for key, v in zip(comparison, row):
                comparison[key].append(float(v))
            print(f"  sparsity {row[0]:.4f}: one-shot {row[1]:.4f}  iterative {row[2]:.4f}  random {row[3]:.4f}  "
                  f"from-init {row[4]:.4f}", flush=True)

    # ---------------------------------------------------------------- inference time against sparsity
    sweep = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98] if not args.quick else [0.0, 0.9]
    xb = np.ascontiguousarray(test_x[:256, None].astype(np.float32) / 255.0)
    timing = {"sparsity": [], "dense_ms": [], "sparse_ms": []}
    for s in sweep:
        m = clone(dense)
        if s > 0:
            magnitude(m, amount=s, **{**kw, "params": None})
        d, sp = time_inference(m, xb, repeats, other=to_sparse(m))
        for key, v in zip(timing, (sparsity(m), 1e3 * d, 1e3 * sp)):
            timing[key].append(float(v))

    # ---------------------------------------------------------------- Deep Compression: + quantization
    bits_list = args.quant_bits if args.quant_bits is not None else ([4] if args.quick else [8, 6, 5, 4, 3, 2])
    deep = _deep_compression_curve(dense, model, bits_list, dense_acc, final_acc, rep.totals,
                                   (train_x, train_y), (test_x, test_y), 0 if args.quick else 1, args.seed)

    # ---------------------------------------------------------------- summary, files
    t = rep.totals
    acc_loss_pp = 100.0 * (dense_acc - final_acc)
    summary = {
        "model": args.model, "schedule": args.schedule, "granularity": args.granularity, "scope": scope,
        "target": args.target, "quick": bool(args.quick), "dense_top1": dense_acc, "pruned_top1": final_acc,
        "csr_top1": csr_acc, "acc_loss_pp": acc_loss_pp, "dense_retrained_top1": dense_retrained_acc, "sparsity": t["sparsity"], "compression_count": t["compression_count"],
        "compression_bytes": t["compression_bytes"], "theoretical_speedup": t["theoretical_speedup"],
        "measured_speedup": t["measured_speedup"], "dense_ms": t.get("dense_ms"), "sparse_ms": t.get("sparse_ms"),
        "epochs": epochs, "retrain_epochs": retrain_epochs, "rounds": rounds, "retrain_lr": retrain_lr,
        "rounds_log": records, "comparison": comparison, "timing": timing, "report": rep.to_dict(),
        "deep_compression": deep,
        "seconds": time.perf_counter() - started,
    }
    print(f"\n[compress] dense top-1 {dense_acc:.4f} -> pruned top-1 {final_acc:.4f} "
          f"(AccLoss {acc_loss_pp:+.2f} pp)\n"
          f"[compress] compression {t['compression_count']:.2f}x by parameter count, "
          f"{t['compression_bytes']:.2f}x by bytes (CSR, int32 indices)\n"
          f"[compress] speedup: theoretical {t['theoretical_speedup']:.2f}x (FLOPs), measured "
          f"{t['measured_speedup']:.2f}x (batch 256, CSR kernel vs dense NumPy, median of {repeats}; "
          f"1-min load average {_load():.1f} on {os.cpu_count()} CPUs)", flush=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    rep.plot(out / "report.png", title=f"{args.model} pruned ({args.schedule})")
    _plots(out, dense, model, comparison, timing, dense_acc, args.model)
    if deep["both"]:
        _plot_deep_compression(out / "deep_compression.png", deep, args.model)
    print(f"[compress] wrote {out}/results.json, report.png, accuracy_vs_sparsity.png, weight_histograms.png, "
          f"inference_time.png{', deep_compression.png' if deep['both'] else ''} ({summary['seconds']:.0f} s)")
    return 0


def _quantized_dense_bytes(model, bits: int) -> int:
    """Bytes of a dense model whose weights are codebook indices of ``bits`` bits.

    Per weight layer: ceil(n * bits / 8) index bytes + a 2^bits-entry float32 codebook;
    every other parameter (biases) stays float32.
    """
    from ..quant.pipeline import weight_layers

    total = sum(p.size for p in model.parameters()) * 4
    for _, layer in weight_layers(model):
        n = layer.weight.size
        total += math.ceil(n * bits / 8) + 4 * 2 ** bits - 4 * n
    return int(total)


def _deep_compression_curve(dense, pruned, bits_list, dense_acc, pruned_acc, totals, train_data, test_data,
                            finetune_epochs, seed) -> dict:
    """Accuracy against compression for pruning only, weight sharing only, and both (Deep Compression).

    Weight sharing is ``quant.deep_compression``'s per-layer k-means codebook of 2^bits
    values, fine-tuned for ``finetune_epochs``. "Quantization only" stores the dense
    indices (``_quantized_dense_bytes``); "both" stores the pruned, shared layer with
    relative indices and Huffman coding, as Han et al. do (every index, codebook and
    bias counted).
    """
    from ..quant import compress as qc

    fp32 = sum(p.size for p in dense.parameters()) * 4
    curve = {"fp32_bytes": int(fp32), "dense": {"compression": 1.0, "top1": dense_acc},
             "pruning_only": {"compression": totals["compression_bytes"], "top1": pruned_acc},
             "quantization_only": [], "both": []}
    for bits in bits_list:
        kw = dict(images=test_data[0], labels=test_data[1], train_data=train_data,
                  finetune_epochs=finetune_epochs, lr=0.001, seed=seed)
        _, q = qc.deep_compression(dense, bits, **kw)
        curve["quantization_only"].append({"bits": bits, "top1": q["top1"],
                                           "compression": fp32 / _quantized_dense_bytes(dense, bits)})
        _, b = qc.deep_compression(pruned, bits, **kw)
        curve["both"].append({"bits": bits, "top1": b["top1"], "compression": b["compression"]["huffman"],
                              "compression_csr": b["compression"]["csr"]})
        print(f"[compress] {bits}-bit weight sharing: quantization only {curve['quantization_only'][-1]['compression']:.1f}x "
              f"top-1 {q['top1']:.4f}; pruning + quantization {b['compression']['huffman']:.1f}x "
              f"(Huffman; {b['compression']['csr']:.1f}x as CSR) top-1 {b['top1']:.4f}", flush=True)
    return curve


def _plot_deep_compression(path, curve, name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([1, curve["pruning_only"]["compression"]], [curve["dense"]["top1"], curve["pruning_only"]["top1"]],
            "s-", label="pruning only (CSR)")
    for key, style, label in (("quantization_only", "o--", "weight sharing only"),
                              ("both", "d-", "pruning + weight sharing (Huffman)")):
        pts = curve[key]
        ax.plot([p["compression"] for p in pts], [p["top1"] for p in pts], style, label=label)
        for p in pts:
            ax.annotate(f"{p['bits']}b", (p["compression"], p["top1"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xscale("log")
    _save_plot(plt, fig, ax, path, "compression ratio (float32 bytes / stored bytes)", "test top-1",
               f"{name}: Deep Compression")


def _load() -> float:
    """The 1-minute load average (NaN where the OS does not report it): read speedups in its light."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _plots(out, dense, pruned, comparison, timing, dense_acc, name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .mask import prunable

    if comparison is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        s = np.array(comparison["sparsity"])
        for key, style in (("oneshot", "o--"), ("iterative", "s-"), ("random", "x:"), ("from_init", "d-.")):
            ax.plot(100 * s, comparison[key], style, label=key.replace("_", "-"))
        ax.axhline(dense_acc, color="gray", lw=0.8, label="dense")
        _save_plot(plt, fig, ax, out / "accuracy_vs_sparsity.png", _SPARSITY_AXIS, "test top-1",
                        f"{name}: accuracy against sparsity")

    layers = list(prunable(dense))
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3))
    axes = np.atleast_1d(axes)
    after = dict(pruned.named_parameters())
    for ax, lname in zip(axes, layers):
        w0 = dict(dense.named_parameters())[lname].data.ravel()
        w1 = after[lname].effective().data.ravel()
        bins = np.linspace(w0.min(), w0.max(), 80)
        ax.hist(w0, bins=bins, alpha=0.5, label="dense")
        ax.hist(w1[w1 != 0], bins=bins, alpha=0.7, label="pruned (non-zero)")
        ax.set_title(lname, fontsize=9)
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle("weight distributions before and after pruning", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "weight_histograms.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    s = 100 * np.array(timing["sparsity"])
    ax.plot(s, timing["dense_ms"], "o-", label="dense (NumPy / BLAS)")
    ax.plot(s, timing["sparse_ms"], "s-", label="CSR kernel")
    _save_plot(plt, fig, ax, out / "inference_time.png", _SPARSITY_AXIS, "ms per batch of 256 (median)",
                    f"{name}: does it get faster?")


_SPARSITY_AXIS = "sparsity of the weights (%)"


def _save_plot(plt, fig, ax, path, xlabel, ylabel, title):
    """Label the axes of a one-panel curve plot, add its legend, save it to ``path`` (PNG) and close it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
