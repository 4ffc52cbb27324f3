"""``tinyapprox quantize``: train (or load) a model, quantize it, and measure it honestly.

    tinyapprox quantize --model lenet-300-100 --scheme int8 --bits 8 --out runs/quantize
    tinyapprox quantize --scheme dfp --bits 6 --finetune-epochs 2
    tinyapprox quantize --scheme dfp --bits 4 --qat --qat-epochs 3
    tinyapprox quantize --model lenet5 --search
    tinyapprox quantize --sensitivity --scheme dfp --bits 4
    tinyapprox quantize --deep-compression --bits 5

Prints a table (scheme, bits, top-1, AccLoss, bytes, compression, measured speedup, energy)
and writes ``results.json``, ``accuracy_vs_bits.png`` (one curve per scheme) and
``weight_histogram.png`` (first layer's weights with the chosen scheme's levels overlaid).

Metrics: AccLoss = top-1(float) - top-1(quantized), in percentage points; bytes = packed
codes + scales / zero points / exponents (``quant.model_size``); compression = float32
bytes / quantized bytes; speedup = median wall-clock time of this project's float32
inference over the test set / that of the integer path, same run (only schemes with an
integer path: int8 with power-of-two scales, dfp, pow2); energy = one inference priced
with the Horowitz 45 nm table (``cost.inference_energy``).

The accuracy-against-bits sweep, the per-layer sensitivity and the candidates of
Ristretto's search are independent runs: ``--workers N`` / ``--dask ADDRESS`` spread them
(``experiments.sweep``) with the same results. Quick mode: see ``harness``.

Phases: ``train_float``, ``quantize_main`` (PTQ and the integer path), ``retrain``
(fine-tuning / QAT), ``bit_sweep``, ``search``, ``layer_sensitivity``,
``deep_compression``, ``plot_*``; ``run`` calls them in order.
"""
from __future__ import annotations

import copy
import functools

import numpy as np

from .. import cost, data, optim, prune, train
from .. import functional as F
from ..quant import compress as qc
from ..quant import convert
from ..quant import pipeline as ptq
from ..quant.fake import WeightQuant
from . import harness
from .parallel import add_executor_options, executor_from_args, sweep

SCHEME_CHOICES = ("fp16", "int8", "dfp", "minifloat", "pow2")


def add_arguments(parser):
    """Options of ``tinyapprox quantize``."""
    parser.add_argument("--model", default="lenet-300-100", choices=["lenet-300-100", "lenet5"])
    parser.add_argument("--scheme", default="int8", choices=SCHEME_CHOICES)
    parser.add_argument("--bits", type=int, default=None,
                        help="weight bits (default 8; pow2 4; fp16 16; minifloat 8 = 1-4-3)")
    parser.add_argument("--act-bits", type=int, default=None, help="activation bits (default: --bits; pow2: 8)")
    parser.add_argument("--exp-bits", type=int, default=None, help="minifloat exponent bits (default 4)")
    parser.add_argument("--per-channel", action="store_true", help="per-output-channel weight scales (int8)")
    parser.add_argument("--qat", action="store_true", help="also run quantization-aware training")
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--finetune-epochs", type=int, default=0, help="fine-tune the PTQ model this many epochs")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate of fine-tuning / QAT")
    parser.add_argument("--search", action="store_true", help="Ristretto's bit-width search (dfp)")
    parser.add_argument("--sensitivity", action="store_true", help="per-layer sensitivity table and plot")
    parser.add_argument("--deep-compression", action="store_true",
                        help="prune to ~12x, retrain, then k-means share weights at --bits")
    parser.add_argument("--no-sweep", action="store_true", help="skip the accuracy-vs-bits sweep and its plot")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of the float model "
                        "(default: the recipe's)")
    parser.add_argument("--calib", type=int, default=512, help="calibration images")
    parser.add_argument("--seed", type=int, default=0)
    harness.add_run_options(parser, "runs/quantize")
    add_executor_options(parser)
    return parser


