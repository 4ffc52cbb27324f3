"""The layer zoo: thin ``Module``s around the differentiable ops.

Each layer owns its ``Parameter``s and reads them through ``param.effective()`` in
``forward``, so a pruning mask, a fake quantizer or a binarizer attached to the weight
acts on every forward pass while the optimizer keeps updating the full-precision array.

Default initialization (as in common frameworks): ``Linear`` and ``Conv2d`` draw weights
from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), i.e. ``init.kaiming_uniform`` with gain
1/sqrt(3), and biases from the same interval; fan_in is ``in_features`` or C*kh*kw.
Re-initialize with ``layer.weight.data[...] = nn.init.kaiming_normal(...)`` if wanted.

Layers check their input shape and raise ``ValueError`` naming the layer, the expected
and the received shape.
"""
from __future__ import annotations

import math

import numpy as np

from .. import conv
from .. import functional as F
from ..tensor import Tensor
from . import init
from .module import Module, Parameter

__all__ = ["Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Dropout",
           "Flatten", "ReLU", "Sigmoid", "Tanh", "Hardtanh"]


def _shape_of(x) -> tuple:
    return np.shape(x.data if isinstance(x, Tensor) else x)


def _positive_int(layer: str, name: str, value) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}")
    return int(value)


def _default_weight_and_bias(shape, bias: bool, rng):
    """Framework-default init: U(+-1/sqrt(fan_in)) for both weight and bias."""
    fan_in = init.fans(shape)[0]
    weight = Parameter(init.kaiming_uniform(shape, gain=1.0 / math.sqrt(3.0), rng=rng))
    if not bias:
        return weight, None
    bound = 1.0 / math.sqrt(fan_in)
    return weight, Parameter(init.uniform((shape[0],), -bound, bound, rng=rng))


