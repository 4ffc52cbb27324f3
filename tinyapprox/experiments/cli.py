"""The ``tinyapprox`` command.

    tinyapprox compress     train, prune iteratively to 12x, report (the main job)
    tinyapprox train        train LeNet-300-100 or LeNet-5 on the bundled Fashion-MNIST
    tinyapprox quantize     post-training quantization / QAT and their costs
    tinyapprox binarize     binarized networks and XNOR inference
    tinyapprox hogwild      lock-free parallel SGD and low-precision training
    tinyapprox bench        autograd / training / kernel / inference benchmarks (ratios, same run)
    tinyapprox info         versions and which kernel backend is live
    tinyapprox demo         a tiny graph and its gradients
"""
from __future__ import annotations

import argparse
import json
import sys

EXPERIMENTS = {
    "compress": "train, prune iteratively to a target compression, report",
    "quantize": "quantize a trained model (PTQ / QAT) and measure it",
    "binarize": "train a binarized network and run it on the XNOR kernel",
    "hogwild": "Hogwild! parallel SGD and low-precision training",
}


def _experiment(name: str):
    """The module of an experiment command (``add_arguments``, ``run``), imported only when it runs."""
    if name == "compress":
        from . import compress as module
    elif name == "quantize":
        from . import quantize as module
    elif name == "binarize":
        from . import binarize as module
    elif name == "hogwild":
        from . import hogwild as module
    else:
        raise ValueError(f"tinyapprox: unknown experiment {name!r}; expected one of {sorted(EXPERIMENTS)}")
    return module


def _demo(args) -> int:
    import numpy as np

    import tinyapprox as ta
    from tinyapprox import functional as F

    a = ta.tensor(np.array([1.0, -2.0, 3.0, 0.5], dtype=np.float32), requires_grad=True)
    b = ta.tensor(np.array([0.5, 1.0, -1.0, 2.0], dtype=np.float32), requires_grad=True)
    c = ta.tensor(np.array([0.1, 0.2, 0.3, -2.0], dtype=np.float32), requires_grad=True)
    y = F.relu(a * b + c).sum()
    y.backward()
    print("y = sum(relu(a * b + c))")
    for name, t in (("a", a), ("b", b), ("c", c)):
        print(f"{name} = {t.data}   dy/d{name} = {t.grad}")
    print(f"y = {y.item():.4f}")
    return 0


def _train(args) -> int:
    import numpy as np

    from tinyapprox import data, models, optim, train
    from tinyapprox import functional as F
    from tinyapprox.experiments import harness

    quick = harness.is_quick(args)
    out = harness.run_dir(args.out)
    harness.quick_banner("train", quick)
    (train_x, train_y), (test_x, test_y) = harness.load_dataset(quick)
    model = models.get(args.model, seed=args.seed)
    recipe = harness.RECIPES[args.model]
    lr = args.lr if args.lr is not None else recipe["lr"]
    epochs = harness.resolve_epochs(args.epochs, recipe["epochs"], quick)
    loader = data.DataLoader(train_x, train_y, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    opt = optim.SGD(model.parameters(), lr=lr, momentum=args.momentum)
    print(f"training {args.model} on Fashion-MNIST ({len(train_x)} images): {epochs} epochs, SGD lr {lr} "
          f"momentum {args.momentum}, batch {args.batch_size}, seed {args.seed}")
    ckpt = out / "checkpoint.npz" if args.checkpoint else None
    history = train.fit(model, loader, F.cross_entropy, opt, epochs, val=(test_x, test_y),
                        checkpoint=ckpt, resume=args.checkpoint)
    result = train.evaluate(model, test_x, test_y)
    train.save_model(model, out / "model.npz")
    (out / "history.json").write_text(history.to_json())
    harness.plot_history(history, out / "training_curve.png", title=f"{args.model} on Fashion-MNIST")
    seconds = np.median(history["seconds"]) if len(history) else float("nan")
    print(f"test top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  loss {result['loss']:.4f}  "
          f"median {seconds:.2f} s/epoch")
    print(f"wrote {out / 'model.npz'}, {out / 'history.json'}, {out / 'training_curve.png'}")
    return 0


def _info(args) -> int:
    import numpy as np

    import tinyapprox
    from tinyapprox import kernels
    from tinyapprox.experiments.harness import to_jsonable

    print(f"tinyapprox {tinyapprox.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
    print(json.dumps(to_jsonable(kernels.info()), indent=2))
    return 0


def _bench(args) -> int:
    if args.what == "inference":
        from tinyapprox.experiments import bench_inference

        return bench_inference.run(args)
    from tinyapprox.experiments import bench, harness

    result = bench.run(args.what, quick=args.quick, threads=args.threads)
    if args.json:
        harness.write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def build_parser(argv=None) -> argparse.ArgumentParser:
    from tinyapprox.experiments import harness

    parser = argparse.ArgumentParser(prog="tinyapprox", description="Approximate computing for deep learning, "
                                     "taught by working code.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("demo", help="a tiny graph and its gradients").set_defaults(func=_demo)
    sub.add_parser("info", help="versions and the live kernel backend").set_defaults(func=_info)

    p = sub.add_parser("train", help="train a model on the bundled Fashion-MNIST")
    p.add_argument("--model", default="lenet-300-100", choices=["lenet-300-100", "lenet5", "small-convnet"])
    p.add_argument("--epochs", type=int, default=None, help="default: the model's recipe (10 for LeNet-300-100)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", action="store_true", help="checkpoint every epoch and resume if one exists")
    harness.add_run_options(p, "runs/train")
    p.set_defaults(func=_train)

    p = sub.add_parser("bench", help="benchmarks printing ratios against a baseline from the same run")
    p.add_argument("what", choices=["autograd", "training", "kernels", "inference", "all"],
                   help="inference: every lowered model of --model end to end (see experiments/bench_inference)")
    if "inference" in (argv or []):
        from tinyapprox.experiments import bench_inference

        bench_inference.add_arguments(p)
    else:
        harness.add_quick_option(p, "smaller problems and fewer repeats: a smoke run; its figures are not meaningful")
        p.add_argument("--threads", default=None,
                       help="kernels: threads for the kernels, their peers and BLAS (default 1; "
                            "a list like 1,2 measures each and the scaling); ignored by the autograd and "
                            "training benchmarks, which run with the BLAS threads of the environment")
        p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.set_defaults(func=_bench)

    requested = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, help_text in EXPERIMENTS.items():
        p = sub.add_parser(name, help=help_text)
        if name == requested:  # import only the experiment that runs
            mod = _experiment(name)
            mod.add_arguments(p)
            p.set_defaults(func=mod.run)
    return parser


def tune_allocator() -> bool:
    """Ask glibc to keep freed training buffers mapped instead of returning them to the OS.

    Every training step frees and re-allocates tens of MB of temporaries (im2col patches,
    gradients). By default glibc unmaps them and the next step page-faults them back in
    (thousands of faults, ~17 ms per LeNet-5 step). Raising the mmap and trim thresholds
    keeps them. Process-wide, so only the command-line tool does it; Linux/glibc only.
    Returns whether the setting was applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 512 << 20))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    tune_allocator()
    args = build_parser(argv).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