def energy_pj(model, scheme, wbits, abits):
    """Energy (pJ) of one inference and the arithmetic assumed, via ``cost.inference_energy``.

    int8 / dfp <= 8 bits: int8 multiplies, int32 adds (Dally's int8 savings); wider integers
    are priced as int32; fp16: float16 multiply and add; minifloat: priced as float16 (no
    8-bit float row in the table: an upper bound); pow2: each multiply becomes a shift,
    priced like an int8 add (0.03 pJ), adds in int32; float: float32.
    """
    shape = (1, 1, 28, 28)
    if scheme == "float":
        r = cost.inference_energy(model, shape, 32, 32, "float")
    elif scheme == "fp16":
        r = cost.inference_energy(model, shape, 16, 16, "float")
    elif scheme == "minifloat":
        r = cost.inference_energy(model, shape, wbits, abits, mult_op="float16_mult", add_op="float16_add")
    elif scheme == "pow2":
        r = cost.inference_energy(model, shape, wbits, abits, mult_op="shift", add_op="int32_add",
                                  energies={"shift": cost.ENERGY_PJ_45NM["int8_add"]})
    else:
        wide = max(wbits, abits or 32) > 8
        r = cost.inference_energy(model, shape, wbits, abits or 32, mult_op="int32_mult" if wide else "int8_mult",
                                  add_op="int32_add")
    return r.total_pj


def _row(name, bits, top1, base, size, speedup, energy, extra=""):
    return {"scheme": name, "bits": bits, "top1": top1, "acc_loss_pp": 100 * (base - top1),
            "bytes": size["bytes"] if size else None, "compression": size["compression"] if size else None,
            "speedup": speedup, "energy_pj": energy, "note": extra}


def _print_table(rows):
    print(f"{'scheme':<28}{'bits':>6}{'top-1':>8}{'AccLoss pp':>12}{'bytes':>10}{'compr.':>8}{'speedup':>9}"
          f"{'energy nJ':>11}  note")
    for r in rows:
        sp = f"{r['speedup']:.2g}x" if r["speedup"] else "-"
        by = f"{r['bytes']:,}" if r["bytes"] else "-"
        co = f"{r['compression']:.2f}" if r["compression"] else "-"
        en = f"{r['energy_pj'] / 1000:.1f}" if r["energy_pj"] else "-"
        print(f"{r['scheme']:<28}{str(r['bits']):>6}{100 * r['top1']:>8.2f}{r['acc_loss_pp']:>12.2f}{by:>10}"
              f"{co:>8}{sp:>9}{en:>11}  {r['note']}")


def _scheme_opts(scheme, exp_bits, per_channel):
    opts = {}
    if scheme == "minifloat":
        opts["exp_bits"] = exp_bits or 4
    if scheme == "int8":
        opts["per_channel"] = per_channel
    return opts


class Run:
    """What the phases share: the options, the dataset, the float model and its figures."""

    def __init__(self, args):
        self.args = args
        self.quick = harness.is_quick(args)
        self.scheme = args.scheme
        self.bits = args.bits if args.bits is not None else {"pow2": 4, "fp16": 16}.get(args.scheme, 8)
        self.abits = args.act_bits if args.act_bits is not None else (8 if args.scheme == "pow2" else self.bits)
        self.opts = _scheme_opts(args.scheme, args.exp_bits, args.per_channel)
        self.epochs = harness.resolve_epochs(args.epochs, harness.RECIPES[args.model]["epochs"], self.quick)
        (self.train_x, self.train_y), (self.test_x, self.test_y) = harness.load_dataset(self.quick)
        self.rows, self.results = [], {"model": args.model, "epochs": self.epochs, "quick": self.quick,
                                       "n_test": int(len(self.test_x))}


# ------------------------------------------------------------------ phase 1: the float model
def train_float(r: Run, out):
    """Train (or load from the cache in ``out``) the float model; adds the float32 row."""
    model, _, _ = harness.train_baseline(r.args.model, epochs=r.epochs, seed=r.args.seed, out_dir=out,
                                         verbose=False, dataset=((r.train_x, r.train_y), (r.test_x, r.test_y)))
    r.model = model
    r.base = ptq.evaluate(model, r.test_x, r.test_y)
    r.t_fp32 = harness.median_time(lambda: train.predict(model, r.test_x), repeat=3)
    r.fp32_size = {"bytes": cost.model_bytes(model), "compression": 1.0}
    r.rows.append(_row("float32", 32, r.base, r.base, r.fp32_size, 1.0, energy_pj(model, "float", 32, 32)))
    r.results["fp32_seconds"] = r.t_fp32


def _add_quantized(r: Run, label, sch, wb, ab, q=None, note="", **kw):
    q = q if q is not None else ptq.ptq(r.model, sch, wb, ab, r.train_x, r.args.calib, **kw)
    acc = ptq.evaluate(q, r.test_x, r.test_y)
    r.rows.append(_row(label, wb, acc, r.base, ptq.model_size(q), None, energy_pj(r.model, sch, wb, ab), note))
    return q


