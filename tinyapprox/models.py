"""The networks of the lecture, each built from a seed so two runs start from the same bits.

All models take NCHW images (N, 1, 28, 28) and return logits (N, 10); the MLPs flatten
their input themselves.
"""
from __future__ import annotations

import numpy as np

from . import nn


def lenet_300_100(seed: int = 0, num_classes: int = 10) -> nn.Sequential:
    """LeNet-300-100 (LeCun et al. 1998; the pruning experiments of Han et al. 2015).

    784 -> 300 -> 100 -> 10 fully connected, ReLU between layers; 266,610 parameters.
    """
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 300, seed=rng), nn.ReLU(),
        nn.Linear(300, 100, seed=rng), nn.ReLU(),
        nn.Linear(100, num_classes, seed=rng),
    )


def lenet5(seed: int = 0, num_classes: int = 10) -> nn.Sequential:
    """LeNet-5 as in Caffe's MNIST example (the variant Han et al. prune).

    conv 20@5x5 -> max-pool 2 -> conv 50@5x5 -> max-pool 2 -> fc 500 -> ReLU -> fc 10;
    431,080 parameters. Input (N, 1, 28, 28).
    """
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 20, 5, seed=rng), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5, seed=rng), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(800, 500, seed=rng), nn.ReLU(),
        nn.Linear(500, num_classes, seed=rng),
    )


def small_convnet(seed: int = 0, num_classes: int = 10) -> nn.Sequential:
    """A small ConvNet with batch norm: two 3x3 conv blocks (16, 32 channels) and one fc layer."""
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, seed=rng), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, seed=rng), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, num_classes, seed=rng),
    )


def mlp(hidden, seed: int = 0, num_classes: int = 10, in_features: int = 784) -> nn.Sequential:
    """A dense MLP: Flatten, then Linear + ReLU for each width in ``hidden``, then Linear to the classes.

    ``mlp((300, 100))`` is LeNet-300-100. hidden: a sequence of ints >= 1 (may be empty:
    a linear classifier). Raises ValueError for a width < 1.
    """
    hidden = [int(h) for h in hidden]
    if any(h < 1 for h in hidden) or num_classes < 1 or in_features < 1:
        raise ValueError(f"models.mlp: expected widths >= 1, got hidden={hidden}, num_classes={num_classes}, "
                         f"in_features={in_features}")
    rng = np.random.default_rng(seed)
    layers, width = [nn.Flatten()], in_features
    for h in hidden:
        layers += [nn.Linear(width, h, seed=rng), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes, seed=rng))
    return nn.Sequential(*layers)


def mlp_param_count(hidden, num_classes: int = 10, in_features: int = 784) -> int:
    """Parameters (weights and biases) of ``mlp(hidden, ...)``, counted without building it."""
    widths = [in_features] + [int(h) for h in hidden] + [num_classes]
    return int(sum(a * b + b for a, b in zip(widths[:-1], widths[1:])))


def mlp_of_size(n_params: int, seed: int = 0, ratio: int = 3, num_classes: int = 10,
                in_features: int = 784) -> nn.Sequential:
    """The dense MLP of LeNet-300-100's shape, 784 -> ratio*h -> h -> 10, with about ``n_params`` parameters.

    Blalock et al.'s question: does a pruned network beat a smaller *dense* one of the same
    size? This builds the dense competitor: ``h`` is the width whose parameter count
    (``mlp_param_count``) is closest to ``n_params`` (ties go to the smaller). ratio=3, h=100
    is LeNet-300-100 itself (266,610 parameters).

    Raises ValueError when ``n_params`` is below the count of the smallest such net (h = 1).
    """
    if ratio < 1:
        raise ValueError(f"models.mlp_of_size: expected ratio >= 1, got {ratio}")

    def size(h):
        return mlp_param_count((ratio * h, h), num_classes, in_features)

    if n_params < size(1):
        raise ValueError(f"models.mlp_of_size: expected n_params >= {size(1):,} (h = 1), got {n_params:,}")
    lo, hi = 1, 2
    while size(hi) <= n_params:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if size(mid) <= n_params else (lo, mid)
    h = lo if n_params - size(lo) <= size(hi) - n_params else hi
    return mlp((ratio * h, h), seed=seed, num_classes=num_classes, in_features=in_features)


MODELS = {
    "lenet-300-100": lenet_300_100,
    "lenet5": lenet5,
    "small-convnet": small_convnet,
}


def get(name: str, seed: int = 0, **kwargs):
    """Build a model by its command-line name (one of ``MODELS``; the binarized networks are
    built by ``bnn.bnn_mlp`` / ``bnn.bnn_conv``)."""
    if name not in MODELS:
        raise ValueError(f"models.get: unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](seed=seed, **kwargs)
