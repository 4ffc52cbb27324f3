"""The ``Optimizer`` base class and stochastic gradient descent (with momentum / Nesterov).

An optimizer holds a list of parameters and one learning rate ``opt.lr`` (schedulers
change it between epochs). ``step()`` updates every parameter that has a gradient, in
place on ``p.data``, then calls ``p.after_step()`` so the parameter's transforms can act
(re-apply a pruning mask, clip latent binary weights). Parameters whose ``grad`` is None
are skipped and their buffers left untouched.

``state_dict()`` captures the hyper-parameters and every buffer (momentum, Adam moments,
step counts); ``load_state_dict`` restores them, so training resumed from a checkpoint
continues bit for bit as if it had never stopped.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, no_grad

__all__ = ["Optimizer", "SGD"]


class Optimizer:
    """Base class: parameter bookkeeping, ``zero_grad``, ``step`` and checkpointing.

    Subclasses set ``hyper`` (the names of their hyper-parameters, stored as attributes)
    and implement ``_update(p, grad, state)``, changing ``p.data`` in place and keeping
    whatever buffers they need (arrays or numbers) in the dict ``state``.
    """

    hyper = ("lr",)
    #: Buffer name -> "array" (same shape and dtype as the parameter) or "count" (int >= 0).
    state_keys: dict = {}

    def __init__(self, params, lr: float):
        name = type(self).__name__
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{name}: got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or p.data.dtype.kind != "f":
                raise TypeError(f"{name}: parameter {i} must be a floating-point Tensor, got "
                                f"{type(p).__name__}{'' if not isinstance(p, Tensor) else ' of dtype ' + str(p.dtype)}")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError(f"{name}: a parameter appears more than once in the list")
        _check_range(name, "lr", lr, 0.0, None)
        self.lr = float(lr)
        self.state = [{} for _ in self.params]

    def zero_grad(self):
        """Forget the gradients (set ``grad`` to None) before the next backward."""
        for p in self.params:
            p.grad = None

    def step(self):
        """Update each parameter that has a gradient, then run its ``after_step`` hooks.

        Raises:
            ValueError: a gradient whose shape differs from its parameter's.
        """
        with no_grad():
            for p, state in zip(self.params, self.state):
                g = p.grad
                if g is None:
                    continue
                if g.shape != p.data.shape:
                    raise ValueError(f"{type(self).__name__}.step: gradient of shape {g.shape} for a parameter "
                                     f"of shape {p.data.shape}")
                self._update(p, g, state)
                after = getattr(p, "after_step", None)
                if after is not None:
                    after()

    def _update(self, p, grad, state):
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Hyper-parameters and a copy of every buffer: ``{"type", "hyper", "state"}``."""
        return {"type": type(self).__name__,
                "hyper": {k: getattr(self, k) for k in self.hyper},
                "state": [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                          for s in self.state]}

    def load_state_dict(self, state_dict: dict):
        """Restore what ``state_dict`` saved (buffers are copied in).

        Everything is checked before anything is assigned: the hyper-parameters must be
        exactly this optimizer's (``hyper``), each of the type and range its constructor
        accepts; the buffers must be the known ones (``state_keys``), each array of its
        parameter's shape and dtype and each count an int >= 0. A failed load leaves the
        optimizer as it was.

        Raises:
            ValueError: a state of another optimizer type, for a different number or shape
                of parameters, unknown or missing hyper-parameters, values out of range.
        """
        hyper, states = self._check_state(state_dict)
        for k in self.hyper:
            setattr(self, k, hyper[k])
        self.state = states
        return self

    def _check_state(self, state_dict) -> tuple:
        """Validated ``(hyper-parameters, per-parameter buffers)`` of ``state_dict``, nothing assigned."""
        op, hyper = _check_state_header(self, state_dict)
        states = state_dict.get("state")
        for k in self.hyper:
            if not _same_kind(getattr(self, k), hyper[k]):
                raise ValueError(f"{op}: hyper-parameter {k} must be like {getattr(self, k)!r}, got {hyper[k]!r}")
        try:
            probe = type(self)(self.params, **hyper)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{op}: {exc}") from None
        if not isinstance(states, (list, tuple)) or len(states) != len(self.params):
            got = len(states) if isinstance(states, (list, tuple)) else type(states).__name__
            raise ValueError(f"{op}: expected state for {len(self.params)} parameters, got {got}")
        out = []
        for i, (p, s) in enumerate(zip(self.params, states)):
            if not isinstance(s, dict):
                raise ValueError(f"{op}: the state of parameter {i} must be a dict, got {type(s).__name__}")
            unknown = sorted(set(s) - set(self.state_keys))
            if unknown:
                raise ValueError(f"{op}: unknown buffers {unknown} for parameter {i}; expected some of "
                                 f"{sorted(self.state_keys)}")
            if s and set(s) != set(self.state_keys):
                raise ValueError(f"{op}: parameter {i} has buffers {sorted(s)}, expected all of "
                                 f"{sorted(self.state_keys)} or none")
            for k, v in s.items():
                if self.state_keys[k] == "array":
                    if not isinstance(v, np.ndarray):
                        raise ValueError(f"{op}: buffer {k!r} of parameter {i} must be an array, "
                                         f"got {type(v).__name__}")
                    if v.shape != p.data.shape:
                        raise ValueError(f"{op}: buffer {k!r} of parameter {i} has shape {v.shape}, "
                                         f"expected {p.data.shape}")
                    if v.dtype != p.data.dtype:
                        raise ValueError(f"{op}: buffer {k!r} of parameter {i} has dtype {v.dtype}, "
                                         f"expected {p.data.dtype}")
                elif isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                    raise ValueError(f"{op}: buffer {k!r} of parameter {i} must be an int >= 0, got {v!r}")
            out.append({k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else int(v)) for k, v in s.items()})
        return {k: getattr(probe, k) for k in self.hyper}, out

    def __repr__(self):
        args = ", ".join(f"{k}={getattr(self, k)}" for k in self.hyper)
        return f"{type(self).__name__}({len(self.params)} parameters, {args})"