# ------------------------------------------------------------------ phase 2: PTQ and the integer path
def quantize_main(r: Run):
    """PTQ at the chosen scheme and widths, then the integer path where the scheme has one
    (timed against float32 in this process)."""
    args, scheme, bits, abits = r.args, r.scheme, r.bits, r.abits
    r.q = _add_quantized(r, f"{scheme} PTQ" + (" per-channel" if args.per_channel else ""), scheme, bits, abits,
                         note=f"act {abits} bits", **r.opts)
    r.results["weight_format"] = repr(ptq.weight_layers(r.q)[0][1].weight.find_transform(WeightQuant).fmt)
    int_q = None
    if scheme == "int8" and bits == 8 and abits == 8:
        int_q = ptq.ptq(r.model, "int8", 8, 8, r.train_x, args.calib, pow2_scale=True, per_channel=args.per_channel)
    elif scheme in ("dfp", "pow2"):
        int_q = r.q
    im = None
    if int_q is not None:
        try:
            im = convert(int_q)
        except ValueError as exc:
            r.results["integer"] = {"unavailable": str(exc)}
            print(f"no integer path for this model: {exc}")
    if im is None:
        return
    test_x, test_y = r.test_x, r.test_y
    n_int = len(test_x) if scheme == "int8" else min(len(test_x), 1000)
    logits = train.predict(im, test_x[:n_int])
    sim = train.predict(int_q, test_x[:n_int])
    equal = bool(np.array_equal(logits, sim))
    acc_int = float(np.mean(logits.argmax(1) == test_y[:n_int]))
    t_int = harness.median_time(lambda: train.predict(im, test_x[:n_int]), repeat=3)
    t_ref = r.t_fp32 if n_int == len(test_x) else harness.median_time(
        lambda: train.predict(r.model, test_x[:n_int]), repeat=3)
    kinds = sorted({L.kind for L in im.weight_layers()})
    label = "int8 kernel (pow2 scales)" if scheme == "int8" else f"{scheme} integer path"
    # top-1 of the integer logits themselves (argmax; exact logit ties go to the lower class index)
    acc_full = acc_int if n_int == len(test_x) else ptq.evaluate(int_q, test_x, test_y)
    int_bytes = cost.model_bytes(im)
    int_size = {"bytes": int_bytes, "compression": r.fp32_size["bytes"] / int_bytes}
    int_energy = cost.inference_energy(im, (1, 1, 28, 28)).total_pj
    r.rows.append(_row(label, bits, acc_full, r.base, int_size, t_ref / t_int, int_energy,
                       f"{'/'.join(kinds)}; int==sim on {n_int}: {equal}; int top-1 {100 * acc_int:.2f}"))
    r.results["integer"] = {"equal_to_simulation": equal, "n": n_int, "seconds": t_int, "fp32_seconds": t_ref,
                            "speedup": t_ref / t_int, "kinds": kinds, "checks": im.check()}


# ------------------------------------------------------------------ phase 3: fine-tuning and QAT
def retrain(r: Run, out):
    """Fine-tuned PTQ and QAT rows, with the float model trained as long at the same rate as their
    fair reference."""
    args, scheme, bits, abits = r.args, r.scheme, r.bits, r.abits
    extra = max(args.finetune_epochs, args.qat_epochs if args.qat else 0)
    if extra:
        ref = copy.deepcopy(r.model)
        loader = data.DataLoader(r.train_x, r.train_y, batch_size=128, shuffle=True, seed=args.seed)
        train.fit(ref, loader, F.cross_entropy, optim.SGD(ref.parameters(), lr=args.lr, momentum=0.9), extra,
                  verbose=False)
        r.rows.append(_row(f"float32 + {extra}ep same lr", 32, ptq.evaluate(ref, r.test_x, r.test_y), r.base,
                           r.fp32_size, None, None, "fair reference for fine-tuned rows"))
    if args.finetune_epochs > 0:
        qf = ptq.ptq(r.model, scheme, bits, abits, r.train_x, args.calib, **r.opts)
        ptq.finetune(qf, r.train_x, r.train_y, args.finetune_epochs, args.lr, seed=args.seed)
        _add_quantized(r, f"{scheme} PTQ + fine-tune {args.finetune_epochs}ep", scheme, bits, abits, q=qf)
    if args.qat:
        qq, _ = ptq.qat(r.model, scheme, bits, abits, r.train_x, r.train_y, epochs=args.qat_epochs, lr=args.lr,
                        seed=args.seed, **r.opts)
        _add_quantized(r, f"{scheme} QAT {args.qat_epochs}ep", scheme, bits, abits, q=qq)
        ptq.export_npz(qq, out / f"qat_{args.model}_{scheme}{bits}.npz")


