"""The paper's training recipe, through the shared ``train.fit`` loop.

Squared hinge loss on +-1 targets (``F.hinge_loss(scores, labels, squared=True)``: +1 for
the true class, -1 for the others), Adam, and a learning rate decaying exponentially from
``lr_start`` to ``lr_end`` over the epochs (the paper decays from 3e-3 over hundreds of
epochs; here the same shape over fewer). The latent binary weights are clipped to
[-1, 1] by ``Binarize.after_step``, which Adam calls after every update.
The float twin is trained with exactly the same recipe, so AccLoss compares binarization
and nothing else.
"""
from __future__ import annotations

from .. import functional as F
from .. import optim
from ..data import DataLoader
from ..train import fit

__all__ = ["squared_hinge", "train_bnn", "RECIPE"]

RECIPE = {"lr_start": 3e-3, "lr_end": 3e-5, "batch_size": 100, "loss": "squared hinge on +-1 targets",
          "optimizer": "Adam(betas=(0.9, 0.999))", "stochastic_lr_scale": 10.0}
"""``stochastic_lr_scale``: stochastic binarization draws +1 with probability (1 + w) / 2, so a
latent weight near 0 is a coin flip and only weights pushed towards +-1 give a reliable sign.
The latent weights start uniform in [-1, 1] and Adam moves each by about ``lr`` per step: at
the deterministic recipe's 3e-3 they barely leave their initial draws, and the network trains
slowly (on Fashion-MNIST 784-256-256-10, 6 epochs: 0.59 top-1 against 0.83 deterministic).
Ten times the learning rate (3e-2, decayed the same way) lets the weights commit: 0.74 after
6 epochs and 0.81 after 20, still a few points under the deterministic network - the paper's
"may do better, but is harder" on this scale."""


def squared_hinge(scores, labels):
    """Mean over the batch of sum_c max(0, 1 - t_c * s_c)^2 with t = +-1 one-vs-all targets."""
    return F.hinge_loss(scores, labels, squared=True)


def train_bnn(model, train, epochs: int, val=None, lr_start: float = RECIPE["lr_start"],
              lr_end: float = RECIPE["lr_end"], batch_size: int = RECIPE["batch_size"], seed: int = 0,
              verbose: bool = True, callbacks=(), checkpoint=None, resume: bool = False):
    """Train ``model`` (binary or float) with the paper's recipe; returns ``train.History``.

    Args:
        model: e.g. ``bnn.bnn_mlp()`` or its twin ``bnn.float_mlp()``.
        train: (images uint8 (N, 28, 28), labels int64 (N,)).
        epochs: number of epochs (>= 0); the learning rate decays by
            ``(lr_end / lr_start) ** (1 / epochs)`` after each one.
        val: optional (images, labels) evaluated after every epoch (val_top1, val_loss).
        seed: shuffling seed.
        checkpoint, resume: as ``train.fit`` (an .npz written after every epoch; continue from it).

    Raises:
        ValueError: epochs < 0 or learning rates not positive.
    """
    if epochs < 0:
        raise ValueError(f"train_bnn: expected epochs >= 0, got {epochs}")
    if not (lr_start > 0 and lr_end > 0):
        raise ValueError(f"train_bnn: expected positive learning rates, got lr_start={lr_start}, lr_end={lr_end}")
    loader = DataLoader(*train, batch_size=batch_size, shuffle=True, seed=seed)
    opt = optim.Adam(model.parameters(), lr=lr_start)
    gamma = (lr_end / lr_start) ** (1.0 / max(epochs, 1))
    sched = optim.ExponentialLR(opt, gamma=gamma)
    return fit(model, loader, squared_hinge, opt, epochs, val=val, scheduler=sched, callbacks=callbacks,
               verbose=verbose, checkpoint=checkpoint, resume=resume)
