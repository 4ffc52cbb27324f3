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

QUICK mode (``--quick`` or ``TINYAPPROX_QUICK=1``): 2000 training and 1000 test images,
one epoch, a short sweep.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

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
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of the float model")
    parser.add_argument("--calib", type=int, default=512, help="calibration images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="runs/quantize")
    return parser


def energy_pj(model, scheme, wbits, abits):
    """Energy (pJ) of one inference and the arithmetic assumed, via ``cost.inference_energy``.

    int8 / dfp <= 8 bits: int8 multiplies, int32 adds (Dally's int8 savings); wider integers
    are priced as int32; fp16: float16 multiply and add; minifloat: priced as float16 (no
    8-bit float row in the table: an upper bound); pow2: each multiply becomes a shift,
    priced like an int8 add (0.03 pJ), adds in int32; float: float32.
    """
    from .. import cost

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


def _plot_sweep(sweep, baseline, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for scheme, pts in sweep.items():
        pts = sorted(pts)
        ax.plot([b for b, _ in pts], [100 * a for _, a in pts], marker="o", label=scheme)
    ax.axhline(100 * baseline, color="k", ls="--", lw=1, label="float32")
    ax.set_xlabel("bits (weights and activations; pow2: weights, 8-bit activations)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_histogram(w, fmt, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(w.ravel(), bins=200, color="0.6")
    lv = fmt.levels()
    lv = lv[(lv >= w.min() * 1.1) & (lv <= w.max() * 1.1)]
    for v in lv:
        ax.axvline(v, color="C3", lw=0.5, alpha=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("weight value")
    ax.set_title(f"{title}: {len(lv)} levels in range (red)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_sensitivity(rows, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([r["layer"] for r in rows], [100 * r["acc_loss"] for r in rows], color="C0")
    ax.set_ylabel("AccLoss (pp)")
    ax.set_xlabel("layer quantized alone")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


def run(args) -> int:
    from .. import cost, data, prune, train
    from ..bench import median_time
    from . import compress
    from .lowered import convert
    from .fake import WeightQuant
    from . import pipeline as ptq

    quick = bool(getattr(args, "quick", False)) or os.environ.get("TINYAPPROX_QUICK") == "1"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    limit = 2000 if quick else None
    epochs = args.epochs if args.epochs is not None else (1 if quick else (10 if args.model == "lenet-300-100" else 3))
    scheme = args.scheme
    bits = args.bits if args.bits is not None else {"pow2": 4, "fp16": 16}.get(scheme, 8)
    abits = args.act_bits if args.act_bits is not None else (8 if scheme == "pow2" else bits)
    opts = _scheme_opts(scheme, args.exp_bits, args.per_channel)

    (train_x, train_y), (test_x, test_y) = data.load("fashion-mnist", limit=limit)
    if quick:
        test_x, test_y = test_x[:1000], test_y[:1000]
    model, _, _ = train.train_baseline(args.model, epochs=epochs, seed=args.seed, out_dir=out, limit=limit,
                                       verbose=False)
    base = ptq.evaluate(model, test_x, test_y)
    t_fp32 = median_time(lambda: train.predict(model, test_x), repeat=3)
    fp32_size = {"bytes": 4 * model.num_parameters(), "compression": 1.0}
    rows = [_row("float32", 32, base, base, fp32_size, 1.0, energy_pj(model, "float", 32, 32))]
    results = {"model": args.model, "epochs": epochs, "quick": quick, "n_test": int(len(test_x)),
               "fp32_seconds": t_fp32}

    def add_ptq(label, sch, wb, ab, q=None, note="", **kw):
        q = q if q is not None else ptq.ptq(model, sch, wb, ab, train_x, args.calib, **kw)
        acc = ptq.evaluate(q, test_x, test_y)
        rows.append(_row(label, wb, acc, base, ptq.model_size(q), None, energy_pj(model, sch, wb, ab), note))
        return q

    q = add_ptq(f"{scheme} PTQ" + (" per-channel" if args.per_channel else ""), scheme, bits, abits,
                note=f"act {abits} bits", **opts)
    results["weight_format"] = repr(next(iter(ptq.weight_layers(q)))[1].weight.find_transform(
        WeightQuant).fmt)

    # integer path, where the scheme has one
    int_q = None
    if scheme == "int8" and bits == 8 and abits == 8:
        int_q = ptq.ptq(model, "int8", 8, 8, train_x, args.calib, pow2_scale=True, per_channel=args.per_channel)
    elif scheme in ("dfp", "pow2"):
        int_q = q
    im = None
    if int_q is not None:
        try:
            im = convert(int_q)
        except ValueError as exc:
            results["integer"] = {"unavailable": str(exc)}
            print(f"no integer path for this model: {exc}")
    if im is not None:
        n_int = len(test_x) if scheme == "int8" else min(len(test_x), 1000)
        logits = train.predict(im, test_x[:n_int])
        sim = train.predict(int_q, test_x[:n_int])
        equal = bool(np.array_equal(logits, sim))
        acc_int = float(np.mean(logits.argmax(1) == test_y[:n_int]))
        t_int = median_time(lambda: train.predict(im, test_x[:n_int]), repeat=3)
        t_ref = t_fp32 if n_int == len(test_x) else median_time(lambda: train.predict(model, test_x[:n_int]), repeat=3)
        kinds = sorted({L.kind for L in im.weight_layers()})
        label = "int8 kernel (pow2 scales)" if scheme == "int8" else f"{scheme} integer path"
        # top-1 of the integer logits themselves (argmax; exact logit ties go to the lower class index)
        acc_full = acc_int if n_int == len(test_x) else ptq.evaluate(int_q, test_x, test_y)
        int_bytes = cost.model_bytes(im)
        int_size = {"bytes": int_bytes, "compression": fp32_size["bytes"] / int_bytes}
        int_energy = cost.inference_energy(im, (1, 1, 28, 28)).total_pj
        rows.append(_row(label, bits, acc_full, base, int_size, t_ref / t_int, int_energy,
                         f"{'/'.join(kinds)}; int==sim on {n_int}: {equal}; int top-1 {100 * acc_int:.2f}"))
        results["integer"] = {"equal_to_simulation": equal, "n": n_int, "seconds": t_int, "fp32_seconds": t_ref,
                              "speedup": t_ref / t_int, "kinds": kinds, "checks": im.check()}

    extra = max(args.finetune_epochs, args.qat_epochs if args.qat else 0)
    if extra:
        from .. import data, optim
        from .. import functional as F
        import copy
        ref = copy.deepcopy(model)
        loader = data.DataLoader(train_x, train_y, batch_size=128, shuffle=True, seed=args.seed)
        train.fit(ref, loader, F.cross_entropy, optim.SGD(ref.parameters(), lr=args.lr, momentum=0.9), extra,
                  verbose=False)
        acc_ref = ptq.evaluate(ref, test_x, test_y)
        rows.append(_row(f"float32 + {extra}ep same lr", 32, acc_ref, base, fp32_size, None, None,
                         "fair reference for fine-tuned rows"))
    if args.finetune_epochs > 0:
        qf = ptq.ptq(model, scheme, bits, abits, train_x, args.calib, **opts)
        ptq.finetune(qf, train_x, train_y, args.finetune_epochs, args.lr, seed=args.seed)
        add_ptq(f"{scheme} PTQ + fine-tune {args.finetune_epochs}ep", scheme, bits, abits, q=qf)
    if args.qat:
        qq, _ = ptq.qat(model, scheme, bits, abits, train_x, train_y, epochs=args.qat_epochs, lr=args.lr,
                        seed=args.seed, **opts)
        add_ptq(f"{scheme} QAT {args.qat_epochs}ep", scheme, bits, abits, q=qq)
        ptq.export_npz(qq, out / f"qat_{args.model}_{scheme}{bits}.npz")

    # accuracy against bits, every scheme
    sweep = {}
    grid = {"int8": [8, 4, 2] if quick else [8, 6, 5, 4, 3, 2], "dfp": [8, 4] if quick else [16, 8, 6, 5, 4, 3, 2],
            "pow2": [4] if quick else [6, 5, 4, 3, 2], "minifloat": [8] if quick else [8, 7, 6, 5, 4]}
    if getattr(args, "no_sweep", False):
        grid = {}
    for sch, bl in grid.items():
        for b in bl:
            kw = {"exp_bits": {8: 4, 7: 4, 6: 3, 5: 3, 4: 2}[b]} if sch == "minifloat" else {}
            qb = ptq.ptq(model, sch, b, 8 if sch == "pow2" else b, train_x, args.calib, **kw)
            sweep.setdefault("affine int" if sch == "int8" else sch, []).append((b, ptq.evaluate(qb, test_x, test_y)))
    if grid:
        q16 = ptq.ptq(model, "fp16", 16, 16, train_x, args.calib)
        sweep["fp16"] = [(16, ptq.evaluate(q16, test_x, test_y))]
        _plot_sweep(sweep, base, out / "accuracy_vs_bits.png", f"{args.model}: PTQ without fine-tuning")
    results["sweep"] = {k: [[b, a] for b, a in v] for k, v in sweep.items()}
    first = ptq.weight_layers(model)[0][1].weight.data
    _plot_histogram(first, next(iter(ptq.weight_layers(q)))[1].weight.find_transform(
        WeightQuant).fmt,
        out / "weight_histogram.png", f"{args.model} first layer, {scheme} {bits} bits")

    if args.search:
        n_val = 1000 if quick else 10000
        res = ptq.search_bitwidths(model, train_x, test_x[:n_val], test_y[:n_val], "dfp", n_calib=args.calib)
        results["search"] = res
        print(f"Ristretto search (dfp, margin 1 pp, {n_val} test images): chosen {res['chosen']}, "
              f"combined top-1 {100 * res['combined_top1']:.2f} (AccLoss {100 * res['combined_acc_loss']:.2f} pp)")
        for t in res["trials"]:
            print(f"  {t['group']:<5}{t['bits']:>3} bits  top-1 {100 * t['top1']:.2f}  AccLoss {100 * t['acc_loss']:.2f} pp")
    if args.sensitivity:
        sens = ptq.sensitivity(model, train_x, test_x, test_y, scheme if scheme != "fp16" else "dfp", bits,
                               n_calib=args.calib, **({k: v for k, v in opts.items() if k != "per_channel"}))
        results["sensitivity"] = sens
        print(f"per-layer sensitivity ({scheme}, {bits}-bit weights of one layer at a time):")
        for r in sens:
            print(f"  {r['layer']:<6}{r['kind']:<5}{r['params']:>9,}  top-1 {100 * r['top1']:.2f}  "
                  f"AccLoss {100 * r['acc_loss']:.2f} pp")
        _plot_sensitivity(sens, out / "sensitivity.png", f"{args.model}: one layer at {bits} bits ({scheme})")
    if args.deep_compression:
        results["deep_compression"] = _deep_compression(model, args, train_x, train_y, test_x, test_y, quick, out,
                                                        base, prune, compress, train)
    _print_table(rows)
    results["rows"] = rows
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    written = [out / n for n in ("results.json", "accuracy_vs_bits.png", "weight_histogram.png", "sensitivity.png")
               if (out / n).exists()]
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _deep_compression(model, args, train_x, train_y, test_x, test_y, quick, out, base, prune, compress, train):
    """Prune (Han et al.'s per-layer rates, ~12x for LeNet-300-100), retrain with the masks,
    then k-means share the surviving weights at ``--bits`` and fine-tune the shared values."""
    import copy

    from .. import data, optim
    from .. import functional as F

    pm = copy.deepcopy(model)
    names = [n for n, p in pm.named_parameters() if n.endswith("weight")]
    rates = [0.92, 0.91, 0.74] if len(names) == 3 else [0.34, 0.88, 0.92, 0.81][:len(names)]
    prune.magnitude(pm, amount=dict(zip(names, rates)))
    loader = data.DataLoader(train_x, train_y, batch_size=128, shuffle=True, seed=args.seed)
    retrain = 1 if quick else 4
    train.fit(pm, loader, F.cross_entropy, optim.SGD(pm.parameters(), lr=0.01, momentum=0.9), retrain,
              verbose=False)
    sparsity = prune.sparsity(pm)
    _, rep = compress.deep_compression(pm, args.bits or 5, test_x, test_y, train_data=(train_x, train_y),
                                       finetune_epochs=1, lr=0.001, seed=args.seed)
    rep["weight_compression_by_count"] = 1 / (1 - sparsity)
    rep["acc_loss_pp"] = 100 * (base - rep["top1"])
    print(f"Deep Compression: pruned {1 / (1 - sparsity):.1f}x (retrained {retrain} ep, top-1 "
          f"{100 * rep['top1_pruned']:.2f}), {rep['bits']}-bit shared weights (fine-tuned 1 ep): top-1 "
          f"{100 * rep['top1']:.2f} (AccLoss {rep['acc_loss_pp']:.2f} pp)")
    for k in ("csr", "relative", "huffman"):
        print(f"  {k:<9} {rep['bytes'][k]:>9,} bytes  compression {rep['compression'][k]:.1f}x "
              f"(float32 {rep['fp32_bytes']:,} bytes; biases {rep['other_bytes']:,} bytes at 32 bits)")
    return rep