# ------------------------------------------------------------------ phase 4: accuracy against bits
def sweep_point(quick: bool, n_calib: int, **kw) -> float:
    """Top-1 of one PTQ configuration on the run's test set (the dataset is loaded in the worker)."""
    (train_x, _), (test_x, test_y) = harness.load_dataset(quick)
    return ptq.quantized_top1(calib_images=train_x[:n_calib], n_calib=n_calib, val_images=test_x,
                              val_labels=test_y, **kw)


def bit_sweep(r: Run, executor=None) -> dict:
    """PTQ top-1 of every scheme at several widths, without fine-tuning: ``{scheme: [(bits, top-1)]}``."""
    grid = {"int8": [8, 4, 2] if r.quick else [8, 6, 5, 4, 3, 2],
            "dfp": [8, 4] if r.quick else [16, 8, 6, 5, 4, 3, 2],
            "pow2": [4] if r.quick else [6, 5, 4, 3, 2], "minifloat": [8] if r.quick else [8, 7, 6, 5, 4],
            "fp16": [16]}
    labels, points = [], []
    for sch, widths in grid.items():
        for b in widths:
            kw = {"exp_bits": {8: 4, 7: 4, 6: 3, 5: 3, 4: 2}[b]} if sch == "minifloat" else {}
            labels.append(("affine int" if sch == "int8" else sch, b))
            points.append({"quick": r.quick, "n_calib": r.args.calib, "model": r.model, "scheme": sch,
                           "weight_bits": b, "act_bits": 8 if sch == "pow2" else b, **kw})
    out = {}
    for (label, b), acc in zip(labels, sweep(sweep_point, points, executor)):
        out.setdefault(label, []).append((b, acc))
    return out


# ------------------------------------------------------------------ phases 5, 6: search and sensitivity
def search(r: Run, executor=None) -> dict:
    """Ristretto's bit-width search (dfp, 1 pp margin), its candidates spread over ``executor``."""
    n_val = len(r.test_x) if r.quick else 10000
    res = ptq.search_bitwidths(r.model, r.train_x, r.test_x[:n_val], r.test_y[:n_val], "dfp",
                               n_calib=r.args.calib, runner=functools.partial(sweep, executor=executor))
    print(f"Ristretto search (dfp, margin 1 pp, {n_val} test images): chosen {res['chosen']}, "
          f"combined top-1 {100 * res['combined_top1']:.2f} (AccLoss {100 * res['combined_acc_loss']:.2f} pp)")
    for t in res["trials"]:
        print(f"  {t['group']:<5}{t['bits']:>3} bits  top-1 {100 * t['top1']:.2f}  AccLoss {100 * t['acc_loss']:.2f} pp")
    return res


def layer_sensitivity(r: Run, executor=None) -> list:
    """Each weight layer alone at ``--bits`` (its layers spread over ``executor``)."""
    scheme = r.scheme if r.scheme != "fp16" else "dfp"
    sens = ptq.sensitivity(r.model, r.train_x, r.test_x, r.test_y, scheme, r.bits, n_calib=r.args.calib,
                           runner=functools.partial(sweep, executor=executor),
                           **{k: v for k, v in r.opts.items() if k != "per_channel"})
    print(f"per-layer sensitivity ({r.scheme}, {r.bits}-bit weights of one layer at a time):")
    for row in sens:
        print(f"  {row['layer']:<6}{row['kind']:<5}{row['params']:>9,}  top-1 {100 * row['top1']:.2f}  "
              f"AccLoss {100 * row['acc_loss']:.2f} pp")
    return sens


