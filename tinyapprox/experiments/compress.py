"""``tinyapprox compress``: train, prune to a target compression, report - the main job.

With no options: train LeNet-300-100 on the bundled Fashion-MNIST (or reuse the dense
model cached in ``--out``), prune it iteratively by magnitude to 12x fewer parameters
with retraining between rounds (Han et al. 2015), and print the per-layer table and the
accuracy / compression / speedup summary as soon as the pruned model exists. Then compare
at the same sparsities:

* one-shot: the dense model pruned directly, no retraining;
* iterative: prune, retrain, repeat (the schedule chosen with ``--schedule``);
* random: the same iterative schedule with random instead of magnitude scores;
* from-init: the final masks of each round on a freshly initialised model, trained from
  scratch for ``--epochs`` (the retrain-the-pruned-architecture control);

time dense and CSR inference against sparsity, and draw the Deep Compression figure
(k-means weight sharing at ``--quant-bits``, alone and after pruning).

The comparison arms and the Deep Compression widths are independent runs with their
own seeds: ``--workers N`` or ``--dask ADDRESS`` spread them (``experiments.sweep``) with
the same results. Writes into ``--out``: results.json, the pruned model (.npz),
report.png, accuracy_vs_sparsity.png, weight_histograms.png, inference_time.png,
deep_compression.png.

The target: ``--target T`` means T times fewer non-zero parameters (biases count and are
not pruned). The pruning amount reaching it is solved from the parameter counts and, by
default, spread over layers by global magnitude ranking (``--scope global``).

Phases: ``train_dense``, ``compress`` (then ``print_summary``), ``compare``,
``time_inference_curve``, ``deep_compression_curve``, ``plot``; ``run`` calls them in order.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

from .. import cost, data, models, optim, train
from .. import functional as F
from .. import prune
from ..prune.criteria import GRANULARITIES
from ..prune.criteria import random as random_prune
from ..quant import compress as qc
from . import harness
from .parallel import add_executor_options, executor_from_args, sweep

__all__ = ["add_arguments", "run", "Plan", "train_dense", "compress", "print_summary", "compare",
           "time_inference_curve", "deep_compression_curve", "plot"]

_MODELS = ("lenet-300-100", "lenet5")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tinyapprox compress``."""
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
    parser.add_argument("--rounds", type=int, default=5, help="prune-retrain rounds (iterative; quick: at most 2)")
    parser.add_argument("--epochs", type=int, default=None, help="dense training epochs (default: the recipe's)")
    parser.add_argument("--retrain-epochs", type=int, default=None, help="retraining epochs per round (default 3)")
    parser.add_argument("--retrain-lr", type=float, default=None, help="default: the recipe's lr / 10")
    parser.add_argument("--no-compare", action="store_true", help="skip the one-shot/random/from-init comparison")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=20, help="timing repeats (median reported; quick: 3)")
    parser.add_argument("--quant-bits", type=int, nargs="*", default=None,
                        help="weight-sharing widths for the Deep Compression figure (default 8 6 5 4 3 2; "
                             "quick: 4; give none to skip)")
    harness.add_run_options(parser, "runs/compress")
    add_executor_options(parser)


class Plan:
    """The settings of one run, resolved once from the options (quick mode applied)."""

    def __init__(self, args):
        if args.target <= 1:
            raise ValueError(f"compress: expected --target > 1 (times fewer parameters), got {args.target}")
        self.quick = harness.is_quick(args)
        self.model, self.seed, self.schedule = args.model, args.seed, args.schedule
        self.granularity, self.norm, self.target = args.granularity, args.norm, args.target
        self.scope = args.scope or ("global" if args.granularity == "element" else "layer")
        self.recipe = dict(harness.RECIPES[args.model])
        self.epochs = harness.resolve_epochs(args.epochs, self.recipe["epochs"], self.quick)
        self.retrain_epochs = harness.resolve_epochs(args.retrain_epochs, 3, self.quick)
        self.rounds = min(args.rounds, 2) if self.quick else args.rounds
        self.repeats = 3 if self.quick else args.repeats
        self.retrain_lr = args.retrain_lr if args.retrain_lr is not None else self.recipe["lr"] / 10
        self.bits = args.quant_bits if args.quant_bits is not None else ([4] if self.quick else [8, 6, 5, 4, 3, 2])
        self.deep_finetune_epochs = 0 if self.quick else 1
        self.compare = not args.no_compare

    def dataset(self):
        return harness.load_dataset(self.quick)

    def fresh(self, state=None, seed=None):
        """A new model of this run (seed ``seed``, default the run's), loaded with ``state`` if given."""
        m = models.get(self.model, seed=self.seed if seed is None else seed)
        return m.load_state_dict(state) if state is not None else m


