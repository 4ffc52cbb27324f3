"""Binarized networks and their float twins (same architecture, float weights and activations).

Each block is "layer -> [max-pool] -> batch norm", and the next binary layer binarizes
what it receives, so the activation is sign(batch norm(...)) -- in the float twin it is
``Hardtanh``, the function whose derivative the straight-through estimator uses. The
first layer sees real-valued pixels in [0, 1]; the last batch norm outputs the class
scores (trained with the squared hinge loss on +-1 targets, as in the paper).
"""
from __future__ import annotations

import numpy as np

from .. import nn
from .layers import BinaryConv2d, BinaryLinear

__all__ = ["bnn_mlp", "bnn_conv", "float_mlp", "float_conv", "BN_EPS"]

BN_EPS = 1e-4


def _check_hidden(op, hidden):
    hidden = tuple(hidden)
    if not hidden or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
        raise ValueError(f"{op}: expected a non-empty tuple of positive layer widths, got {hidden!r}")
    return tuple(int(h) for h in hidden)


def bnn_mlp(hidden=(1024, 1024, 1024), seed: int = 0, stochastic: bool = False, in_features: int = 784,
            num_classes: int = 10) -> nn.Sequential:
    """The binarized MLP: Flatten, then per width h: BinaryLinear -> BatchNorm1d; then a scorer.

    784 -> 1024 -> 1024 -> 1024 -> 10 by default (the paper's MNIST MLP has 4096 units and
    dropout; this one is sized for a CPU). All weights binary; inputs of every layer but
    the first binarized. ``stochastic`` selects stochastic binarization of the weights while
    training (latent weights then start U(-1, 1) instead of Glorot-uniform).
    Input (N, 1, 28, 28) or (N, 784) float32 -> scores (N, num_classes).
    """
    hidden = _check_hidden("bnn_mlp", hidden)
    rng = np.random.default_rng(seed)
    widths = (int(in_features),) + hidden
    layers = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [BinaryLinear(a, b, binary_input=i > 0, stochastic=stochastic, seed=rng),
                   nn.BatchNorm1d(b, eps=BN_EPS)]
    layers += [BinaryLinear(widths[-1], num_classes, stochastic=stochastic, seed=rng),
               nn.BatchNorm1d(num_classes, eps=BN_EPS)]
    return nn.Sequential(*layers)


def float_mlp(hidden=(1024, 1024, 1024), seed: int = 0, activation: str = "hardtanh", in_features: int = 784,
              num_classes: int = 10) -> nn.Sequential:
    """The float twin of ``bnn_mlp``: Linear (no bias) -> BatchNorm1d -> activation per block.

    ``activation`` is "hardtanh" (the STE's relaxation of sign; default) or "relu".
    """
    hidden = _check_hidden("float_mlp", hidden)
    act = _activation("float_mlp", activation)
    rng = np.random.default_rng(seed)
    widths = (int(in_features),) + hidden
    layers = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b, bias=False, seed=rng), nn.BatchNorm1d(b, eps=BN_EPS), act()]
    layers += [nn.Linear(widths[-1], num_classes, bias=False, seed=rng), nn.BatchNorm1d(num_classes, eps=BN_EPS)]
    return nn.Sequential(*layers)


def bnn_conv(seed: int = 0, channels=(32, 64), fc: int = 512, stochastic: bool = False,
             num_classes: int = 10) -> nn.Sequential:
    """A small binarized ConvNet for 28x28 images (no padding, so it packs exactly).

    conv 5x5 (real pixels, binary weights) -> max-pool 2 -> BN -> conv 5x5 -> max-pool 2
    -> BN -> flatten -> BinaryLinear fc -> BN -> BinaryLinear -> BN. Pooling comes before
    batch norm, as in the paper, so a block's sign is a threshold on the pooled integer.
    Input (N, 1, 28, 28) float32 -> scores (N, num_classes).
    """
    c1, c2 = _check_hidden("bnn_conv", channels)
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        BinaryConv2d(1, c1, 5, binary_input=False, stochastic=stochastic, seed=rng), nn.MaxPool2d(2),
        nn.BatchNorm2d(c1, eps=BN_EPS),
        BinaryConv2d(c1, c2, 5, stochastic=stochastic, seed=rng), nn.MaxPool2d(2), nn.BatchNorm2d(c2, eps=BN_EPS),
        nn.Flatten(),
        BinaryLinear(c2 * 16, fc, stochastic=stochastic, seed=rng), nn.BatchNorm1d(fc, eps=BN_EPS),
        BinaryLinear(fc, num_classes, stochastic=stochastic, seed=rng), nn.BatchNorm1d(num_classes, eps=BN_EPS),
    )


def float_conv(seed: int = 0, channels=(32, 64), fc: int = 512, activation: str = "hardtanh",
               num_classes: int = 10) -> nn.Sequential:
    """The float twin of ``bnn_conv`` (Conv2d / Linear without bias, activation after each BN)."""
    c1, c2 = _check_hidden("float_conv", channels)
    act = _activation("float_conv", activation)
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, c1, 5, bias=False, seed=rng), nn.MaxPool2d(2), nn.BatchNorm2d(c1, eps=BN_EPS), act(),
        nn.Conv2d(c1, c2, 5, bias=False, seed=rng), nn.MaxPool2d(2), nn.BatchNorm2d(c2, eps=BN_EPS), act(),
        nn.Flatten(),
        nn.Linear(c2 * 16, fc, bias=False, seed=rng), nn.BatchNorm1d(fc, eps=BN_EPS), act(),
        nn.Linear(fc, num_classes, bias=False, seed=rng), nn.BatchNorm1d(num_classes, eps=BN_EPS),
    )


def _activation(op, name):
    table = {"hardtanh": nn.Hardtanh, "relu": nn.ReLU}
    if name not in table:
        raise ValueError(f"{op}: expected activation in {sorted(table)}, got {name!r}")
    return table[name]
