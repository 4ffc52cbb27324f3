"""The ``tinyapprox`` command.

    tinyapprox compress     train, prune iteratively to 12x, report (the main job)
    tinyapprox train        train LeNet-300-100 or LeNet-5 on the bundled Fashion-MNIST
    tinyapprox quantize     post-training quantization / QAT and their costs
    tinyapprox binarize     binarized networks and XNOR inference
    tinyapprox hogwild      lock-free parallel SGD and low-precision training
    tinyapprox bench        autograd / training / kernel / inference benchmarks (ratios, same run)
    tinyapprox course       release the exercises to students (release OUT) and grade them (grade DIR)
    tinyapprox info         versions and which kernel backend is live
    tinyapprox demo         a tiny graph and its gradients
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from ..fileio import atomic_write_text

EXPERIMENTS = {
    "compress": "train, prune iteratively to a target compression, report",
    "quantize": "quantize a trained model (PTQ / QAT) and measure it",
    "binarize": "train a binarized network and run it on the XNOR kernel",
    "hogwild": "Hogwild! parallel SGD and low-precision training",
    "course": "release the student version of the exercises, or grade a copy",
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
    elif name == "course":
        from . import course as module
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
    ckpt = out / "checkpoint.npz" if (args.checkpoint or args.resume) else None
    config = {"model": args.model, "seed": args.seed, "lr": lr, "momentum": args.momentum,
              "batch_size": args.batch_size, "epochs": epochs, "images": len(train_x)}
    history = train.fit(model, loader, F.cross_entropy, opt, epochs, val=(test_x, test_y),
                        checkpoint=ckpt, resume=ckpt is not None, config=config, accept_config=args.resume)
    result = train.evaluate(model, test_x, test_y)
    train.save_model(model, out / "model.npz")
    atomic_write_text(out / "history.json", history.to_json())
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


class UsageError(Exception):
    """A bad command line: ``option`` (e.g. ``--seed``) and what was expected."""

    def __init__(self, option, message):
        super().__init__(f"{option}: {message}")
        self.option = option


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The ``tinyapprox`` argument parser, one subcommand per experiment.

    ``argv`` (the command line to be parsed) says which subcommand will run: only that
    experiment's module is imported and given its options, so ``tinyapprox info`` stays fast;
    ``bench inference`` gets its own options instead of the other benchmarks'."""
    from tinyapprox.experiments import harness

    parser = _Parser(prog="tinyapprox", description="Approximate computing for deep learning, "
                     "taught by working code.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("demo", help="a tiny graph and its gradients").set_defaults(func=_demo)
    sub.add_parser("info", help="versions and the live kernel backend").set_defaults(func=_info)

    p = sub.add_parser("train", help="train a model on the bundled Fashion-MNIST")
    p.add_argument("--model", default="lenet-300-100", choices=["lenet-300-100", "lenet5", "small-convnet"])
    p.add_argument("--epochs", type=int, default=None, help="default: the model's recipe (10 for LeNet-300-100)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", action="store_true",
                   help="checkpoint every epoch; resume a checkpoint of the same configuration")
    p.add_argument("--resume", action="store_true",
                   help="like --checkpoint, and resume its checkpoint even if configured differently")
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


# ------------------------------------------------------------------ checking the command line
def _int_in(low, high=None):
    def check(option, v):
        if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
            expected = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise UsageError(option, f"expected an integer {expected}, got {v!r}")
    return check


def _positive_float(option, v):
    if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 < v <= 1e6):
        raise UsageError(option, f"expected a number in (0, 1e6], got {v!r}")


def _momentum(option, v):
    if not (isinstance(v, (int, float)) and 0 <= v < 1):
        raise UsageError(option, f"expected a number in [0, 1), got {v!r}")


def _target(option, v):
    if not (isinstance(v, (int, float)) and math.isfinite(v) and 1 < v <= 10**6):
        raise UsageError(option, f"expected a finite compression ratio > 1 (times fewer parameters), got {v!r}")


def _int_list(option, v):
    try:
        items = [int(t) for t in str(v).split(",")]
    except ValueError:
        items = []
    if not items or any(not 1 <= i <= 65536 for i in items):
        raise UsageError(option, f"expected comma-separated integers in [1, 65536] (e.g. 1024,1024), got {v!r}")


def _threads(option, v):
    """--threads: an int in [1, 1024], or (bench kernels) a comma-separated list of them."""
    try:
        items = [int(t) for t in str(v).split(",")] if isinstance(v, str) else [v]
    except ValueError:
        items = []
    if not items or any(isinstance(i, bool) or not isinstance(i, int) or not 1 <= i <= 1024 for i in items):
        raise UsageError(option, f"expected an integer in [1, 1024] or a list like 1,2, got {v!r}")


