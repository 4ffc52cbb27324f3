"""The training loop: ``fit``, ``evaluate``, ``predict``, checkpoints, and saved models.

``fit`` is deliberately plain — for each batch: forward, loss, zero the gradients,
backward, optimizer step — so a student can read what training is. Around it: a history
of per-epoch figures, a progress bar on a terminal (one line per epoch otherwise), a stop
with a clear message when the loss stops being finite, and an atomic checkpoint after
every epoch from which ``fit(..., resume=True)`` continues bit for bit.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from . import functional as F
from . import metrics
from .fileio import CorruptFileError, atomic_savez, read_npz
from .tensor import Tensor, no_grad


class History:
    """Per-epoch records (dicts) of a training run; ``history["val_top1"]`` is one column."""

    def __init__(self, epochs=None):
        self.epochs = list(epochs or [])
        self.config = None

    def __getitem__(self, key):
        return [e.get(key) for e in self.epochs]

    def __len__(self):
        return len(self.epochs)

    def last(self, key, default=None):
        return self.epochs[-1].get(key, default) if self.epochs else default

    def to_json(self) -> str:
        return json.dumps({"epochs": self.epochs}, indent=2)

    def __repr__(self):
        return f"History({len(self.epochs)} epochs, last={self.epochs[-1] if self.epochs else None})"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch and the step."""


class StateMismatchError(ValueError):
    """A readable model or checkpoint file that does not fit the model (keys, shapes, dtypes)."""


class CheckpointMismatchError(StateMismatchError):
    """A checkpoint was written by a run with another configuration (one-line message)."""


# ------------------------------------------------------------------- evaluation
def _batches(images, labels, batch_size):
    from .data import DataLoader

    if isinstance(images, DataLoader):
        return images
    if labels is None and isinstance(images, tuple):
        images, labels = images
    return DataLoader(images, labels, batch_size=batch_size, shuffle=False, seed=0)


def predict(model, images, batch_size: int = 1000) -> np.ndarray:
    """Logits (N, C) of ``model`` on ``images`` (uint8 images are scaled to [0, 1]), in eval mode."""
    loader = _batches(images, np.zeros(len(images), dtype=np.int64), batch_size)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            return np.concatenate([model(Tensor(x)).data for x, _ in loader], axis=0)
    finally:
        model.train(was_training)


def evaluate(model, images, labels=None, batch_size: int = 1000, loss_fn=F.cross_entropy) -> dict:
    """Loss, top-1 and top-5 accuracy of ``model`` on a dataset, in eval mode without a graph.

    ``images`` is an image array (with ``labels``), a tuple ``(images, labels)`` or a
    ``DataLoader``. Returns ``{"loss", "top1", "top5", "n"}`` (accuracies as fractions).
    """
    loader = _batches(images, labels, batch_size)
    was_training = model.training
    model.eval()
    total, loss_sum, hit1, hit5 = 0, 0.0, 0.0, 0.0
    try:
        with no_grad():
            for x, y in loader:
                logits = model(Tensor(x))
                n = len(y)
                loss_sum += float(loss_fn(logits, y).data) * n
                hit1 += metrics.topk_accuracy(logits.data, y, 1) * n
                hit5 += metrics.topk_accuracy(logits.data, y, min(5, logits.shape[1])) * n
                total += n
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate: the dataset is empty")
    return {"loss": loss_sum / total, "top1": hit1 / total, "top5": hit5 / total, "n": total}


# ---------------------------------------------------------------------- training
def _progress(epoch, epochs, step, steps, loss, started):
    width = 24
    done = int(width * step / max(steps, 1))
    rate = step / max(time.perf_counter() - started, 1e-9)
    sys.stdout.write(f"\repoch {epoch + 1}/{epochs} [{'#' * done}{'.' * (width - done)}] "
                     f"{step}/{steps} loss {loss:.4f} {rate:.0f} it/s")
    sys.stdout.flush()