class Linear(Module):
    """Fully connected layer ``y = x @ weight.T + bias``.

    ``weight`` is (out_features, in_features): the W^T of the lecture's ``W^T a = b``.

    Args:
        in_features, out_features: positive ints; bias: learn a (out_features,) bias.
        seed: int seed or ``np.random.Generator`` for the initial weights.

    Shapes: x (..., in_features) -> (..., out_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, seed=None):
        super().__init__()
        self.in_features = _positive_int("Linear", "in_features", in_features)
        self.out_features = _positive_int("Linear", "out_features", out_features)
        self.weight, self.bias = _default_weight_and_bias((self.out_features, self.in_features), bias,
                                                          init.as_rng(seed))

    def forward(self, x):
        shape = _shape_of(x)
        if len(shape) == 0 or shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}): expected input of shape "
                             f"(..., {self.in_features}), got {shape}")
        b = self.bias.effective() if self.bias is not None else None
        return F.linear(x, self.weight.effective(), b)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution (cross-correlation) layer, see ``conv.conv2d``.

    ``weight`` is (out_channels, in_channels, kh, kw), ``bias`` (out_channels,).

    Args:
        in_channels, out_channels: positive ints; kernel_size, stride: int or pair >= 1;
        padding: int or pair >= 0 (zeros); bias: learn a bias per output map;
        impl: "im2col" (fast) or "loop6d" (reference loops); seed: for the initial weights.

    Shapes: x (N, in_channels, H, W) -> (N, out_channels, OH, OW),
    ``OH = (H + 2*ph - kh) // sh + 1``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True,
                 impl: str = "im2col", seed=None):
        super().__init__()
        self.in_channels = _positive_int("Conv2d", "in_channels", in_channels)
        self.out_channels = _positive_int("Conv2d", "out_channels", out_channels)
        self.kernel_size = conv._pair("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = conv._pair("Conv2d", "stride", stride, 1)
        self.padding = conv._pair("Conv2d", "padding", padding, 0)
        if impl not in conv._CONV_IMPLS:
            raise ValueError(f"Conv2d: impl must be one of {sorted(conv._CONV_IMPLS)}, got {impl!r}")
        self.impl = impl
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        self.weight, self.bias = _default_weight_and_bias(shape, bias, init.as_rng(seed))

    def forward(self, x):
        shape = _shape_of(x)
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise ValueError(f"Conv2d({self.in_channels}, {self.out_channels}): expected input of shape "
                             f"(N, {self.in_channels}, H, W), got {shape}")
        b = self.bias.effective() if self.bias is not None else None
        return conv.conv2d(x, self.weight.effective(), b, self.stride, self.padding, self.impl)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        if self.impl != "im2col":
            s += f", impl={self.impl!r}"
        return s


class _Pool2d(Module):
    op = None

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = conv._pair(name, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else conv._pair(name, "stride", stride, 1)
        self.padding = conv._pair(name, "padding", padding, 0)
        if self.padding[0] > self.kernel_size[0] // 2 or self.padding[1] > self.kernel_size[1] // 2:
            raise ValueError(f"{name}: padding must be at most half the kernel size {self.kernel_size}, "
                             f"got {self.padding}")

    def forward(self, x):
        shape = _shape_of(x)
        if len(shape) != 4:
            raise ValueError(f"{type(self).__name__}: expected input of shape (N, C, H, W), got {shape}")
        return type(self).op(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}, stride={self.stride}"
        return s + (f", padding={self.padding}" if self.padding != (0, 0) else "")


class MaxPool2d(_Pool2d):
    """Max pooling (``conv.max_pool2d``); stride defaults to the kernel size.

    Shapes: x (N, C, H, W) -> (N, C, OH, OW). Ties: gradient to the first maximum.
    """

    op = staticmethod(conv.max_pool2d)


class AvgPool2d(_Pool2d):
    """Average pooling (``conv.avg_pool2d``); padded zeros count in the mean."""

    op = staticmethod(conv.avg_pool2d)


class _BatchNorm(Module):
    expected_dims = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        name = type(self).__name__
        self.num_features = _positive_int(name, "num_features", num_features)
        if not eps > 0:
            raise ValueError(f"{name}: eps must be > 0, got {eps}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"{name}: momentum must be in [0, 1], got {momentum}")
        self.eps, self.momentum = float(eps), float(momentum)
        self.gamma = Parameter(init.ones(self.num_features))
        self.beta = Parameter(init.zeros(self.num_features))
        self.register_buffer("running_mean", init.zeros(self.num_features))
        self.register_buffer("running_var", init.ones(self.num_features))

    def forward(self, x):
        shape = _shape_of(x)
        if len(shape) not in self.expected_dims or shape[1] != self.num_features:
            layout = " or ".join(f"({', '.join(['N', str(self.num_features)] + ['*'] * (d - 2))})"
                                 for d in self.expected_dims)
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected input of shape {layout}, "
                             f"got {shape}")
        return F.batch_norm(x, self.gamma.effective(), self.beta.effective(), self.running_mean, self.running_var,
                            training=self.training, momentum=self.momentum, eps=self.eps, axis=1)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs, per feature C.

    Training: normalise with the batch mean and (biased) variance, then scale by
    ``gamma`` and shift by ``beta``; the buffers ``running_mean`` / ``running_var`` follow
    an exponential average (``momentum``, unbiased variance). Eval (``model.eval()``):
    normalise with the running statistics instead, so the output of one sample does not
    depend on the rest of the batch.
    """

    expected_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs, per channel (statistics over N, H, W).

    See ``BatchNorm1d`` for training and eval behaviour.
    """

    expected_dims = (4,)


class Dropout(Module):
    """Inverted dropout: in training, zero each entry with probability ``p`` and scale the
    survivors by 1/(1-p); in eval, the identity.

    The layer owns a ``np.random.Generator`` made from ``seed``, so the same seed gives
    the same sequence of masks.
    """

    def __init__(self, p: float = 0.5, seed=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: expected 0 <= p < 1, got {p}")
        self.p = float(p)
        self.rng = init.as_rng(seed)

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    """Merge dimensions ``start_dim`` .. ``end_dim`` (default: all but the batch axis).

    Shapes: (N, C, H, W) -> (N, C*H*W) with the defaults.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x):
        shape = _shape_of(x)
        nd = len(shape)
        if nd and not (-nd <= self.start_dim < nd and -nd <= self.end_dim < nd):
            raise ValueError(f"Flatten: dims ({self.start_dim}, {self.end_dim}) out of range for input shape {shape}")
        return F.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class ReLU(Module):
    """max(x, 0) elementwise; any shape."""

    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    """1 / (1 + exp(-x)) elementwise; any shape."""

    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    """tanh(x) elementwise; any shape."""

    def forward(self, x):
        return F.tanh(x)


class Hardtanh(Module):
    """clip(x, min, max) elementwise (default [-1, 1]): the activation of binarized networks.

    The gradient passes unchanged inside [min, max] and is zero outside.
    """

    def __init__(self, min: float = -1.0, max: float = 1.0):  # noqa: A002  (names as in the lecture)
        super().__init__()
        if min > max:
            raise ValueError(f"Hardtanh: expected min <= max, got min={min}, max={max}")
        self.min_val, self.max_val = float(min), float(max)

    def forward(self, x):
        return F.hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self):
        return f"min={self.min_val}, max={self.max_val}"
