"""Binary layers: +-1 weights (through ``Binarize``) and, except in the first layer, +-1 inputs.

A binarized network is built from ordinary blocks::

    BinaryLinear(784, 1024, binary_input=False) -> BatchNorm1d -> BinaryLinear(1024, 1024) -> BatchNorm1d -> ...

Each binary layer binarizes its *input* (the batch-normalised output of the previous
block) with the straight-through estimator, so "batch norm then sign" is the activation
function of the network. The first layer sees real-valued pixels (``binary_input=False``)
and the last block ends with batch norm, whose outputs are the class scores.

The weights are ordinary ``Parameter`` s carrying a ``Binarize`` transform: the layer
computes with ``weight.effective()`` (the signs) while the optimizer updates the latent
real values and clips them to [-1, 1] after each step.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..nn.module import Module, Parameter
from .binarize import Binarize, binarize

__all__ = ["BinaryLinear", "BinaryConv2d"]


def _check_positive_int(op, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{op}: expected {name} to be a positive int, got {value!r}")
    return int(value)


class _BinaryLayer(Module):
    """Shared machinery: the binarized weight and the (optionally) binarized input."""

    def _setup(self, shape, fan_in, fan_out, bias, binary_input, stochastic, seed, init):
        rng = np.random.default_rng(seed)
        if init is None:
            init = "uniform" if stochastic else "glorot"
        if init not in ("uniform", "glorot"):
            raise ValueError(f"{type(self).__name__}: expected init None, 'uniform' or 'glorot', got {init!r}")
        bound = 1.0 if init == "uniform" else math.sqrt(6.0 / (fan_in + fan_out))
        self.weight = Parameter(rng.uniform(-bound, bound, size=shape).astype(np.float32))
        self.weight.add_transform(Binarize(stochastic=stochastic, seed=int(rng.integers(2**31))))
        self.bias = Parameter(np.zeros(shape[0], dtype=np.float32)) if bias else None
        self.binary_input = bool(binary_input)
        self.stochastic = bool(stochastic)
        self.stochastic_input = False
        self._rng = np.random.default_rng(int(rng.integers(2**31)))

    def binary_weight(self):
        """The +-1 weight the forward pass uses (a Tensor; stochastic draws only in training)."""
        return self.weight.effective()

    def _input(self, x):
        if not self.binary_input:
            return x
        return binarize(x, stochastic=self.stochastic_input and self.training, rng=self._rng)


class BinaryLinear(_BinaryLayer):
    """y = b(x) @ sign(w).T (+ bias), with b = sign_ste when ``binary_input`` else identity.

    Args:
        in_features, out_features: sizes; the latent weight is (out_features, in_features)
            float32.
        bias: add a bias (usually unneeded: batch norm follows and has its own shift).
        binary_input: binarize the input (every layer but the first).
        stochastic: stochastic binarization of the weights while training (deterministic
            in eval mode). Activations stay deterministic, as in the paper's code; set the
            attribute ``stochastic_input = True`` to draw them stochastically too.
        seed: seed (or Generator) of the initialisation and of the stochastic draws.
        init: "glorot" -- latent weights U(-a, a), a = sqrt(6 / (fan_in + fan_out)): small,
            so signs flip quickly and training is fast -- or "uniform" -- U(-1, 1), as the
            paper's code; needed for stochastic binarization, where a latent weight near 0
            is a coin flip. None (default): "uniform" if ``stochastic`` else "glorot".

    Input (N, in_features) float32 -> output (N, out_features) float32.

    Raises:
        ValueError: non-positive sizes; an input whose last dimension is not in_features.
    """

    def __init__(self, in_features, out_features, bias=False, binary_input=True, stochastic=False, seed=None,
                 init=None):
        super().__init__()
        self.in_features = _check_positive_int("BinaryLinear", "in_features", in_features)
        self.out_features = _check_positive_int("BinaryLinear", "out_features", out_features)
        self._setup((self.out_features, self.in_features), self.in_features, self.out_features,
                    bias, binary_input, stochastic, seed, init)

    def forward(self, x):
        shape = np.shape(x.data if hasattr(x, "data") else x)
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise ValueError(f"BinaryLinear: expected input of shape (N, {self.in_features}), got {shape}")
        return F.linear(self._input(x), self.binary_weight(), self.bias)

    def extra_repr(self):
        return (f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, "
                f"binary_input={self.binary_input}, stochastic={self.stochastic}")


class BinaryConv2d(_BinaryLayer):
    """Cross-correlation with sign(w) of b(x) (b = sign_ste when ``binary_input``).

    Args:
        in_channels, out_channels, kernel_size (int or (kh, kw)), stride, padding: as
            ``nn.Conv2d``; latent weight (out_channels, in_channels, kh, kw) float32.
            With binary inputs, zero padding adds values that are neither +1 nor -1; such
            a layer trains and evaluates, but ``bnn.pack`` refuses it (use padding=0).
        bias, binary_input, stochastic, seed, init: as ``BinaryLinear``.

    Input (N, C, H, W) float32 -> (N, out_channels, H', W').

    Raises:
        ValueError: non-positive sizes; an input with the wrong number of channels.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=False,
                 binary_input=True, stochastic=False, seed=None, init=None):
        super().__init__()
        self.in_channels = _check_positive_int("BinaryConv2d", "in_channels", in_channels)
        self.out_channels = _check_positive_int("BinaryConv2d", "out_channels", out_channels)
        kh, kw = (kernel_size, kernel_size) if np.ndim(kernel_size) == 0 else tuple(kernel_size)
        self.kernel_size = (_check_positive_int("BinaryConv2d", "kernel_size", kh),
                            _check_positive_int("BinaryConv2d", "kernel_size", kw))
        self.stride = _check_positive_int("BinaryConv2d", "stride", stride)
        if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
            raise ValueError(f"BinaryConv2d: expected padding to be an int >= 0, got {padding!r}")
        self.padding = int(padding)
        fan_in = self.in_channels * kh * kw
        self._setup((self.out_channels, self.in_channels, kh, kw), fan_in, self.out_channels * kh * kw,
                    bias, binary_input, stochastic, seed, init)

    def forward(self, x):
        shape = np.shape(x.data if hasattr(x, "data") else x)
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise ValueError(f"BinaryConv2d: expected input of shape (N, {self.in_channels}, H, W), got {shape}")
        return F.conv2d(self._input(x), self.binary_weight(), self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}, binary_input={self.binary_input}, "
                f"stochastic={self.stochastic}")