def fit(model, loader, loss_fn, optimizer, epochs: int, val=None, scheduler=None, callbacks=(),
        verbose: bool = True, checkpoint=None, resume: bool = False, config=None,
        accept_config: bool = False) -> History:
    """Train ``model`` for ``epochs`` passes over ``loader``.

    Args:
        model: a ``Module`` mapping x (B, ...) float32 to logits (B, C).
        loader: a ``DataLoader`` yielding ``(x, y)``.
        loss_fn: ``loss_fn(logits, y) -> scalar Tensor`` (e.g. ``F.cross_entropy``).
        optimizer: an ``optim`` optimizer over ``model.parameters()``.
        epochs: total number of epochs (a resumed run continues up to this number).
        val: ``(images, labels)`` or a ``DataLoader`` evaluated after each epoch.
        scheduler: stepped once per epoch, after the epoch.
        callbacks: objects with optional ``on_step(model, step)`` (after each optimizer
            step; ``step`` counts from 1 over the whole run) and
            ``on_epoch_end(model, epoch, logs)``.
        verbose: progress bar on a terminal, one line per epoch otherwise; False: silent.
        checkpoint: path of an ``.npz`` written atomically after every epoch (model,
            optimizer, scheduler, loader position, random generators, history).
        resume: continue from ``checkpoint`` if it exists (saying so when ``verbose``).
        config: a JSON-able dict describing the run (model, seed, lr, batch size, epochs...),
            stored in every checkpoint and compared when resuming.
        accept_config: resume even when the checkpoint's ``config`` or loader seed differs
            (its optimizer settings then win); otherwise a difference raises
            ``CheckpointMismatchError``.

    Returns:
        ``History`` with, per epoch (top-1 by ``functional.topk_correct``'s tie rule, the same
        for training and validation): loss and top1 (training, measured on the fly with the
        weights of each step), val_loss, val_top1, val_top5 (when ``val``),
        lr, seconds.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite (names epoch and step).
        ValueError: epochs < 0, or a loader that yields no batch.
        CheckpointMismatchError: resuming a checkpoint of another configuration.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"fit: expected epochs to be an int >= 0, got {epochs!r}")
    if epochs > 0 and hasattr(loader, "__len__") and len(loader) == 0:
        raise ValueError("fit: the loader yields no batch (an empty dataset, or fewer samples than one batch "
                         "with drop_last); nothing to train on")
    history, start, step = History(), 0, 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        history, start, step = load_checkpoint(checkpoint, model, optimizer, scheduler, loader, config=config,
                                               accept_config=accept_config)
        if verbose:
            more = f"continuing to epoch {epochs}" if start < epochs else "nothing left to train"
            diff = config_differences(history.config, config) if config and history.config else []
            note = (f"; its settings differ ({'; '.join(diff)}) and its optimizer state is used" if diff else "")
            print(f"resumed from {checkpoint}: {start} epoch(s) done, {more}{note}", flush=True)
    interactive = verbose and sys.stdout.isatty()
    for epoch in range(start, epochs):
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        model.train()
        started = time.perf_counter()
        n_seen, loss_sum, hits = 0, 0.0, 0
        steps = len(loader)
        for i, (x, y) in enumerate(loader):
            logits = model(Tensor(x))
            loss = loss_fn(logits, y)
            value = float(loss.data)
            if not np.isfinite(value):
                raise NonFiniteLossError(f"fit: the loss became {value} at epoch {epoch + 1}, step {i + 1} "
                                         f"(global step {step + 1}); lower the learning rate or check the data")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            for cb in callbacks:
                if hasattr(cb, "on_step"):
                    cb.on_step(model, step)
            n = len(y)
            n_seen += n
            loss_sum += value * n
            if np.ndim(y) == 1:
                hits += int(np.count_nonzero(F.topk_correct(logits.data, y, 1)))
            if interactive and (i % 20 == 0 or i + 1 == steps):
                _progress(epoch, epochs, i + 1, steps, value, started)
        if n_seen == 0:
            raise ValueError(f"fit: the loader yielded no batch in epoch {epoch + 1}; nothing to train on")
        logs = {"epoch": epoch + 1, "loss": loss_sum / n_seen, "top1": hits / n_seen,
                "lr": float(getattr(optimizer, "lr", float("nan")))}
        logs["seconds"] = time.perf_counter() - started
        if val is not None:
            result = evaluate(model, val) if not isinstance(val, tuple) else evaluate(model, *val)
            logs.update(val_loss=result["loss"], val_top1=result["top1"], val_top5=result["top5"])
        if scheduler is not None:
            scheduler.step()
        history.epochs.append(logs)
        for cb in callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(model, epoch, logs)
        if verbose:
            if interactive:
                sys.stdout.write("\n")
            print(_epoch_line(logs, epochs), flush=True)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, scheduler, loader, history, epoch + 1, step, config=config)
    return history


def _epoch_line(logs, epochs):
    line = (f"epoch {logs['epoch']}/{epochs}  loss {logs['loss']:.4f}  top1 {logs['top1']:.4f}  "
            f"{logs['seconds']:.2f} s")
    if "val_top1" in logs:
        line += f"  val_loss {logs['val_loss']:.4f}  val_top1 {logs['val_top1']:.4f}  val_top5 {logs['val_top5']:.4f}"
    return line


# ------------------------------------------------------------ saving and resuming
def _pack(obj, arrays, prefix):
    """JSON-able structure with every ndarray replaced by a reference into ``arrays``."""
    if isinstance(obj, np.ndarray):
        key = f"{prefix}#{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_pack(k, arrays, prefix), _pack(v, arrays, prefix)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_pack(v, arrays, prefix) for v in obj], "tuple": isinstance(obj, tuple)}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _unpack(obj, arrays, depth=0):
    """Inverse of ``_pack``; raises ValueError on a structure ``_pack`` cannot have written."""
    if depth > 50:
        raise ValueError("nested too deeply")
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            key = obj["__array__"]
            if not isinstance(key, str) or key not in arrays:
                raise ValueError(f"refers to a missing array {key!r}")
            return np.array(arrays[key])
        if set(obj) == {"__dict__"} and isinstance(obj["__dict__"], list):
            out = {}
            for pair in obj["__dict__"]:
                if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], (str, int)):
                    raise ValueError("holds a malformed dict entry")
                out[pair[0]] = _unpack(pair[1], arrays, depth + 1)
            return out
        if set(obj) == {"__list__", "tuple"} and isinstance(obj["__list__"], list):
            items = [_unpack(v, arrays, depth + 1) for v in obj["__list__"]]
            return tuple(items) if obj["tuple"] is True else items
        raise ValueError(f"holds an unexpected entry with keys {sorted(obj)[:5]}")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ValueError(f"holds an unexpected {type(obj).__name__}")


def _generators(model):
    """Every ``np.random.Generator`` held by a module or a parameter transform, by name."""
    found = {}
    for mname, m in model.named_modules():
        holders = [(mname, m)] + [(f"{mname}.{pname}.t{i}", t) for pname, p in m._parameters.items()
                                  for i, t in enumerate(p.transforms)]
        for hname, holder in holders:
            for attr, value in vars(holder).items():
                if isinstance(value, np.random.Generator):
                    found[f"{hname}.{attr}"] = value
    return found


def save_checkpoint(path, model, optimizer, scheduler, loader, history, epoch, step, config=None):
    """Write everything needed to continue training bit for bit, atomically (``fileio.atomic_savez``).

    ``config`` (a JSON-able dict describing the run) is stored so that ``load_checkpoint``
    can refuse to continue a run configured differently.
    """
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    meta = {
        "epoch": epoch, "step": step, "history": history.epochs,
        "optimizer": _pack(optimizer.state_dict(), arrays, "optimizer"),
        "scheduler": _pack(scheduler.state_dict(), arrays, "scheduler") if scheduler is not None else None,
        "loader_seed": getattr(loader, "seed", None),
        "generators": {k: g.bit_generator.state for k, g in _generators(model).items()},
        "config": config,
    }
    arrays["meta"] = np.array(json.dumps(meta, default=_json_default))
    atomic_savez(path, arrays)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__}")


def config_differences(saved: dict, current: dict) -> list:
    """``["key: saved -> current", ...]`` for every key whose value differs (missing = None)."""
    keys = sorted(set(saved) | set(current))
    return [f"{k} {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


def _read_meta(path, arrays) -> dict:
    """The checked ``meta`` dict of a checkpoint (CorruptFileError naming the file otherwise)."""
    def bad(reason):
        return CorruptFileError(f"load_checkpoint: {path} has damaged metadata: {reason}")

    if "meta" not in arrays:
        raise CorruptFileError(f"load_checkpoint: {path} has no 'meta' entry; expected a file written by "
                               "save_checkpoint")
    raw = arrays.pop("meta")
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise bad(f"expected a text entry, got {raw.dtype} of shape {raw.shape}")
    try:
        meta = json.loads(str(raw))
    except (ValueError, RecursionError) as exc:
        raise bad(f"not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise bad("expected a JSON object")
    for key in ("epoch", "step"):
        v = meta.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise bad(f"{key} must be an int >= 0, got {v!r}")
    history = meta.get("history")
    if not isinstance(history, list) or not all(isinstance(e, dict) for e in history):
        raise bad("history must be a list of per-epoch records")
    if not isinstance(meta.get("generators", {}), dict) or not isinstance(meta.get("config") or {}, dict):
        raise bad("generators and config must be objects")
    if "optimizer" not in meta:
        raise bad("no optimizer state")
    return meta


def load_checkpoint(path, model, optimizer, scheduler=None, loader=None, config=None, accept_config=False):
    """Restore a checkpoint written by ``save_checkpoint``; returns (history, epoch, step).

    Every part (model arrays, optimizer and scheduler state, loader seed, random generator
    states, configuration) is checked before any is restored, so a failed load leaves the
    model, optimizer and scheduler untouched.

    Raises:
        CorruptFileError (a ValueError): the file is not a checkpoint or is damaged; names it.
        CheckpointMismatchError (a ValueError): ``config`` or the loader's seed differs from
            the stored one (unless ``accept_config``), or the model does not fit the arrays.
        ValueError: a state that does not fit the optimizer.
    """
    arrays = read_npz("load_checkpoint", path)
    meta = _read_meta(path, arrays)
    saved_config = meta.get("config")
    if config is not None and saved_config is not None and not accept_config:
        diff = config_differences(saved_config, config)
        if diff:
            raise CheckpointMismatchError(f"{path} was written by a run configured differently ({'; '.join(diff)})")
    if loader is not None and meta.get("loader_seed") is not None and hasattr(loader, "seed") and not accept_config:
        if loader.seed != meta["loader_seed"]:
            raise CheckpointMismatchError(f"{path}: the loader's seed {loader.seed} differs from the checkpoint's "
                                          f"{meta['loader_seed']}; resuming would not reproduce the run")
    try:
        optim_state = _unpack(meta["optimizer"], arrays)
        sched_state = _unpack(meta["scheduler"], arrays) if meta.get("scheduler") is not None else None
    except ValueError as exc:
        raise CorruptFileError(f"load_checkpoint: {path} has damaged metadata: the optimizer state {exc}") from None
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    try:
        plan = model._check_load(model_state)
    except (KeyError, ValueError) as exc:
        raise CheckpointMismatchError(f"load_checkpoint: {path} does not fit this model: "
                                      f"{exc.args[0] if exc.args else exc}") from None
    try:
        hyper, states = optimizer._check_state(optim_state)
        sched = scheduler._check_state(sched_state) if scheduler is not None and sched_state is not None else None
    except ValueError as exc:
        raise StateMismatchError(f"load_checkpoint: {path}: {exc}") from None
    generators = _generators(model)
    for name, state in meta.get("generators", {}).items():
        if name in generators:
            try:
                type(generators[name].bit_generator)().state = state
            except (TypeError, ValueError, KeyError) as exc:
                raise CorruptFileError(f"load_checkpoint: {path} has a damaged generator state for {name}: "
                                       f"{exc}") from None
    model._apply_load(plan)
    for k in optimizer.hyper:
        setattr(optimizer, k, hyper[k])
    optimizer.state = states
    if sched is not None:
        scheduler.base_lr, scheduler.last_epoch = sched[0], sched[1]
        for k, v in sched[2].items():
            setattr(scheduler, k, v)
        optimizer.lr = scheduler.lr_at(scheduler.last_epoch)
    for name, state in meta.get("generators", {}).items():
        if name in generators:
            generators[name].bit_generator.state = state
    history = History(meta["history"])
    history.config = saved_config
    return history, int(meta["epoch"]), int(meta["step"])


def save_model(model, path):
    """Save ``model.state_dict()`` (with transform states such as masks) as ``.npz`` (no pickle).

    Written atomically (``fileio.atomic_savez``): an interrupted save never leaves a
    half-written file at ``path``.
    """
    atomic_savez(path, dict(model.state_dict()))


def load_model(model, path, strict: bool = True):
    """Load an ``.npz`` written by ``save_model`` into ``model``; returns the model.

    Raises ``CorruptFileError`` (a ValueError naming the file) for a damaged file and
    ``StateMismatchError`` (a ValueError naming the file; the model is unchanged) when its
    arrays do not fit the model.
    """
    state = read_npz("load_model", path)
    try:
        return model.load_state_dict(state, strict=strict)
    except (KeyError, ValueError) as exc:
        raise StateMismatchError(f"load_model: {path} does not fit this model: "
                                 f"{exc.args[0] if exc.args else exc}") from None