def _same_kind(current, value) -> bool:
    """Whether a loaded hyper-parameter ``value`` has the type of the ``current`` one."""
    def number(v):
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
    if isinstance(current, bool):
        return isinstance(value, (bool, np.bool_))
    if isinstance(current, (tuple, list)):
        return isinstance(value, (tuple, list)) and len(value) == len(current) and all(number(v) for v in value)
    return number(value)


def _check_state_header(owner, state) -> tuple:
    """Check the part of a saved state every optimizer and schedule shares.

    ``state`` must be a dict whose ``"type"`` is ``type(owner).__name__`` and whose ``"hyper"``
    dict has exactly the keys of ``owner.hyper``. Returns ``(op, hyper)`` where ``op`` is the
    ``"<Class>.load_state_dict"`` name used in error messages. Raises ValueError otherwise.
    """
    name = type(owner).__name__
    op = f"{name}.load_state_dict"
    if not isinstance(state, dict) or state.get("type") != name:
        got = state.get("type") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{op}: expected a {name} state, got {got!r}")
    hyper = state.get("hyper")
    if not isinstance(hyper, dict) or set(hyper) != set(owner.hyper):
        got = sorted(hyper) if isinstance(hyper, dict) else type(hyper).__name__
        raise ValueError(f"{op}: expected the hyper-parameters {sorted(owner.hyper)}, got {got}")
    return op, hyper


def _check_range(op, name, value, low, high, high_open=True):
    """Raise ValueError unless low <= value (< or <= high); None means unbounded."""
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) and value == value
    if ok and low is not None:
        ok = value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        interval = f"[{low}, {high}{')' if high_open else ']'}" if high is not None else f">= {low}"
        raise ValueError(f"{op}: {name} must be {'in ' if high is not None else ''}{interval}, got {value!r}")


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum and L2 weight decay.

    With ``d = grad + weight_decay * p``, each step does::

        momentum == 0:   p -= lr * d
        momentum  > 0:   buf = momentum * buf + d      (buf = d on the first step)
                         p  -= lr * buf                (classical)
                         p  -= lr * (d + momentum * buf)  (nesterov=True)

    Args:
        params: iterable of Parameters; lr >= 0; momentum in [0, 1);
        nesterov: needs momentum > 0; weight_decay >= 0.

    Raises:
        ValueError: a hyper-parameter out of range, nesterov without momentum.
    """

    hyper = ("lr", "momentum", "nesterov", "weight_decay")
    state_keys = {"momentum_buffer": "array"}

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(params, lr)
        _check_range("SGD", "momentum", momentum, 0.0, 1.0)
        _check_range("SGD", "weight_decay", weight_decay, 0.0, None)
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0, got momentum=0")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)

    def _update(self, p, grad, state):
        d = grad
        if self.weight_decay:
            d = grad + self.weight_decay * p.data
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(d, dtype=p.data.dtype, copy=True)
            else:
                buf *= self.momentum
                buf += d
            d = d + self.momentum * buf if self.nesterov else buf
        p.data -= self.lr * d
