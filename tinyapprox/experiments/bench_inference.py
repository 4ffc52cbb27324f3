"""``tinyapprox bench inference``: does a compressed model run faster, end to end?

One table from one run, for one model (``--model lenet-300-100 | lenet5 | bnn-mlp``):
every row is a whole ``nn.Module`` run over the Fashion-MNIST test images by the same
loop, at batch 1000 and batch 1:

* ``fp32``: the trained float model (our engine, NumPy BLAS);
* ``12x pruned, CSR``: the model pruned by magnitude to 1/12 of its weights (one global
  cut, then a fine-tuning epoch with the masks), lowered by ``prune.to_sparse``;
* ``filter-pruned, dense``: half of the hidden neurons / filters removed
  (``prune.magnitude(granularity="filter")`` on every layer but the last, fine-tuned,
  then ``prune.remove_filters``): a smaller dense model -- structure, not sparsity;
* ``int8``: ``quant.ptq`` (int8, power-of-two scales, 512 calibration images) lowered by
  ``quant.convert``;
* for ``bnn-mlp``: the float twin (784-1024x3-10 with batch norm), the binarized net run
  in float (its sign path), lowered by ``bnn.pack`` (exactly equal to the sign path), and
  lowered with ``first_layer="int8"`` (8-bit pixels on the int8 kernel; the number of test
  images whose prediction differs from the sign path is printed);
* ``torch fp32`` / ``torch dynamic int8`` (``torch.ao.quantization.quantize_dynamic`` of the
  Linear layers) with the same weights, when torch is importable.

Columns: ms per 10,000 images (median of repeats), speedup over our fp32 measured in the
same run, top-1 on the test images, bytes (``cost.model_bytes``), modeled energy per
image (``cost.inference_energy``, Horowitz 45 nm), and the same time at batch 1. After the
table, a profile (cProfile, one batch-1000 pass) of each of our rows says what limits it.

Threads: our kernels use ``--threads`` (default ``kernels.default_threads()``); NumPy's
BLAS and torch are set to the same count (BLAS through ``threadpoolctl`` when installed).
Figures from a shared machine are noisy; the command says so in its output.
"""
from __future__ import annotations

import cProfile
import io
import os
import pstats
import time
from pathlib import Path

import numpy as np

from . import harness

__all__ = ["add_arguments", "run", "time_model", "interleaved_times", "profile_model", "format_table", "MODELS"]

MODELS = ("lenet-300-100", "lenet5", "bnn-mlp")


def add_arguments(parser):
    """Options of ``tinyapprox bench inference``."""
    parser.add_argument("--model", choices=MODELS, default="lenet-300-100")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 3; --quick 1)")
    parser.add_argument("--threads", type=int, default=None, help="threads for every row (default: kernels' default)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repeats per row (median)")
    parser.add_argument("--batch1-images", type=int, default=1000,
                        help="images timed one at a time (scaled to 10k in the table)")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch rows")
    parser.add_argument("--no-profile", action="store_true", help="skip the per-row profiles")
    parser.add_argument("--seed", type=int, default=0)
    harness.add_quick_option(parser)
    parser.add_argument("--out", default="runs/bench_inference", help="trained-model cache and results.json")
    parser.add_argument("--json", default=None, help="also write the table to this JSON file")
    return parser


# ------------------------------------------------------------------ timing and profiling
def _forward_all(model, x, batch):
    """Run ``model`` over x (N, ...) float32 in batches; returns the (N, classes) float32 scores."""
    from ..tensor import no_grad

    out = []
    with no_grad():
        for i in range(0, len(x), batch):
            y = model(x[i:i + batch])
            out.append(np.asarray(y.data if hasattr(y, "data") else y))
    return np.concatenate(out)


def time_model(fn, repeat):
    """(median seconds, result of the last call) of ``fn()`` after one untimed warm-up call."""
    return interleaved_times([fn], repeat)[0]


