"""What every ``tinyapprox`` command shares, each written once.

* the run directory (``run_dir``) and the options every command takes
  (``add_run_options``: ``--out``, ``--quick``; ``parallel.add_executor_options`` adds
  ``--workers`` and ``--dask`` to the commands with sweeps);
* quick mode: ``QUICK_TRAIN_IMAGES`` training images, ``QUICK_TEST_IMAGES`` test images and
  ``QUICK_EPOCHS`` epochs, the same in every command, announced by ``quick_banner``:
  a smoke run whose figures are not meaningful (though large enough that comparisons point
  the right way: a baseline trained two epochs on a few thousand images is not at chance);
* the dataset (``load_dataset``) and the one uint8 -> float32 image scaling
  (``data.images_to_float``, re-exported here as ``images_to_float``);
* the training recipes (``RECIPES``), ``resolve_epochs`` and ``train_baseline``;
* wall-clock timing: ``median_time`` (and ``median_wall_cpu`` when CPU time is wanted too);
* JSON of NumPy values (``to_jsonable``, ``write_json``);
* plots: ``pyplot`` (the only place that selects the non-interactive backend),
  ``save_plot`` and ``plot_history``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .. import data, models, optim, train
from .. import functional as F
from ..data import images_to_float
from ..fileio import atomic_write_json

__all__ = ["QUICK_TRAIN_IMAGES", "QUICK_TEST_IMAGES", "QUICK_EPOCHS", "RECIPES", "add_quick_option", "add_run_options", "add_dataset_options",
           "select_dataset", "dataset_choice", "load_data", "format_seconds", "is_quick",
           "quick_banner", "run_dir", "resolve_epochs", "load_dataset", "images_to_float", "train_baseline",
           "median_time", "median_wall_cpu", "to_jsonable", "write_json", "pyplot", "save_plot", "plot_history",
           "load_average"]

#: Quick mode (``--quick`` or ``TINYAPPROX_QUICK=1``), the same in every command: the first
#: 4,000 training and 1,000 test images of Fashion-MNIST, 2 epochs wherever a command trains
#: (one epoch on 2,000 images left baselines so undertrained that fine-tuned variants
#: "beat" them, telling the opposite of the full run).
QUICK_TRAIN_IMAGES = 4000
QUICK_TEST_IMAGES = 1000
QUICK_EPOCHS = 2

QUICK_HELP = (f"smoke run: {QUICK_TRAIN_IMAGES:,} training / {QUICK_TEST_IMAGES:,} test images, "
              f"{QUICK_EPOCHS} epochs, smaller sweeps; its figures are not meaningful")

#: The standard recipe per model: SGD with momentum, cross-entropy, on Fashion-MNIST.
RECIPES = {
    "lenet-300-100": {"lr": 0.1, "momentum": 0.9, "batch_size": 128, "epochs": 10},
    "lenet5": {"lr": 0.05, "momentum": 0.9, "batch_size": 128, "epochs": 3},
    "small-convnet": {"lr": 0.05, "momentum": 0.9, "batch_size": 128, "epochs": 3},
}


# ------------------------------------------------------------------ options, quick mode, run directory
def add_quick_option(parser, help: str = QUICK_HELP) -> None:
    """Add ``--quick`` (a smoke run; see ``QUICK_HELP``) to a command's parser."""
    parser.add_argument("--quick", action="store_true", help=help)


#: The dataset every command uses: the environment carries the choice, so worker processes
#: of a sweep (which start afresh) load the same files as the command that started them.
#: Dask workers on other machines do not inherit it: start them with the same variables and
#: the same files at the same path.
DATASET_ENV, DATA_DIR_ENV = "TINYAPPROX_DATASET", "TINYAPPROX_DATASET_DIR"


def add_run_options(parser, out: str) -> None:
    """Add ``--quick``, ``--out`` (default ``out``), ``--dataset`` and ``--data-dir`` to a command's parser."""
    add_quick_option(parser)
    parser.add_argument("--out", default=out, help=f"output directory (default {out})")
    add_dataset_options(parser)


def add_dataset_options(parser) -> None:
    """Add ``--dataset fashion-mnist|mnist`` and ``--data-dir DIR`` (where the IDX files are)."""
    parser.add_argument("--dataset", default=None, choices=sorted(data.DATASETS),
                        help="fashion-mnist (bundled, the default) or mnist (give its four IDX files with "
                             "--data-dir, e.g. to compare with Han et al.'s table)")
    parser.add_argument("--data-dir", default=None,
                        help="directory holding the dataset's four IDX files (.gz or not)")


