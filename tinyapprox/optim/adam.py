"""Adam: per-coordinate step sizes from running moments of the gradient (Kingma & Ba, 2015)."""
from __future__ import annotations

import math

import numpy as np

from .sgd import Optimizer, _check_range

__all__ = ["Adam"]


class Adam(Optimizer):
    """Adam with bias-corrected moments and optional L2 weight decay (added to the gradient).

    With ``d = grad + weight_decay * p`` and ``t`` the parameter's own step count::

        m = beta1 * m + (1 - beta1) * d          v = beta2 * v + (1 - beta2) * d**2
        m_hat = m / (1 - beta1**t)               v_hat = v / (1 - beta2**t)
        p -= lr * m_hat / (sqrt(v_hat) + eps)

    The first step therefore moves each coordinate by about ``lr * sign(grad)``.

    Args:
        params: iterable of Parameters; lr >= 0; betas: (beta1, beta2), each in [0, 1);
        eps >= 0; weight_decay >= 0.

    Raises:
        ValueError: a hyper-parameter out of range.
    """

    hyper = ("lr", "betas", "eps", "weight_decay")
    state_keys = {"step": "count", "m": "array", "v": "array"}

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr)
        if np.ndim(betas) != 1 or len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        _check_range("Adam", "beta1", betas[0], 0.0, 1.0)
        _check_range("Adam", "beta2", betas[1], 0.0, 1.0)
        _check_range("Adam", "eps", eps, 0.0, None)
        _check_range("Adam", "weight_decay", weight_decay, 0.0, None)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def _update(self, p, grad, state):
        b1, b2 = self.betas
        d = grad + self.weight_decay * p.data if self.weight_decay else grad
        if "m" not in state:
            state["step"], state["m"], state["v"] = 0, np.zeros_like(p.data), np.zeros_like(p.data)
        state["step"] += 1
        t, m, v = state["step"], state["m"], state["v"]
        m *= b1
        m += (1 - b1) * d
        v *= b2
        v += (1 - b2) * np.square(d)
        denom = np.sqrt(v)
        denom *= 1.0 / math.sqrt(1 - b2 ** t)
        denom += self.eps
        np.divide(m, denom, out=denom)
        denom *= self.lr / (1 - b1 ** t)
        p.data -= denom