def interleaved_times(fns, repeat):
    """[(median seconds, last result)] of each ``fn()``: one warm-up call each, then ``repeat``
    rounds that call every fn once in turn (load bursts on a shared machine hit all alike)."""
    results = [fn() for fn in fns]
    times = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            results[i] = fn()
            times[i].append(time.perf_counter() - t0)
    return [(float(np.median(t)), r) for t, r in zip(times, results)]


def profile_model(fn, top=4):
    """The ``top`` functions by own time of one call of ``fn``: list of (seconds, share, name)."""
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    fn()
    prof.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof, stream=io.StringIO()).stats
    rows = sorted(((tt, f"{Path(file).name}:{line}({name})" if file != "~" else name)
                   for (file, line, name), (_, _, tt, _, _) in stats.items()), reverse=True)[:top]
    return [(tt, tt / total if total else 0.0, name) for tt, name in rows], total


def _set_threads(n):
    """Cap NumPy's BLAS (through threadpoolctl, if installed) and torch at n threads; returns a note."""
    notes = []
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
        notes.append(f"BLAS {n} (threadpoolctl)")
    except ImportError:
        notes.append(f"BLAS as OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    try:
        import torch
        torch.set_num_threads(n)
        notes.append(f"torch {n}")
    except ImportError:
        pass
    return ", ".join(notes)


# ------------------------------------------------------------------ models
def _train_dense(name, epochs, seed, out, dataset):
    model, _, _ = harness.train_baseline(name, epochs=epochs, seed=seed, out_dir=out, verbose=False, dataset=dataset)
    return model.eval()


def _finetune(model, train_x, train_y, epochs, seed, lr):
    from .. import data, optim, train
    from .. import functional as F
    loader = data.DataLoader(train_x, train_y, batch_size=128, shuffle=True, seed=seed)
    train.fit(model, loader, F.cross_entropy, optim.SGD(model.parameters(), lr=lr, momentum=0.9), epochs,
              verbose=False)
    return model.eval()


def _pruned_12x(dense, train_x, train_y, seed, lr, epochs):
    import copy
    from .. import prune
    model = copy.deepcopy(dense)
    prune.magnitude(model, amount=1 - 1 / 12, scope="global")
    return _finetune(model, train_x, train_y, epochs, seed, lr)


def _filter_pruned(dense, train_x, train_y, seed, lr, epochs, input_shape):
    import copy
    from .. import nn, prune
    model = copy.deepcopy(dense)
    names = [n for n, p in model.named_parameters() if n.endswith("weight") and p.ndim in (2, 4)]
    prune.magnitude(model, amount=0.5, granularity="filter", params=names[:-1])
    model = _finetune(model, train_x, train_y, epochs, seed, lr) if epochs else model
    smaller = prune.remove_filters(model, input_shape)
    prune.remove(smaller)
    assert isinstance(smaller, nn.Sequential)
    return smaller.eval()


def _torch_twin(model):
    """A torch.nn.Sequential with the same (effective) weights, or None if a layer has no twin."""
    import torch
    from .. import nn
    from ..cost import effective_weight
    layers = []
    for m in model:
        if isinstance(m, nn.Linear):
            t = torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        elif isinstance(m, nn.Conv2d):
            t = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                bias=m.bias is not None)
        elif isinstance(m, nn.ReLU):
            layers.append(torch.nn.ReLU())
            continue
        elif isinstance(m, nn.Hardtanh):
            layers.append(torch.nn.Hardtanh(m.min_val, m.max_val))
            continue
        elif isinstance(m, nn.Flatten):
            layers.append(torch.nn.Flatten())
            continue
        elif isinstance(m, nn.MaxPool2d):
            layers.append(torch.nn.MaxPool2d(m.kernel_size, m.stride, m.padding))
            continue
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            cls = torch.nn.BatchNorm1d if isinstance(m, nn.BatchNorm1d) else torch.nn.BatchNorm2d
            t = cls(m.num_features, eps=m.eps)
            with torch.no_grad():
                t.weight.copy_(torch.from_numpy(np.asarray(m.gamma.data)))
                t.bias.copy_(torch.from_numpy(np.asarray(m.beta.data)))
                t.running_mean.copy_(torch.from_numpy(np.asarray(m.running_mean, dtype=np.float32)))
                t.running_var.copy_(torch.from_numpy(np.asarray(m.running_var, dtype=np.float32)))
            layers.append(t.eval())
            continue
        else:
            return None
        with torch.no_grad():
            t.weight.copy_(torch.from_numpy(np.ascontiguousarray(effective_weight(m), dtype=np.float32)))
            if m.bias is not None:
                t.bias.copy_(torch.from_numpy(np.asarray(m.bias.data, dtype=np.float32)))
        layers.append(t)
    return torch.nn.Sequential(*layers).eval()


