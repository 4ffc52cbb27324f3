"""The training loop: ``fit``, ``evaluate``, ``predict``, checkpoints, and saved models.

``fit`` is deliberately plain — for each batch: forward, loss, zero the gradients,
backward, optimizer step — so a student can read what training is. Around it: a history
of per-epoch figures, a progress bar on a terminal (one line per epoch otherwise), a stop
with a clear message when the loss stops being finite, and an atomic checkpoint after
every epoch from which ``fit(..., resume=True)`` continues bit for bit.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from . import functional as F
from . import metrics
from .tensor import Tensor, no_grad


class History:
    """Per-epoch records (dicts) of a training run; ``history["val_top1"]`` is one column."""

    def __init__(self, epochs=None):
        self.epochs = list(epochs or [])

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
        verbose: bool = True, checkpoint=None, resume: bool = False) -> History:
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
        resume: continue from ``checkpoint`` if it exists.

    Returns:
        ``History`` with, per epoch (top-1 by ``functional.topk_correct``'s tie rule, the same
        for training and validation): loss and top1 (training, measured on the fly with the
        weights of each step), val_loss, val_top1, val_top5 (when ``val``),
        lr, seconds.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite (names epoch and step).
    """
    if epochs < 0:
        raise ValueError(f"fit: expected epochs >= 0, got {epochs}")
    history, start, step = History(), 0, 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        history, start, step = load_checkpoint(checkpoint, model, optimizer, scheduler, loader)
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
        logs = {"epoch": epoch + 1, "loss": loss_sum / max(n_seen, 1), "top1": hits / max(n_seen, 1),
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
            save_checkpoint(checkpoint, model, optimizer, scheduler, loader, history, epoch + 1, step)
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


def _unpack(obj, arrays):
    if isinstance(obj, dict):
        if "__array__" in obj:
            return np.array(arrays[obj["__array__"]])
        if "__dict__" in obj:
            return {_unpack(k, arrays): _unpack(v, arrays) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [_unpack(v, arrays) for v in obj["__list__"]]
            return tuple(items) if obj["tuple"] else items
    return obj


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


def _atomic_savez(path, arrays):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path, model, optimizer, scheduler, loader, history, epoch, step):
    """Write everything needed to continue training bit for bit, atomically (temp file + rename)."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    meta = {
        "epoch": epoch, "step": step, "history": history.epochs,
        "optimizer": _pack(optimizer.state_dict(), arrays, "optimizer"),
        "scheduler": _pack(scheduler.state_dict(), arrays, "scheduler") if scheduler is not None else None,
        "loader_seed": getattr(loader, "seed", None),
        "generators": {k: g.bit_generator.state for k, g in _generators(model).items()},
    }
    arrays["meta"] = np.array(json.dumps(meta, default=_json_default))
    _atomic_savez(path, arrays)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__}")


def load_checkpoint(path, model, optimizer, scheduler=None, loader=None):
    """Restore a checkpoint written by ``save_checkpoint``; returns (history, epoch, step)."""
    arrays = _read_npz("load_checkpoint", path)
    if "meta" not in arrays:
        raise ValueError(f"load_checkpoint: {path} has no 'meta' entry; expected a file written by save_checkpoint")
    meta = json.loads(str(arrays.pop("meta")))
    model.load_state_dict({k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")})
    optimizer.load_state_dict(_unpack(meta["optimizer"], arrays))
    if scheduler is not None and meta["scheduler"] is not None:
        scheduler.load_state_dict(_unpack(meta["scheduler"], arrays))
    if loader is not None and meta.get("loader_seed") is not None and hasattr(loader, "seed"):
        if loader.seed != meta["loader_seed"]:
            raise ValueError(f"load_checkpoint: the loader's seed {loader.seed} differs from the "
                             f"checkpoint's {meta['loader_seed']}; resuming would not reproduce the run")
    generators = _generators(model)
    for name, state in meta["generators"].items():
        if name in generators:
            generators[name].bit_generator.state = state
    return History(meta["history"]), int(meta["epoch"]), int(meta["step"])


def save_model(model, path):
    """Save ``model.state_dict()`` (with transform states such as masks) as ``.npz`` (no pickle)."""
    _atomic_savez(path, dict(model.state_dict()))


def load_model(model, path, strict: bool = True):
    """Load an ``.npz`` written by ``save_model`` into ``model``; returns the model."""
    return model.load_state_dict(_read_npz("load_model", path), strict=strict)


def _read_npz(op: str, path) -> dict:
    """Every array of an ``.npz`` file, or a ValueError naming the file when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("it holds a single array, not named arrays")
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{op}: {path} is not a readable .npz of named arrays (no pickles): {exc}") from None