# ------------------------------------------------------------------ phase 7: Deep Compression
def deep_compression(r: Run) -> dict:
    """Prune (Han et al.'s per-layer rates, ~12x for LeNet-300-100), retrain with the masks,
    then k-means share the surviving weights at ``--bits`` and fine-tune the shared values."""
    args = r.args
    pm = copy.deepcopy(r.model)
    names = [n for n, p in pm.named_parameters() if n.endswith("weight")]
    rates = [0.92, 0.91, 0.74] if len(names) == 3 else [0.34, 0.88, 0.92, 0.81][:len(names)]
    prune.magnitude(pm, amount=dict(zip(names, rates)))
    loader = data.DataLoader(r.train_x, r.train_y, batch_size=128, shuffle=True, seed=args.seed)
    epochs = harness.resolve_epochs(None, 4, r.quick)
    train.fit(pm, loader, F.cross_entropy, optim.SGD(pm.parameters(), lr=0.01, momentum=0.9), epochs,
              verbose=False)
    sparsity = prune.sparsity(pm)
    _, rep = qc.deep_compression(pm, args.bits or 5, r.test_x, r.test_y, train_data=(r.train_x, r.train_y),
                                 finetune_epochs=1, lr=0.001, seed=args.seed)
    rep["weight_compression_by_count"] = 1 / (1 - sparsity)
    rep["acc_loss_pp"] = 100 * (r.base - rep["top1"])
    print(f"Deep Compression: pruned {1 / (1 - sparsity):.1f}x (retrained {epochs} ep, top-1 "
          f"{100 * rep['top1_pruned']:.2f}), {rep['bits']}-bit shared weights (fine-tuned 1 ep): top-1 "
          f"{100 * rep['top1']:.2f} (AccLoss {rep['acc_loss_pp']:.2f} pp)")
    for k in ("csr", "relative", "huffman"):
        print(f"  {k:<9} {rep['bytes'][k]:>9,} bytes  compression {rep['compression'][k]:.1f}x "
              f"(float32 {rep['fp32_bytes']:,} bytes; biases {rep['other_bytes']:,} bytes at 32 bits)")
    return rep


# ------------------------------------------------------------------ phase 8: plots
def plot_sweep(sweep_result, baseline, path, title):
    """Top-1 against bits, one line per scheme, the float32 top-1 dashed."""
    fig, ax = harness.pyplot().subplots(figsize=(6, 4))
    for scheme, pts in sweep_result.items():
        pts = sorted(pts)
        ax.plot([b for b, _ in pts], [100 * a for _, a in pts], marker="o", label=scheme)
    ax.axhline(100 * baseline, color="k", ls="--", lw=1, label="float32")
    ax.set_xlabel("bits (weights and activations; pow2: weights, 8-bit activations)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    harness.save_plot(fig, path)


def plot_histogram(w, fmt, path, title):
    """Histogram of weights ``w`` with the levels of ``fmt`` in range drawn over it."""
    fig, ax = harness.pyplot().subplots(figsize=(7, 3.5))
    ax.hist(w.ravel(), bins=200, color="0.6")
    lv = fmt.levels()
    lv = lv[(lv >= w.min() * 1.1) & (lv <= w.max() * 1.1)]
    for v in lv:
        ax.axvline(v, color="C3", lw=0.5, alpha=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("weight value")
    ax.set_title(f"{title}: {len(lv)} levels in range (red)")
    harness.save_plot(fig, path)


def plot_sensitivity(rows, path, title):
    """AccLoss per layer quantized alone, as bars."""
    fig, ax = harness.pyplot().subplots(figsize=(6, 3.5))
    ax.bar([row["layer"] for row in rows], [100 * row["acc_loss"] for row in rows], color="C0")
    ax.set_ylabel("AccLoss (pp)")
    ax.set_xlabel("layer quantized alone")
    ax.set_title(title)
    harness.save_plot(fig, path)


# ------------------------------------------------------------------ the command
def run(args) -> int:
    """Run the experiment described in the module docstring; returns 0 on success."""
    r = Run(args)
    out = harness.run_dir(args.out)
    harness.quick_banner("quantize", r.quick)
    written = ["results.json"]
    train_float(r, out)
    quantize_main(r)
    retrain(r, out)
    with executor_from_args(args) as executor:
        if not args.no_sweep:
            r.results["sweep"] = bit_sweep(r, executor)
            plot_sweep(r.results["sweep"], r.base, out / "accuracy_vs_bits.png",
                       f"{args.model}: PTQ without fine-tuning")
            written.append("accuracy_vs_bits.png")
        if args.search:
            r.results["search"] = search(r, executor)
        if args.sensitivity:
            r.results["sensitivity"] = layer_sensitivity(r, executor)
            plot_sensitivity(r.results["sensitivity"], out / "sensitivity.png",
                             f"{args.model}: one layer at {r.bits} bits ({r.scheme})")
            written.append("sensitivity.png")
    plot_histogram(ptq.weight_layers(r.model)[0][1].weight.data,
                   ptq.weight_layers(r.q)[0][1].weight.find_transform(WeightQuant).fmt,
                   out / "weight_histogram.png", f"{args.model} first layer, {r.scheme} {r.bits} bits")
    written.append("weight_histogram.png")
    if args.deep_compression:
        r.results["deep_compression"] = deep_compression(r)
    _print_table(r.rows)
    r.results["rows"] = r.rows
    harness.write_json(out / "results.json", r.results)
    print("wrote " + ", ".join(str(out / n) for n in written))
    return 0