def select_dataset(name=None, path=None) -> tuple:
    """Make ``name`` (default Fashion-MNIST) at ``path`` the dataset of this run and of its workers.

    The files are looked up at once, so a missing dataset fails before any work with the
    loader's error, which names the files and where it looked. Returns ``(name, path)``.
    """
    name = name or "fashion-mnist"
    data.data_dir(name, path)
    os.environ[DATASET_ENV] = name
    if path is not None:
        os.environ[DATA_DIR_ENV] = str(path)
    else:
        os.environ.pop(DATA_DIR_ENV, None)
    return name, path


def dataset_choice() -> tuple:
    """``(name, path)`` of the run's dataset (``select_dataset``; default Fashion-MNIST, bundled)."""
    return os.environ.get(DATASET_ENV) or "fashion-mnist", os.environ.get(DATA_DIR_ENV) or None


def load_data(limit=None):
    """The run's dataset (``dataset_choice``) as ``((train_x, train_y), (test_x, test_y))``."""
    name, path = dataset_choice()
    return data.load(name, path=path, limit=limit)


def is_quick(args) -> bool:
    """Quick mode: ``--quick`` on the command line or ``TINYAPPROX_QUICK=1`` in the environment."""
    return bool(getattr(args, "quick", False)) or os.environ.get("TINYAPPROX_QUICK") == "1"


def quick_banner(command: str, quick: bool) -> None:
    """Print, in quick mode, that the run is a smoke run and its figures mean nothing."""
    if quick:
        print(f"[{command}] QUICK MODE: {QUICK_TRAIN_IMAGES:,} training / {QUICK_TEST_IMAGES:,} test images, "
              f"{QUICK_EPOCHS} epochs; a smoke run - the figures below are not meaningful", flush=True)


def run_dir(path) -> Path:
    """The output directory of a run, created if needed."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def resolve_epochs(given, default: int, quick: bool) -> int:
    """Epochs of a run: ``given`` (the ``--epochs`` option) if set, else ``QUICK_EPOCHS`` in quick
    mode, else ``default`` (the model's recipe or the command's documented default)."""
    if given is not None:
        if given < 0:
            raise ValueError(f"epochs: expected --epochs >= 0, got {given}")
        return int(given)
    return QUICK_EPOCHS if quick else int(default)


def load_dataset(quick: bool = False, limit=None):
    """The run's dataset (Fashion-MNIST unless ``--dataset``) as ``((train_x, train_y), (test_x,
    test_y))``, uint8 images (N, 28, 28).

    Quick mode keeps the first ``QUICK_TRAIN_IMAGES`` / ``QUICK_TEST_IMAGES``; otherwise
    ``limit`` (None: all) applies to each split.
    """
    if quick:
        (tx, ty), (vx, vy) = load_data(limit=QUICK_TRAIN_IMAGES)
        return (tx, ty), (vx[:QUICK_TEST_IMAGES], vy[:QUICK_TEST_IMAGES])
    return load_data(limit=limit)


# ------------------------------------------------------------------ the standard recipe
def train_baseline(model_name: str = "lenet-300-100", epochs=None, seed: int = 0, lr=None, batch_size=None,
                   out_dir=None, limit=None, verbose: bool = True, dataset=None):
    """Train a model with its recipe (SGD + momentum, cross-entropy) on the run's dataset.

    ``dataset`` is ``((train_x, train_y), (test_x, test_y))``; by default Fashion-MNIST with
    ``limit`` images per split. When ``out_dir`` is given, the trained weights are cached
    there as ``dense_<model>_e<epochs>_s<seed>_lr<lr>_b<batch_size>_n<training images>.npz``
    (``dense_mnist_<model>...`` for MNIST)
    and reused by later calls with the same settings.
    Returns ``(model, history or None when loaded from the cache, test metrics)``.
    """
    if model_name not in RECIPES:
        raise ValueError(f"train_baseline: no recipe for {model_name!r}; expected one of {sorted(RECIPES)}")
    recipe = RECIPES[model_name]
    epochs = recipe["epochs"] if epochs is None else epochs
    lr = recipe["lr"] if lr is None else lr
    batch_size = recipe["batch_size"] if batch_size is None else batch_size
    (train_x, train_y), (test_x, test_y) = dataset if dataset is not None else load_data(limit=limit)
    model = models.get(model_name, seed=seed)
    cache = None
    if out_dir is not None:
        name = dataset_choice()[0]
        tag = "" if name == "fashion-mnist" else f"{name}_"
        cache = Path(out_dir) / f"dense_{tag}{model_name}_e{epochs}_s{seed}_lr{lr}_b{batch_size}_n{len(train_x)}.npz"
        if cache.exists():
            train.load_model(model, cache)
            return model, None, train.evaluate(model, test_x, test_y)
    loader = data.DataLoader(train_x, train_y, batch_size=batch_size, shuffle=True, seed=seed)
    opt = optim.SGD(model.parameters(), lr=lr, momentum=recipe["momentum"])
    history = train.fit(model, loader, F.cross_entropy, opt, epochs, val=(test_x, test_y), verbose=verbose)
    if cache is not None:
        train.save_model(model, cache)
    return model, history, train.evaluate(model, test_x, test_y)


# ------------------------------------------------------------------ timing
def _samples(fn, repeat, number, warmup, budget):
    """Per-call (wall, cpu) seconds of ``repeat`` rounds of ``number`` calls, after ``warmup`` calls.

    With ``budget`` (seconds), ``repeat`` is raised so the rounds take about that long
    (from the first warm-up call; at most 200 rounds).
    """
    first = None
    for i in range(warmup):
        t0 = time.perf_counter()
        fn()
        if i == 0:
            first = time.perf_counter() - t0
    if budget is not None and first is not None:
        repeat = int(min(200, max(repeat, budget / max(first * number, 1e-9))))
    wall, cpu = [], []
    for _ in range(max(1, repeat)):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(number):
            fn()
        wall.append((time.perf_counter() - t0) / number)
        cpu.append((time.process_time() - c0) / number)
    return wall, cpu


def format_seconds(seconds: float) -> str:
    """A duration with a unit that keeps three significant digits: "412 us", "3.1 ms", "2.05 s"."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} us"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def median_time(fn, repeat: int = 5, number: int = 1, warmup: int = 1, budget=None) -> float:
    """Median wall-clock seconds per call of ``fn()`` over ``repeat`` rounds of ``number`` calls,
    after ``warmup`` untimed calls (``budget``: see ``median_wall_cpu``)."""
    return float(np.median(_samples(fn, repeat, number, warmup, budget)[0]))


