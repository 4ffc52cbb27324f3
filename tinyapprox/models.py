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
