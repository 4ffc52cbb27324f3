"""Binarization to +-1 with the straight-through estimator, and the weight transform.

Two ways to turn a real number into one bit (Courbariaux, Hubara et al., 2016):

* deterministic: ``sign(x) = +1 if x >= 0 else -1``. Zero maps to **+1**, the same
  convention as ``kernels.pack_bits`` (bit = ``x >= 0``), so a value binarized here and
  packed there agree bit for bit.
* stochastic: ``+1`` with probability ``p = clip((x + 1) / 2, 0, 1)`` (the "hard sigmoid"),
  ``-1`` otherwise, drawn from an explicit ``np.random.Generator``.

Both have derivative zero almost everywhere, which would stop learning. The
straight-through estimator (STE) pretends the forward pass was ``hardtanh(x)``: the
upstream gradient is passed where ``|x| <= 1`` and cancelled outside, so a weight or
activation that has saturated stops receiving updates that push it further out.

During training the network keeps *latent* real-valued weights; the forward pass uses
their signs, the optimizer updates the latent values, and ``Binarize.after_step`` clips
them back to ``[-1, 1]`` (outside that range the STE would cancel their gradient forever
and they could grow without bound).
"""
from __future__ import annotations

import numpy as np

from ..nn.module import ParamTransform
from ..tensor import Function, Tensor

__all__ = ["SignSTE", "StochasticSignSTE", "sign_ste", "stochastic_sign", "binarize",
           "binarize_probability", "Binarize"]


def _pm1(bits: np.ndarray, dtype) -> np.ndarray:
    """Boolean array -> +1 where True, -1 where False, in ``dtype`` (faster than np.where)."""
    out = bits.astype(dtype)
    out *= 2
    out -= 1
    return out


def _check_input(op, x):
    """Refuse what has no sign: a non-float dtype (TypeError) or NaN entries (ValueError)."""
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point array, got dtype {x.dtype}")
    if np.isnan(x).any():
        raise ValueError(f"{op}: expected finite or infinite values, got {int(np.isnan(x).sum())} NaN entries "
                         f"in an array of shape {x.shape}; NaN has no sign")


class SignSTE(Function):
    """Deterministic sign with the straight-through estimator.

    forward: ``+1`` where ``x >= 0``, ``-1`` elsewhere (same shape and dtype as ``x``).
    backward: ``grad * (|x| <= 1)`` -- the derivative of ``hardtanh``.
    """

    @staticmethod
    def forward(ctx, x):
        _check_input("sign_ste", x)
        ctx.save_for_backward(np.abs(x) <= 1)
        return _pm1(x >= 0, x.dtype)

    @staticmethod
    def backward(ctx, g):
        (inside,) = ctx.saved
        return g * inside


class StochasticSignSTE(Function):
    """Stochastic sign: ``+1`` with probability ``clip((x + 1) / 2, 0, 1)``, else ``-1``.

    Draws one uniform number ``u`` in ``[0, 1)`` per element from ``rng`` (in the dtype
    of ``x``) and returns ``+1`` where ``u < p``, so the probability is ``p`` up to the
    resolution of the draws (2**-24 for float32), ``x >= 1`` always gives ``+1`` and
    ``x <= -1`` always ``-1``. Backward: the same STE as ``SignSTE``.
    """

    @staticmethod
    def forward(ctx, x, rng=None):
        _check_input("stochastic_sign", x)
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"stochastic_sign: expected rng to be a numpy.random.Generator, got {type(rng).__name__}")
        ctx.save_for_backward(np.abs(x) <= 1)
        p = binarize_probability(x)
        return _pm1(rng.random(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64) < p, x.dtype)

    @staticmethod
    def backward(ctx, g):
        (inside,) = ctx.saved
        return g * inside


def binarize_probability(x) -> np.ndarray:
    """The probability ``clip((x + 1) / 2, 0, 1)`` that stochastic binarization gives ``+1``.

    x: Tensor or array, any shape -> array of the same shape, in [0, 1] (NaN stays NaN).
    """
    x = np.asarray(x.data if isinstance(x, Tensor) else x)
    return np.clip((x + 1) / 2, 0, 1)


def sign_ste(x) -> Tensor:
    """Deterministic binarization (0 maps to +1), differentiable through the STE.

    x: Tensor or array, floating dtype, any shape -> Tensor of +-1, same shape and dtype.

    Raises:
        TypeError: ``x`` is not floating point.
        ValueError: ``x`` contains NaN.
    """
    return SignSTE.apply(x)


def stochastic_sign(x, rng) -> Tensor:
    """Stochastic binarization with the STE; ``rng`` is a Generator or an int seed.

    x: Tensor or array, floating dtype, any shape -> Tensor of +-1, same shape and dtype.

    Raises:
        TypeError: ``x`` is not floating point, or ``rng`` is neither a Generator nor an int.
        ValueError: ``x`` contains NaN.
    """
    if not isinstance(rng, np.random.Generator):
        if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)):
            raise TypeError(f"stochastic_sign: expected rng to be a numpy.random.Generator or an int seed, "
                            f"got {type(rng).__name__}")
        rng = np.random.default_rng(int(rng))
    return StochasticSignSTE.apply(x, rng=rng)


def binarize(x, stochastic: bool = False, rng=None) -> Tensor:
    """``stochastic_sign(x, rng)`` if ``stochastic`` else ``sign_ste(x)`` (same shapes and errors)."""
    return stochastic_sign(x, rng) if stochastic else sign_ste(x)


class Binarize(ParamTransform):
    """Parameter transform: the forward pass sees ``sign(w)``; the optimizer updates ``w``.

    Attach with ``layer.weight.add_transform(Binarize())`` (the binary layers do it for
    you). ``after_step`` clips the latent weights to ``[-clip, clip]`` (default 1).

    Args:
        stochastic: if True, draw stochastic signs while ``training`` is True; in
            inference (``training`` False: ``Module.eval()`` sets it on the transforms of
            every parameter) the deterministic sign is used, as the paper does at test time.
        seed: seed of the Generator for the stochastic draws.
        clip: bound of the latent weights (> 0).

    Raises:
        ValueError: ``clip`` is not positive.
    """

    order = ParamTransform.QUANTIZE

    def __init__(self, stochastic: bool = False, seed: int = 0, clip: float = 1.0):
        if not clip > 0:
            raise ValueError(f"Binarize: expected clip > 0, got {clip}")
        self.stochastic = bool(stochastic)
        self.seed = int(seed)
        self.clip = float(clip)
        self.rng = np.random.default_rng(self.seed)

    def __call__(self, w: Tensor) -> Tensor:
        if self.stochastic and self.training:
            return stochastic_sign(w, self.rng)
        return sign_ste(w)

    def after_step(self, param) -> None:
        np.clip(param.data, -self.clip, self.clip, out=param.data)

    def state(self) -> dict:
        return {"stochastic": np.array(self.stochastic), "seed": np.array(self.seed),
                "clip": np.array(self.clip)}

    @classmethod
    def from_state(cls, state: dict) -> "Binarize":
        return cls(stochastic=bool(state["stochastic"]), seed=int(state["seed"]), clip=float(state["clip"]))

    def __repr__(self):
        mode = "stochastic" if self.stochastic else "deterministic"
        return f"Binarize({mode}, clip={self.clip:g})"