def median_wall_cpu(fn, repeat: int = 5, number: int = 1, warmup: int = 1, budget=None):
    """(median wall seconds, median CPU seconds) per call of ``fn()``, from the same calls.

    CPU time is the steadier figure on a machine shared with other work. ``budget``
    (seconds) raises ``repeat`` so the timed rounds last about that long.
    """
    wall, cpu = _samples(fn, repeat, number, max(warmup, 1 if budget else warmup), budget)
    return float(np.median(wall)), float(np.median(cpu))


def load_average() -> float:
    """The 1-minute load average (NaN where the platform has none), printed next to timings."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# ------------------------------------------------------------------ JSON
def to_jsonable(obj):
    """``obj`` with NumPy scalars and arrays turned into Python numbers and lists (recursively);
    any other object that JSON cannot hold becomes its ``str``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def write_json(path, obj) -> Path:
    """Write ``obj`` (NumPy values allowed, see ``to_jsonable``) as indented JSON, atomically
    (``fileio.atomic_write_json``); returns the path."""
    return atomic_write_json(path, to_jsonable(obj))


# ------------------------------------------------------------------ plots
def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (files only, no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_plot(fig, path, dpi: int = 120, tight: bool = True) -> Path:
    """Save ``fig`` as a PNG at ``path`` and close it; returns the path."""
    plt = pyplot()
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)


def plot_history(history, path, title: str = "training"):
    """Write a PNG with training loss and top-1 (train and validation) per epoch of a ``train.History``."""
    plt = pyplot()
    ep = history["epoch"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(ep, history["loss"], "o-", label="train")
    if history.last("val_loss") is not None:
        ax1.plot(ep, history["val_loss"], "s-", label="validation")
    ax1.set_xlabel("epoch"), ax1.set_ylabel("loss"), ax1.legend()
    ax2.plot(ep, history["top1"], "o-", label="train top-1")
    if history.last("val_top1") is not None:
        ax2.plot(ep, history["val_top1"], "s-", label="validation top-1")
    ax2.set_xlabel("epoch"), ax2.set_ylabel("accuracy"), ax2.legend()
    fig.suptitle(title)
    return save_plot(fig, path, dpi=110)