def _torch_rows(model):
    """(name, callable(images, batch) -> scores) for torch fp32 and dynamic int8, or [] without torch."""
    try:
        import torch
    except ImportError:
        return []
    twin = _torch_twin(model)
    if twin is None:
        return []
    rows = [("torch fp32", twin)]
    try:
        qd = torch.ao.quantization.quantize_dynamic(twin, {torch.nn.Linear}, dtype=torch.qint8)
        rows.append(("torch dynamic int8", qd))
    except (RuntimeError, AttributeError) as exc:        # no quantized engine on this build
        print(f"torch dynamic int8 unavailable: {exc}")

    def runner(tm):
        def fn(x, batch):
            out = []
            with torch.inference_mode():
                for i in range(0, len(x), batch):
                    out.append(tm(torch.from_numpy(x[i:i + batch])).numpy())
            return np.concatenate(out)
        return fn
    return [(name, runner(tm)) for name, tm in rows]


# ------------------------------------------------------------------ the command
def run(args) -> int:
    """Build the rows, time them at batch 1000 and 1, print the table and the profiles."""
    from .. import bnn, cost, kernels, metrics, quant

    quick = harness.is_quick(args)
    out = harness.run_dir(args.out)
    harness.quick_banner("bench inference", quick)
    threads = args.threads if args.threads is not None else kernels.default_threads()
    thread_note = _set_threads(threads)
    epochs = args.epochs if args.epochs is not None else (harness.QUICK_EPOCHS if quick else 3)
    dataset = harness.load_dataset(quick)
    (train_x, train_y), (test_x, test_y) = dataset
    x = harness.images_to_float(test_x)
    y = np.asarray(test_y)
    input_shape = (1, 1, 28, 28)
    info = kernels.info()
    flags = [k for k, v in info["cpu"].items() if v]
    print(f"bench inference --model {args.model}: {len(x)} test images, {threads} threads ({thread_note}); "
          f"kernels: csr {info['csr_matmul']}, int8 {info['gemm_int8']}, xnor {info['xnor_gemm']}; "
          f"CPU flags: {' '.join(flags)}")

    rows = []        # (name, callable(images, batch) -> scores, module or None)
    t0 = time.perf_counter()
    if args.model == "bnn-mlp":
        hidden = (128, 128) if quick else (1024, 1024, 1024)
        floatnet = bnn.float_mlp(hidden, seed=args.seed)
        bnet = bnn.bnn_mlp(hidden, seed=args.seed)
        for m in (floatnet, bnet):
            bnn.train_bnn(m, (train_x, train_y), epochs, seed=args.seed, verbose=False)
            m.eval()
        packed = bnn.pack(bnet, threads=threads)
        packed8 = bnn.pack(bnet, threads=threads, first_layer="int8")
        ours = [("fp32 (float twin)", floatnet), ("BNN float sign path", bnet), ("packed BNN", packed),
                ("packed, int8 1st layer", packed8)]
        reference = floatnet
    else:
        dense = _train_dense(args.model, epochs, args.seed, out, dataset)
        lr = 0.01
        ft = 1
        pruned = _pruned_12x(dense, train_x, train_y, args.seed, lr, ft)
        from .. import prune
        filt = _filter_pruned(dense, train_x, train_y, args.seed, lr, ft, input_shape)
        calib = harness.images_to_float(train_x[:512])
        q = quant.ptq(dense, "int8", 8, 8, calib, pow2_scale=True)
        ours = [("fp32", dense), ("12x pruned, CSR", prune.to_sparse(pruned, threads=threads)),
                ("filter-pruned, dense", filt), ("int8 (quant.convert)", quant.convert(q, threads=threads))]
        reference = dense
    print(f"models trained and lowered in {time.perf_counter() - t0:.0f} s")
    for name, m in ours:
        rows.append((name, (lambda xs, b, m=m: _forward_all(m, xs, b)), m))
    if not args.no_torch:
        for name, fn in _torch_rows(reference):
            rows.append((name, fn, None))

    n1 = min(args.batch1_images, len(x))
    # Round-robin: repeat r times every row once, so that a burst of load from other
    # processes hits all rows alike; each row's figure is the median of its r passes.
    big = interleaved_times([lambda fn=fn: fn(x, 1000) for _, fn, _ in rows], args.repeat)
    one = interleaved_times([lambda fn=fn: fn(x[:n1], 1) for _, fn, _ in rows], max(1, args.repeat // 2))
    table = []
    for (name, fn, module), (t_big, scores), (t_one, _) in zip(rows, big, one):
        r = {"row": name, "ms_per_10k": 1e3 * t_big * 10_000 / len(x),
             "ms_per_10k_batch1": 1e3 * t_one * 10_000 / n1,
             "top1": float(metrics.accuracy(scores, y)), "_pred": scores.argmax(axis=1)}
        if module is not None:
            r["bytes"] = int(cost.model_bytes(module))
            r["energy_uj"] = cost.inference_energy(module, input_shape).total_pj * 1e-6
        table.append(r)
    if args.model == "bnn-mlp":
        preds = {r["row"]: r.pop("_pred") for r in table if "_pred" in r}
        same = int(np.sum(preds["packed, int8 1st layer"] == preds["BNN float sign path"]))
        exact = bool(np.array_equal(preds["packed BNN"], preds["BNN float sign path"]))
        print(f"packed BNN predictions equal the float sign path: {exact}; with the int8 first layer "
              f"{same} of {len(x)} equal")
    for r in table:
        r.pop("_pred", None)
    base = table[0]
    for r in table:
        r["speedup"] = base["ms_per_10k"] / r["ms_per_10k"]
        r["speedup_batch1"] = base["ms_per_10k_batch1"] / r["ms_per_10k_batch1"]
    print("\n(the machine may be shared: timings are noisy; ratios come from one run, median of "
          f"{args.repeat} repeats)")
    print(format_table(table))

    profiles = {}
    if not args.no_profile:
        print("\nwhat limits each row (cProfile of one batch-1000 pass; own time of the top functions)")
        for name, fn, module in rows:
            if module is None:
                continue
            top, total = profile_model(lambda: fn(x, 1000))
            profiles[name] = [{"seconds": t, "share": s, "function": f} for t, s, f in top]
            print(f"  {name} ({1e3 * total:.0f} ms): " + "; ".join(f"{f} {100 * s:.0f}%" for t, s, f in top))
    result = {"model": args.model, "threads": threads, "n_test": len(x), "quick": quick, "cpu": flags,
              "kernels": {k: info[k] for k in ("csr_matmul", "gemm_int8", "xnor_gemm")}, "rows": table,
              "profiles": profiles}
    path = Path(args.json) if args.json else out / f"results_{args.model}.json"
    harness.write_json(path, result)
    print(f"\nwrote {path}")
    return 0


def format_table(rows) -> str:
    """The benchmark table as fixed-width text."""
    head = (f"{'row':<24}{'ms/10k':>9}{'speedup':>9}{'top-1':>8}{'bytes':>11}{'uJ/img':>9}"
            f"{'ms/10k b=1':>12}{'speedup':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        b = f"{r['bytes']:,}" if "bytes" in r else "-"
        e = f"{r['energy_uj']:.2f}" if "energy_uj" in r else "-"
        lines.append(f"{r['row']:<24}{r['ms_per_10k']:>9.1f}{r['speedup']:>8.2f}x{100 * r['top1']:>7.2f}%{b:>11}"
                     f"{e:>9}{r['ms_per_10k_batch1']:>12.0f}{r['speedup_batch1']:>8.2f}x")
    return "\n".join(lines)