# ------------------------------------------------------------------ shared steps
def _accuracy(model, test) -> float:
    return train.evaluate(model, *test)["top1"]


def _retrain(model, train_data, recipe, lr, epochs, seed, callbacks=()):
    """SGD (the recipe's momentum and batch size) at ``lr`` for ``epochs``, data order from ``seed``."""
    loader = data.DataLoader(*train_data, batch_size=recipe["batch_size"], shuffle=True, seed=seed)
    opt = optim.SGD(model.parameters(), lr=lr, momentum=recipe["momentum"])
    train.fit(model, loader, F.cross_entropy, opt, epochs, callbacks=callbacks, verbose=False)


def _amount_for_target(model, target: float, params) -> float:
    """Fraction of the prunable weights to zero so that params / non-zero params >= target."""
    total = sum(p.size for p in model.parameters())
    prunable_n = sum(p.size for p in params.values())
    keep = math.floor(total / target) - (total - prunable_n)
    if keep <= 0:
        raise ValueError(f"compress: a {target}x compression needs fewer non-zero parameters than the "
                         f"{total - prunable_n} unpruned ones (biases)")
    return float(min(1.0, max(0.0, 1.0 - keep / prunable_n)))


# ------------------------------------------------------------------ phase 1: the dense model
def train_dense(plan: Plan, dataset, out):
    """Train (or load from the cache in ``out``) the dense model; returns ``(model, top-1)``."""
    print(f"[compress] {plan.model} on Fashion-MNIST: dense training, {plan.epochs} epochs (cached in {out})",
          flush=True)
    dense, _, _ = harness.train_baseline(plan.model, epochs=plan.epochs, seed=plan.seed, out_dir=out,
                                         verbose=False, dataset=dataset)
    return dense, _accuracy(dense, dataset[1])


