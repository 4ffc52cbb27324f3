"""Learning-rate schedules, stepped once per epoch: ``sched.step()`` sets ``opt.lr``.

Each schedule is a closed-form function of the epoch count ``e`` (the number of
``step()`` calls so far) and the optimizer's learning rate when the schedule was made,
``base_lr``:

* ``StepLR``:            lr(e) = base_lr * gamma ** (e // step_size)
* ``ExponentialLR``:     lr(e) = base_lr * gamma ** e
* ``CosineAnnealingLR``: lr(e) = eta_min + (base_lr - eta_min) * (1 + cos(pi * e / T_max)) / 2

Closed forms (rather than multiplying ``opt.lr`` in place) make a resumed run land on
exactly the same learning rates.
"""
from __future__ import annotations

import math

import numpy as np

from .sgd import Optimizer, _check_range, _check_state_header

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR"]


def _check_positive(op, name, value):
    """Raise ValueError naming ``op`` and ``name`` unless ``value`` is a real number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value > 0:
        raise ValueError(f"{op}: {name} must be > 0, got {value!r}")


class LRScheduler:
    """Base class: keeps ``base_lr`` and ``last_epoch``; subclasses define ``lr_at(epoch)``."""

    hyper = ()

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> float:
        """Advance one epoch, set and return the optimizer's new learning rate."""
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)
        return self.optimizer.lr

    def get_last_lr(self) -> float:
        return self.optimizer.lr

    def state_dict(self) -> dict:
        return {"type": type(self).__name__, "base_lr": self.base_lr, "last_epoch": self.last_epoch,
                "hyper": {k: getattr(self, k) for k in self.hyper}}

    def load_state_dict(self, state: dict):
        """Restore the schedule and set the optimizer's lr to the restored epoch's value.

        Everything is checked first (the hyper-parameters as the constructor checks them,
        ``base_lr`` >= 0, ``last_epoch`` an int >= 0); a failed load changes nothing.

        Raises:
            ValueError: a state saved by another kind of schedule, or a damaged one.
        """
        base_lr, last_epoch, hyper = self._check_state(state)
        self.base_lr, self.last_epoch = base_lr, last_epoch
        for k, v in hyper.items():
            setattr(self, k, v)
        self.optimizer.lr = self.lr_at(self.last_epoch)
        return self

    def _check_state(self, state) -> tuple:
        """Validated ``(base_lr, last_epoch, hyper)`` of ``state``; nothing assigned."""
        op, hyper = _check_state_header(self, state)
        _check_range(op, "base_lr", state.get("base_lr"), 0.0, None)
        last = state.get("last_epoch")
        if isinstance(last, bool) or not isinstance(last, (int, np.integer)) or last < 0:
            raise ValueError(f"{op}: last_epoch must be an int >= 0, got {last!r}")
        try:
            probe = type(self)(self.optimizer, **hyper)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{op}: {exc}") from None
        return float(state["base_lr"]), int(last), {k: getattr(probe, k) for k in self.hyper}

    def __repr__(self):
        args = ", ".join(f"{k}={getattr(self, k)}" for k in self.hyper)
        return f"{type(self).__name__}({args}, base_lr={self.base_lr}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    Raises:
        ValueError: step_size < 1 or gamma <= 0.
    """

    hyper = ("step_size", "gamma")

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        super().__init__(optimizer)
        if not isinstance(step_size, (int, np.integer)) or isinstance(step_size, bool) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        _check_positive("StepLR", "gamma", gamma)
        self.step_size, self.gamma = int(step_size), float(gamma)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch (the binarized-network recipe).

    Raises:
        ValueError: gamma <= 0.
    """

    hyper = ("gamma",)

    def __init__(self, optimizer, gamma: float):
        super().__init__(optimizer)
        _check_positive("ExponentialLR", "gamma", gamma)
        self.gamma = float(gamma)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** epoch


class CosineAnnealingLR(LRScheduler):
    """Follow half a cosine from ``base_lr`` down to ``eta_min`` over ``T_max`` epochs.

    After ``T_max`` epochs the formula keeps going (the cosine rises again), as is usual.

    Raises:
        ValueError: T_max < 1 or eta_min < 0.
    """

    hyper = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):  # noqa: N803  (the usual name)
        super().__init__(optimizer)
        if not isinstance(T_max, (int, np.integer)) or isinstance(T_max, bool) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        _check_range("CosineAnnealingLR", "eta_min", eta_min, 0.0, None)
        self.T_max, self.eta_min = int(T_max), float(eta_min)

    def lr_at(self, epoch):
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