def _out_dir(option, v):
    path = Path(v)
    if not str(v).strip():
        raise UsageError(option, "expected a directory, got an empty path")
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise UsageError(option, f"{p} is a file, expected a directory")
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(option, f"cannot write in {existing}")


def _out_file(option, v):
    path = Path(v)
    if not str(v).strip() or path.is_dir():
        raise UsageError(option, f"expected a file path, got {str(v)!r}" + (" (a directory)" if path.is_dir() else ""))
    _out_dir(option, path.parent if str(path.parent) else ".")


_SEED = _int_in(0, 2**32 - 1)

_EPOCHS = _int_in(0, 100_000)

#: Checks applied to every option of every command, by destination name, before anything runs.
#: The upper bounds are far beyond any sensible run; they turn a typo into one clear line
#: instead of a run that never ends or an allocation that cannot succeed.
CHECKS = {
    "epochs": _EPOCHS, "retrain_epochs": _EPOCHS, "qat_epochs": _EPOCHS, "finetune_epochs": _EPOCHS,
    "extra_epochs": _EPOCHS,
    "limit": _int_in(1, 2**31 - 1), "batch_size": _int_in(1, 2**31 - 1), "rounds": _int_in(1, 1000),
    "repeats": _int_in(1, 100_000), "threads": _threads, "calib": _int_in(1, 10**7),
    "workers": _int_in(1, 1024), "seed_workers": _int_in(1, 1024),
    "seed": _SEED, "seeds": _SEED,
    "lr": _positive_float, "retrain_lr": _positive_float, "lr_start": _positive_float, "lr_end": _positive_float,
    "stochastic_lr_scale": _positive_float,
    "momentum": _momentum, "target": _target,
    "bits": _int_in(1, 32), "act_bits": _int_in(1, 32), "exp_bits": _int_in(1, 8), "quant_bits": _int_in(1, 16),
    "hidden": _int_list, "gemm": _int_list,
    "out": _out_dir, "json": _out_file,
}


def check_args(args) -> None:
    """Raise ``UsageError`` naming the first option whose value cannot work (before any work starts)."""
    for dest, value in vars(args).items():
        check = CHECKS.get(dest)
        if check is None or value is None:
            continue
        option = "--" + dest.replace("_", "-")
        for v in (value if isinstance(value, list) else [value]):
            check(option, v)
    if getattr(args, "command", None) == "hogwild" and not args.lowprec and args.workers < 2:
        raise UsageError("--workers", f"expected >= 2 (one worker is the single-process baseline), got {args.workers}")
    if getattr(args, "command", None) == "quantize" and getattr(args, "scheme", None):
        from ..quant.fake import make_format

        for option, bits, role in (("--bits", args.bits, "weight"), ("--act-bits", args.act_bits, "act")):
            if bits is not None:
                try:
                    make_format(args.scheme, -1.0, 1.0, bits, role=role, exp_bits=args.exp_bits)
                except ValueError as exc:
                    raise UsageError(option, f"{exc} (scheme {args.scheme})") from None


def _one_line(exc) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def main(argv=None) -> int:
    """Run the command; every failure ends in one line on stderr.

    Exit status: 0 success, 2 a bad command line, input file or setting (the line names the
    option or the file), 130 interrupted (Ctrl-C), 1 an internal error (set
    ``TINYAPPROX_DEBUG=1`` for its traceback).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = "tinyapprox"
    import warnings

    # a diverging run is reported once, in one line, by fit's NonFiniteLossError
    warnings.filterwarnings("ignore", message="(overflow|invalid value|divide by zero) encountered",
                            category=RuntimeWarning)
    try:
        args = build_parser(argv).parse_args(argv)
        prog = f"tinyapprox {args.command}"
        check_args(args)
        if hasattr(args, "dataset"):
            from . import harness

            try:
                harness.select_dataset(args.dataset, args.data_dir)
            except (FileNotFoundError, ValueError) as exc:
                raise UsageError("--data-dir" if args.data_dir or args.dataset else "--dataset", _one_line(exc)) from None
        tune_allocator()
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as exc:
        if os.environ.get("TINYAPPROX_DEBUG") == "1":
            raise
        from ..train import CheckpointMismatchError

        if isinstance(exc, CheckpointMismatchError) and "--resume" not in argv:
            print(f"{prog}: error: {_one_line(exc)}; pass --resume to continue it anyway, or choose another --out",
                  file=sys.stderr)
        elif isinstance(exc, (ValueError, OSError, MemoryError, KeyError, ArithmeticError)):
            print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        else:
            print(f"{prog}: internal error: {type(exc).__name__}: {_one_line(exc)} "
                  "(set TINYAPPROX_DEBUG=1 for the traceback)", file=sys.stderr)
            return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