# ------------------------------------------------------------------ phase 2: pruning
def compress(plan: Plan, dense, dataset) -> dict:
    """Prune a copy of ``dense`` to the target with the plan's schedule.

    Returns ``{"model", "records" (per round), "round_masks", "amount", "params" (names of
    the pruned parameters), "kw" (the pruning options), "top1", "report" (``prune.report``)}``.
    """
    train_data, test = dataset
    params = prune.prunable(dense)
    if plan.granularity == "filter":  # removing output neurons of the classifier would remove classes
        params = dict(list(params.items())[:-1])
    amount = _amount_for_target(dense, plan.target, params)
    kw = dict(granularity=plan.granularity, scope=plan.scope, norm=plan.norm, params=list(params))
    print(f"[compress] dense top-1 {_accuracy(dense, test):.4f}; target {plan.target}x -> prune {amount:.2%} of "
          f"the weights ({plan.scope} scope, {plan.granularity} granularity, {plan.schedule} schedule)", flush=True)
    model = plan.fresh(dense.state_dict())
    round_masks = []
    lr, n = plan.retrain_lr, plan.retrain_epochs

    def retrain_and_keep_masks(m, k):
        round_masks.append(prune.get_masks(m))
        _retrain(m, train_data, plan.recipe, lr, n, plan.seed + 1000 * k)

    if plan.schedule == "iterative":
        records = prune.iterative(model, retrain_and_keep_masks, lambda m: _accuracy(m, test), amount,
                                  rounds=plan.rounds, verbose=True, **kw)
    elif plan.schedule == "oneshot":
        prune.magnitude(model, amount=amount, **kw)
        acc_pruned = _accuracy(model, test)
        round_masks.append(prune.get_masks(model))
        _retrain(model, train_data, plan.recipe, lr, n * plan.rounds, plan.seed + 1000)
        records = [{"round": 1, "target": amount, "sparsity": prune.sparsity(model), "acc_pruned": acc_pruned,
                    "acc": _accuracy(model, test), "stopped": "target"}]
    else:
        steps_per_epoch = -(-len(train_data[0]) // plan.recipe["batch_size"])
        total = steps_per_epoch * n * plan.rounds
        freq = max(1, total // (10 * plan.rounds))
        end = 1 + freq * max(1, (int(0.75 * total) - 1) // freq)
        cb = prune.GradualPruning(amount, start_step=1, end_step=end, frequency=freq, **kw)
        _retrain(model, train_data, plan.recipe, lr, n * plan.rounds, plan.seed + 1000, callbacks=(cb,))
        round_masks.append(prune.get_masks(model))
        records = [{"round": i + 1, "step": s, "target": cb.sparsity_at(s), "sparsity": sp, "acc_pruned": None,
                    "acc": None, "stopped": None} for i, (s, sp) in enumerate(cb.events)]
        records[-1].update(acc=_accuracy(model, test), stopped="target")
    rep = prune.report(model, data=test[0], repeats=plan.repeats, batch_size=256)
    return {"model": model, "records": records, "round_masks": round_masks, "amount": amount,
            "params": list(params), "kw": kw, "top1": _accuracy(model, test), "report": rep,
            "csr_top1": _accuracy(prune.to_sparse(model), test)}     # the lowered model, whole test set


def print_summary(plan: Plan, dense_acc: float, pruned: dict) -> None:
    """The per-layer table and the accuracy / compression / speedup summary of the pruned model."""
    t = pruned["report"].totals
    print(pruned["report"], flush=True)
    print(f"\n[compress] dense top-1 {dense_acc:.4f} -> pruned top-1 {pruned['top1']:.4f} "
          f"(AccLoss {100.0 * (dense_acc - pruned['top1']):+.2f} pp); the CSR model (prune.to_sparse) "
          f"{pruned['csr_top1']:.4f} ({'equal' if pruned['csr_top1'] == pruned['top1'] else 'not equal'})\n"
          f"[compress] compression {t['compression_count']:.2f}x by parameter count, "
          f"{t['compression_bytes']:.2f}x by bytes (CSR, int32 indices)\n"
          f"[compress] speedup: theoretical {t['theoretical_speedup']:.2f}x (FLOPs), measured "
          f"{t['measured_speedup']:.2f}x (batch 256, CSR kernel vs dense NumPy, median of {plan.repeats}; "
          f"1-min load average {harness.load_average():.1f} on {os.cpu_count()} CPUs)", flush=True)


# ------------------------------------------------------------------ phase 3: the comparison arms
def comparison_arm(arm: str, plan_dict: dict, dense_state: dict, k: int = 0, sparsity=None, masks=None,
                   per_layer=None, levels: int = 1):
    """One independent run of the comparison (a module-level function, so any executor can run it).

    ``arm``: "longer" (the dense model retrained as long as the pruned one, returns its
    top-1), "oneshot" (pruned to ``sparsity`` without retraining, returns (sparsity, top-1)),
    "from_init" (``masks`` on a fresh initialisation trained from scratch, returns top-1),
    "random" (random pruning to the per-layer sparsities ``per_layer``: under the iterative
    schedule ``levels`` rounds, returning one top-1 per round; otherwise once, returning a
    one-element list). Every run seeds itself from the plan, so it gives the same result
    wherever it runs.
    """
    plan = _plan_from_dict(plan_dict)
    train_data, test = plan.dataset()
    lr, n, seed = plan.retrain_lr, plan.retrain_epochs, plan.seed
    if arm == "longer":
        m = plan.fresh(dense_state)
        _retrain(m, train_data, plan.recipe, lr, n * plan.rounds, seed + 1000 * 999)
        return _accuracy(m, test)
    if arm == "oneshot":
        m = plan.fresh(dense_state)
        prune.magnitude(m, amount=sparsity, **plan_dict["kw"])
        return prune.sparsity(m), _accuracy(m, test)
    if arm == "from_init":
        m = prune.apply_masks(plan.fresh(seed=seed + 1), masks)
        _retrain(m, train_data, plan.recipe, plan.recipe["lr"], plan.epochs, seed + 1000 * (100 + k))
        return _accuracy(m, test)
    if arm == "random":
        m = plan.fresh(dense_state)
        if plan.schedule == "iterative":
            rec = prune.iterative(m, lambda mm, r: _retrain(mm, train_data, plan.recipe, lr, n, seed + 1000 * r),
                                  lambda mm: _accuracy(mm, test), per_layer, rounds=levels, criterion="random",
                                  seed=seed, granularity=plan.granularity, params=list(per_layer))
            return [r["acc"] for r in rec]
        random_prune(m, amount=per_layer, granularity=plan.granularity, seed=seed)
        _retrain(m, train_data, plan.recipe, lr, n * plan.rounds, seed + 1000 * 200)
        return [_accuracy(m, test)]
    raise ValueError(f"compress: unknown comparison arm {arm!r}")


def _plan_dict(plan: Plan, kw) -> dict:
    return {**{k: v for k, v in vars(plan).items()}, "kw": kw}


def _plan_from_dict(d) -> Plan:
    plan = Plan.__new__(Plan)
    vars(plan).update({k: v for k, v in d.items() if k != "kw"})
    return plan


def compare(plan: Plan, dense, pruned: dict, executor=None) -> dict:
    """One-shot, iterative, random and from-init top-1 at the sparsities of the schedule's rounds,
    and the dense model retrained as long as the pruned one (its fair reference).

    Returns ``{"dense_retrained_top1", "sparsity", "oneshot", "iterative", "random", "from_init"}``.
    """
    state, kw = dense.state_dict(), pruned["kw"]
    pd = _plan_dict(plan, kw)
    levels = prune.round_sparsities(pruned["amount"], plan.rounds) if plan.schedule == "iterative" \
        else [pruned["amount"]]
    # random pruning reaches the same per-layer sparsities as the magnitude masks
    per_layer = {n: float(1.0 - m.mean()) for n, m in prune.get_masks(pruned["model"]).items()
                 if n in pruned["params"]}
    points = [{"arm": "longer", "plan_dict": pd, "dense_state": state},
              {"arm": "random", "plan_dict": pd, "dense_state": state, "per_layer": per_layer,
               "levels": len(levels)}]
    points += [{"arm": "oneshot", "plan_dict": pd, "dense_state": state, "k": k, "sparsity": s}
               for k, s in enumerate(levels)]
    points += [{"arm": "from_init", "plan_dict": pd, "dense_state": state, "k": k,
                "masks": pruned["round_masks"][k]} for k in range(len(levels))]
    print("[compress] comparison: one-shot (no retraining), random (same schedule), from-init "
          f"({plan.epochs} epochs from a fresh initialisation with the round's masks); "
          f"{len(points)} independent runs", flush=True)
    results = sweep(comparison_arm, points, executor)
    longer, rand = results[0], results[1]
    oneshot, from_init = results[2:2 + len(levels)], results[2 + len(levels):]
    print(f"[compress] reference: the dense model retrained {plan.retrain_epochs * plan.rounds} more epochs at lr "
          f"{plan.retrain_lr:g} reaches {longer:.4f}; AccLoss of pruning against it "
          f"{100 * (longer - pruned['top1']):+.2f} pp", flush=True)
    comparison = {"dense_retrained_top1": longer, "sparsity": [], "oneshot": [], "iterative": [], "random": [],
                  "from_init": []}
    for k in range(len(levels)):
        it_acc = pruned["records"][k]["acc"] if plan.schedule == "iterative" else pruned["top1"]
        rand_acc = rand[k] if plan.schedule == "iterative" else rand[0]
        row = (oneshot[k][0], oneshot[k][1], it_acc, rand_acc, from_init[k])
        for key, v in zip(("sparsity", "oneshot", "iterative", "random", "from_init"), row):
            comparison[key].append(float(v))
        print(f"  sparsity {row[0]:.4f}: one-shot {row[1]:.4f}  iterative {row[2]:.4f}  random {row[3]:.4f}  "
              f"from-init {row[4]:.4f}", flush=True)
    return comparison


# ------------------------------------------------------------------ phase 4: inference time against sparsity
def time_inference_curve(plan: Plan, dense, kw, test_images) -> dict:
    """Median dense (NumPy) and CSR inference time of a batch of 256 at several sparsities
    (in this process, one after the other: timings are never run in parallel)."""
    levels = [0.0, 0.9] if plan.quick else [0.0, 0.5, 0.8, 0.9, 0.95, 0.98]
    xb = harness.images_to_float(test_images[:256])
    timing = {"sparsity": [], "dense_ms": [], "sparse_ms": []}
    for s in levels:
        m = plan.fresh(dense.state_dict())
        if s > 0:
            prune.magnitude(m, amount=s, **{**kw, "params": None})
        d, sp = prune.time_inference(m, xb, plan.repeats, other=prune.to_sparse(m))
        for key, v in zip(timing, (prune.sparsity(m), 1e3 * d, 1e3 * sp)):
            timing[key].append(float(v))
    return timing


# ------------------------------------------------------------------ phase 5: Deep Compression
def _quantized_dense_bytes(model, bits: int) -> int:
    """Bytes of a dense model whose weights are codebook indices of ``bits`` bits: the weights at
    ``bits`` each (``cost.model_bytes``) plus a 2^bits-entry float32 codebook per weight layer."""
    n_layers = sum(1 for name, p in model.named_parameters() if name.endswith("weight") and p.ndim >= 2)
    return cost.model_bytes(model, weight_bits=bits) + n_layers * 4 * 2 ** bits


def weight_sharing_point(plan_dict: dict, state: dict, bits: int, pruned: bool) -> dict:
    """k-means weight sharing of one model (dense, or pruned with its masks) at ``bits``; one
    independent run of the Deep Compression sweep."""
    plan = _plan_from_dict(plan_dict)
    train_data, test = plan.dataset()
    model = plan.fresh(state)
    _, r = qc.deep_compression(model, bits, images=test[0], labels=test[1], train_data=train_data,
                               finetune_epochs=plan.deep_finetune_epochs, lr=0.001, seed=plan.seed)
    if pruned:
        return {"bits": bits, "top1": r["top1"], "compression": r["compression"]["huffman"],
                "compression_csr": r["compression"]["csr"]}
    return {"bits": bits, "top1": r["top1"],
            "compression": cost.model_bytes(model) / _quantized_dense_bytes(model, bits)}


def deep_compression_curve(plan: Plan, dense, dense_acc, pruned: dict, executor=None) -> dict:
    """Accuracy against compression for pruning only, weight sharing only, and both (Deep Compression).

    Weight sharing is ``quant.deep_compression``'s per-layer k-means codebook of 2^bits
    values, fine-tuned for one epoch (none in quick mode). "Quantization only" stores the
    dense indices (``_quantized_dense_bytes``); "both" stores the pruned, shared layer with
    relative indices and Huffman coding, as Han et al. do (every index, codebook and bias
    counted).
    """
    pd = _plan_dict(plan, pruned["kw"])
    dense_state, pruned_state = dense.state_dict(), pruned["model"].state_dict()
    points = [{"plan_dict": pd, "state": s, "bits": b, "pruned": which}
              for b in plan.bits for which, s in ((False, dense_state), (True, pruned_state))]
    results = sweep(weight_sharing_point, points, executor)
    curve = {"fp32_bytes": int(cost.model_bytes(dense)), "dense": {"compression": 1.0, "top1": dense_acc},
             "pruning_only": {"compression": pruned["report"].totals["compression_bytes"], "top1": pruned["top1"]},
             "quantization_only": results[0::2], "both": results[1::2]}
    for q, b in zip(curve["quantization_only"], curve["both"]):
        print(f"[compress] {q['bits']}-bit weight sharing: quantization only {q['compression']:.1f}x "
              f"top-1 {q['top1']:.4f}; pruning + quantization {b['compression']:.1f}x "
              f"(Huffman; {b['compression_csr']:.1f}x as CSR) top-1 {b['top1']:.4f}", flush=True)
    return curve


# ------------------------------------------------------------------ phase 6: plots
_SPARSITY_AXIS = "sparsity of the weights (%)"


def _finish(fig, ax, path, xlabel, ylabel, title):
    """Label the axes of a one-panel curve plot, add its legend and save it (``harness.save_plot``)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    harness.save_plot(fig, path, dpi=110)


def plot(out, plan: Plan, dense, dense_acc, pruned, comparison, timing, deep) -> list:
    """Write the figures of the run into ``out``; returns their file names."""
    plt = harness.pyplot()
    name, written = plan.model, ["report.png", "weight_histograms.png", "inference_time.png"]
    pruned["report"].plot(out / "report.png", title=f"{name} pruned ({plan.schedule})")
    if comparison is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        s = np.array(comparison["sparsity"])
        for key, style in (("oneshot", "o--"), ("iterative", "s-"), ("random", "x:"), ("from_init", "d-.")):
            ax.plot(100 * s, comparison[key], style, label=key.replace("_", "-"))
        ax.axhline(dense_acc, color="gray", lw=0.8, label="dense")
        _finish(fig, ax, out / "accuracy_vs_sparsity.png", _SPARSITY_AXIS, "test top-1",
                f"{name}: accuracy against sparsity")
        written.append("accuracy_vs_sparsity.png")

    layers = list(prune.prunable(dense))
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3))
    axes = np.atleast_1d(axes)
    before, after = dict(dense.named_parameters()), dict(pruned["model"].named_parameters())
    for ax, lname in zip(axes, layers):
        w0 = before[lname].data.ravel()
        w1 = after[lname].effective().data.ravel()
        bins = np.linspace(w0.min(), w0.max(), 80)
        ax.hist(w0, bins=bins, alpha=0.5, label="dense")
        ax.hist(w1[w1 != 0], bins=bins, alpha=0.7, label="pruned (non-zero)")
        ax.set_title(lname, fontsize=9)
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle("weight distributions before and after pruning", fontsize=10)
    harness.save_plot(fig, out / "weight_histograms.png", dpi=110)

    fig, ax = plt.subplots(figsize=(6, 4))
    s = 100 * np.array(timing["sparsity"])
    ax.plot(s, timing["dense_ms"], "o-", label="dense (NumPy / BLAS)")
    ax.plot(s, timing["sparse_ms"], "s-", label="CSR kernel")
    _finish(fig, ax, out / "inference_time.png", _SPARSITY_AXIS, "ms per batch of 256 (median)",
            f"{name}: does it get faster?")

    if deep["both"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([1, deep["pruning_only"]["compression"]], [deep["dense"]["top1"], deep["pruning_only"]["top1"]],
                "s-", label="pruning only (CSR)")
        for key, style, label in (("quantization_only", "o--", "weight sharing only"),
                                  ("both", "d-", "pruning + weight sharing (Huffman)")):
            pts = deep[key]
            ax.plot([p["compression"] for p in pts], [p["top1"] for p in pts], style, label=label)
            for p in pts:
                ax.annotate(f"{p['bits']}b", (p["compression"], p["top1"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xscale("log")
        _finish(fig, ax, out / "deep_compression.png", "compression ratio (float32 bytes / stored bytes)",
                "test top-1", f"{name}: Deep Compression")
        written.append("deep_compression.png")
    return written


# ------------------------------------------------------------------ the command
def run(args) -> int:
    """Run the experiment described in the module docstring; returns 0 on success."""
    plan = Plan(args)
    out = harness.run_dir(args.out)
    harness.quick_banner("compress", plan.quick)
    started = time.perf_counter()
    dataset = plan.dataset()
    dense, dense_acc = train_dense(plan, dataset, out)
    pruned = compress(plan, dense, dataset)
    print_summary(plan, dense_acc, pruned)
    train.save_model(pruned["model"], out / f"pruned_{plan.model}.npz")
    main_seconds = time.perf_counter() - started
    print(f"[compress] pruned model and its report after {main_seconds:.1f} s; now the comparison, the timing "
          f"curve and the Deep Compression sweep", flush=True)

    with executor_from_args(args) as executor:
        comparison = compare(plan, dense, pruned, executor) if plan.compare else None
        deep = deep_compression_curve(plan, dense, dense_acc, pruned, executor)
    timing = time_inference_curve(plan, dense, pruned["kw"], dataset[1][0])

    t = pruned["report"].totals
    summary = {
        "model": plan.model, "schedule": plan.schedule, "granularity": plan.granularity, "scope": plan.scope,
        "target": plan.target, "quick": plan.quick, "dense_top1": dense_acc, "pruned_top1": pruned["top1"],
        "csr_top1": pruned["csr_top1"],
        "acc_loss_pp": 100.0 * (dense_acc - pruned["top1"]),
        "dense_retrained_top1": comparison["dense_retrained_top1"] if comparison else None,
        "sparsity": t["sparsity"], "compression_count": t["compression_count"],
        "compression_bytes": t["compression_bytes"], "theoretical_speedup": t["theoretical_speedup"],
        "measured_speedup": t["measured_speedup"], "dense_ms": t.get("dense_ms"), "sparse_ms": t.get("sparse_ms"),
        "epochs": plan.epochs, "retrain_epochs": plan.retrain_epochs, "rounds": plan.rounds,
        "retrain_lr": plan.retrain_lr, "rounds_log": pruned["records"], "comparison": comparison, "timing": timing,
        "report": pruned["report"].to_dict(), "deep_compression": deep,
        "seconds_to_report": main_seconds, "seconds": time.perf_counter() - started,
    }
    harness.write_json(out / "results.json", summary)
    written = plot(out, plan, dense, dense_acc, pruned, comparison, timing, deep)
    print(f"[compress] wrote {out}/results.json, {', '.join(written)} ({time.perf_counter() - started:.0f} s)")
    return 0
