"""Bit-packed inference for a trained binarized network.

With +-1 inputs ``a`` and weights ``w`` of length K, stored one bit per value (bit 1 =
+1, bit 0 = -1), the dot product needs no multiplication::

    a . w = (#agreeing positions) - (#disagreeing positions) = K - 2 * popcount(a XOR w)

and a hidden block "dot product -> batch norm -> sign" needs no floating point either:
batch norm is a per-channel monotone function of the integer dot product ``d``, so its
sign is a per-channel integer threshold on ``d`` (``d >= T`` when gamma > 0; the
comparison flips to ``d <= T`` when gamma < 0; a constant when gamma = 0).

Exactness. ``fold_threshold`` computes ``T = ceil(tau)`` from the real threshold ``tau``
in float64 -- the textbook derivation. The float network, however, evaluates batch norm
in float32, and next to the threshold float rounding can make the two disagree by one
integer step. ``pack`` therefore *calibrates* each threshold: it feeds every integer
``d`` in ``[-K, K]`` (exact in float32) through the network's own batch-norm module and
reads off where the sign changes. Every float operation is monotone (rounding preserves
order), so that sign is a step function of ``d`` and one integer threshold reproduces the
float path exactly on every value a layer can produce; ``pack`` checks monotonicity and
raises if it ever fails. The float path's dot products are exact too: sums of +-1 in
float32 are exact integers for K < 2**24.

The layers the packed model runs:
* first block: real-valued pixels times the binary weights in float32 (the same call the
  float model makes), then pooling, batch norm and sign as in the float model;
* hidden blocks: pack the +-1 activations, ``xnor_gemm`` (``kernels``), integer pooling,
  integer threshold -> the next block's bits;
* last block: ``xnor_gemm``, then the batch-norm affine map -> float32 class scores.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from .. import functional as F
from .. import kernels
from ..conv import im2col
from ..nn.module import Module, Sequential
from ..tensor import Tensor, no_grad
from .binarize import Binarize, _pm1
from .layers import BinaryConv2d, BinaryLinear

__all__ = ["pack_bool", "int8_matmul", "xnor_dot", "fold_threshold", "calibrate_threshold",
           "apply_threshold", "pack", "PackedBNN", "sign_path", "KERNELS"]

KERNELS = ("xnor", "int8", "float32")


# --------------------------------------------------------------------------- bit packing
def _pack_rows(x) -> np.ndarray:
    """(M, K) +-1 (any real/int dtype) -> (M, ceil(K/64)) uint64 via ``kernels.pack_bits``."""
    return kernels.pack_bits(np.ascontiguousarray(x))


def pack_bool(bits) -> np.ndarray:
    """(M, K) bool (True = +1) -> (M, ceil(K/64)) uint64, the layout of ``kernels.pack_bits``.

    The packed network keeps its hidden activations as booleans and packs them with
    ``np.packbits`` (bit j % 8 of byte j // 8, little-endian words), skipping the
    comparison ``kernels.pack_bits`` makes on real-valued input.
    """
    bits = np.asarray(bits)
    if bits.ndim != 2 or bits.dtype != bool:
        raise ValueError(f"pack_bool: expected a 2-D bool array, got {bits.dtype} {bits.shape}")
    m, k = bits.shape
    pad = -k % 64
    if pad:
        bits = np.concatenate([bits, np.zeros((m, pad), dtype=bool)], axis=1)
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").reshape(m, (k + pad) // 64).astype(np.uint64)


def xnor_dot(a, b) -> int:
    """Dot product of two +-1 vectors the binary way: K - 2 * popcount(a XOR b)."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.shape != b.shape:
        raise ValueError(f"xnor_dot: expected vectors of the same length, got {a.shape} and {b.shape}")
    return int(kernels.xnor_gemm(_pack_rows(a[None]), _pack_rows(b[None]), a.size)[0, 0])


# ------------------------------------------------------------------------ threshold folding
def fold_threshold(gamma, beta, mean, var, eps=1e-5, k=None, bias=None):
    """Fold "batch norm then sign" into an integer threshold on the dot product (float64 math).

    With z = gamma * (d + bias - mean) / sqrt(var + eps) + beta, sign(z) = +1 iff
    * gamma > 0: d >= tau,  tau = mean - bias - beta * sqrt(var + eps) / gamma
    * gamma < 0: d <= tau   (dividing by a negative number flips the comparison)
    * gamma = 0: always (beta >= 0) or never.
    For integer d, ``d >= tau`` iff ``d >= ceil(tau)`` and ``d <= tau`` iff ``d <= floor(tau)``.

    Args: per-channel arrays of shape (C,); ``k`` (optional) clamps thresholds to
        [-k-1, k+1] so they fit int32.

    Returns:
        (s, t, tau): s (C,) int8 in {+1, -1}, t (C,) int64 with bit = ``s * d >= t``, and
        the real threshold tau (C,) float64 (nan where gamma = 0).
    """
    gamma, beta, mean, var = (np.asarray(a, dtype=np.float64) for a in (gamma, beta, mean, var))
    bias = np.zeros_like(gamma) if bias is None else np.asarray(bias, dtype=np.float64)
    big = float(k + 1) if k is not None else 2.0**62
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = mean - bias - beta * np.sqrt(var + eps) / gamma
    tau = np.where(gamma == 0, np.nan, tau)
    s = np.where(gamma < 0, -1, 1).astype(np.int8)
    t = np.where(gamma > 0, np.ceil(np.clip(tau, -big, big)), -np.floor(np.clip(tau, -big, big)))
    t = np.where(gamma == 0, np.where(beta >= 0, -big, big), t)
    return s, t.astype(np.int64), tau


def apply_threshold(d, s, t, axis=1) -> np.ndarray:
    """bits = ``s * d >= t`` per channel along ``axis``: d (N, C, ...) int -> bool of d's shape."""
    d = np.asarray(d)
    shape = [1] * d.ndim
    shape[axis] = -1
    return d * np.asarray(s).astype(d.dtype).reshape(shape) >= np.asarray(t).reshape(shape)


def calibrate_threshold(fn, k: int, channels: int, spatial: bool = False, chunk: int = 1 << 22):
    """Exact integer thresholds of ``sign(fn(d))`` for every integer d in [-k, k].

    ``fn`` maps a float32 array (G, C) -- or (G, C, 1, 1) when ``spatial`` -- holding
    integer dot products to the pre-sign activation, elementwise per channel (a batch norm
    in eval mode, possibly after a bias). The sign of a monotone function of d is a step
    function, so it is captured by one threshold per channel.

    Returns:
        (s, t): as ``fold_threshold``; ``apply_threshold(d, s, t)`` equals
        ``fn(d) >= 0`` for every integer d in [-k, k].

    Raises:
        RuntimeError: ``sign(fn(d))`` is not monotone in d for some channel.
        ValueError: k >= 2**24 (no longer exact in float32).
    """
    if not 0 <= k < 2**24:
        raise ValueError(f"calibrate_threshold: expected 0 <= k < 2**24 (exact in float32), got {k}")
    grid = np.arange(-k, k + 1, dtype=np.float32)
    rows = max(1, chunk // max(channels, 1))
    parts = []
    for i in range(0, grid.size, rows):
        g = np.repeat(grid[i:i + rows, None], channels, axis=1)
        z = fn(g.reshape(g.shape + (1, 1)) if spatial else g)
        z = np.asarray(z.data if isinstance(z, Tensor) else z).reshape(g.shape)
        parts.append(z >= 0)
    m = np.concatenate(parts, axis=0)
    up = (m[1:] >= m[:-1]).all(axis=0)
    down = (m[1:] <= m[:-1]).all(axis=0)
    if not (up | down).all():
        bad = np.flatnonzero(~(up | down))
        raise RuntimeError(f"calibrate_threshold: the sign of the activation is not monotone in the dot product "
                           f"for channels {bad[:10].tolist()}; cannot fold it into a threshold")
    s = np.where(up, 1, -1).astype(np.int8)
    first_true = np.where(m.any(axis=0), m.argmax(axis=0), grid.size)
    last_true = np.where(m.any(axis=0), grid.size - 1 - m[::-1].argmax(axis=0), -1)
    t_up = np.where(first_true < grid.size, -k + first_true, k + 1)
    t_down = np.where(last_true >= 0, -(-k + last_true), k + 1)
    t = np.where(up, t_up, t_down).astype(np.int64)
    return s, t


# ------------------------------------------------------------------------------ the model
def int8_matmul(a, b) -> np.ndarray:
    """The plain baseline: a (M, K) int8 +-1 times b (N, K).T with NumPy's integer matmul -> (M, N) int32.

    NumPy multiplies integers with a simple loop (no BLAS); products of +-1 accumulate
    exactly in int16 while K < 2**15 (int32 beyond).
    """
    acc = np.int16 if a.shape[1] < 2**15 else np.int32
    return (a.astype(acc) @ b.T.astype(acc)).astype(np.int32)


def _flat_layers(model):
    """The leaf modules of nested ``Sequential``s, in execution order (a list)."""
    if isinstance(model, Sequential):
        out = []
        for m in model:
            out.extend(_flat_layers(m))
        return out
    return [model]


def _kind(m):
    """Role of a module in a packed block: "binary", "bn", "pool", "flatten", or None (unsupported)."""
    name = type(m).__name__
    if isinstance(m, (BinaryLinear, BinaryConv2d)):
        return "binary"
    if "BatchNorm" in name:
        return "bn"
    if "Pool" in name:
        return "pool"
    if name == "Flatten":
        return "flatten"
    return None


def _to_array(y):
    """The ndarray behind a Tensor (or ``np.asarray`` of anything else)."""
    return y.data if isinstance(y, Tensor) else np.asarray(y)


def _binary_weight(layer) -> np.ndarray:
    """The layer's deterministic weight signs (0 -> +1), float32 of the weight's shape."""
    with no_grad():
        return np.where(layer.weight.data >= 0, 1, -1).astype(np.float32)


class _Stage:
    """One block: a binary layer, its pooling, its batch norm and (optionally) a flatten."""

    def __init__(self, layer, post, last, backend):
        self.first = not layer.binary_input
        self.last = last
        self.conv = isinstance(layer, BinaryConv2d)
        self.wb = _binary_weight(layer)
        self.bias = None if layer.bias is None else layer.bias.data.copy()
        self.out_channels = self.wb.shape[0]
        self.k = int(np.prod(self.wb.shape[1:]))
        if self.conv:
            self.stride, self.padding, self.kernel_size = layer.stride, layer.padding, layer.kernel_size
            if not self.first and self.padding:
                raise ValueError(f"pack: BinaryConv2d with binary input and padding={self.padding} pads with zeros, "
                                 "which are not +-1 values; use padding=0")
        kinds = [_kind(m) for m in post]
        order = {"pool": 0, "bn": 1, "flatten": 2}
        if any(k is None for k in kinds) or [order[k] for k in kinds] != sorted(order[k] for k in kinds) \
                or kinds.count("bn") > 1:
            names = [type(m).__name__ for m in post]
            raise ValueError(f"pack: after a binary layer expected [pooling...] [batch norm] [Flatten], got {names}")
        self.pools = [copy.deepcopy(m).eval() for m, k in zip(post, kinds) if k == "pool"]
        bns = [copy.deepcopy(m).eval() for m, k in zip(post, kinds) if k == "bn"]
        self.bn = bns[0] if bns else None
        self.flatten = "flatten" in kinds
        self.flatten_input = False
        # one weight row per output channel, in conv.im2col's column order (u, v, c) for a convolution
        self.w_rows = (self.wb.transpose(0, 2, 3, 1) if self.conv else self.wb).reshape(self.out_channels, -1)
        self.w_bits = _pack_rows(self.w_rows)
        self.wb_int8 = self.w_rows.astype(np.int8)
        self.s = self.t = None
        if not self.first and not self.last:
            self.s, self.t = calibrate_threshold(self._affine, self.k, self.out_channels, spatial=self.conv)

    def check_input(self, x):
        """Refuse pixels (N, ...) float32 the first block cannot take: NaN, or the wrong shape.

        Raises:
            ValueError: naming the shape the float model expects and the one received.
        """
        if self.conv:
            want, ok = f"(N, {self.wb.shape[1]}, H, W)", x.ndim == 4 and x.shape[1] == self.wb.shape[1]
        elif self.flatten_input:
            want, ok = f"(N, ...) with {self.k} values per sample", x.ndim >= 2 and int(np.prod(x.shape[1:])) == self.k
        else:
            want, ok = f"(N, {self.k})", x.ndim == 2 and x.shape[1] == self.k
        if not ok:
            raise ValueError(f"PackedBNN.forward: expected input of shape {want}, got {x.shape}")
        if np.isnan(x).any():
            raise ValueError(f"PackedBNN.forward: expected pixels without NaN, got {int(np.isnan(x).sum())} NaN "
                             f"entries in input of shape {x.shape}")

    def _affine(self, v):
        """Bias then batch norm (eval) on float32 values, exactly as the float model computes them."""
        with no_grad():
            if self.bias is not None:
                v = v + self.bias.reshape((1, -1) + (1,) * (v.ndim - 2))
            return _to_array(self.bn(Tensor(v))) if self.bn is not None else v

    def _pool(self, y):
        with no_grad():
            for p in self.pools:
                y = _to_array(p(Tensor(y)))
        return y

    def _dot(self, x, kernel, backend):
        """Integer dot products of the bool (True = +1) input x with the binary weights -> int32."""
        if self.conv:
            n, (kh, kw) = x.shape[0], self.kernel_size
            rows = im2col(x, kh, kw, self.stride, 0)            # (n*oh*ow, kh*kw*C), the library's patch order
            oh, ow = (x.shape[2] - kh) // self.stride + 1, (x.shape[3] - kw) // self.stride + 1
        else:
            rows = x
        if kernel == "xnor":
            d = kernels.xnor_gemm(pack_bool(rows), self.w_bits, self.k, backend=backend)
        elif kernel == "int8":
            d = int8_matmul(_pm1(rows, np.int8), self.wb_int8)
        elif kernel == "float32":
            d = (_pm1(rows, np.float32) @ self.w_rows.T).astype(np.int32)
        else:
            raise ValueError(f"PackedBNN: expected kernel in {KERNELS}, got {kernel!r}")
        if self.conv:
            d = d.reshape(n, oh, ow, self.out_channels).transpose(0, 3, 1, 2)
        return d

    def __call__(self, x, kernel, backend):
        """x: float32 pixels (first stage) or bool (True = +1) -> bool activations, or float32 scores."""
        if self.flatten_input:
            x = x.reshape(x.shape[0], -1)
        if self.first:
            with no_grad():
                if self.conv:
                    y = _to_array(F.conv2d(Tensor(x), Tensor(self.wb), None if self.bias is None else Tensor(self.bias),
                                           stride=self.stride, padding=self.padding))
                else:
                    y = _to_array(F.linear(Tensor(x), Tensor(self.wb), None if self.bias is None else Tensor(self.bias)))
            y = self._pool(y)
            if self.bn is not None:
                with no_grad():
                    y = _to_array(self.bn(Tensor(y)))
            out = y if self.last else y >= 0
        else:
            d = self._dot(x, kernel, backend)
            if self.pools:
                d = self._pool(d.astype(np.float32)).astype(np.int32)
            if self.last:
                out = self._affine(d.astype(np.float32))
            else:
                out = apply_threshold(d, self.s, self.t)
        if self.flatten:
            out = out.reshape(out.shape[0], -1)
        return out

    def size_bits(self) -> dict:
        """Storage of this stage in packed form, in bits."""
        weights = self.out_channels * self.k
        if self.first or self.last:
            extra = 32 * 2 * self.out_channels + (0 if self.bias is None else 32 * self.out_channels)
        else:
            extra = (32 + 1) * self.out_channels
        return {"weights": weights, "other": extra}


class PackedBNN:
    """A trained binarized network in bit-packed form (see the module docstring).

    Build it with ``bnn.pack(model)``. ``forward(x, kernel="xnor")`` returns the float32
    scores (N, classes); ``kernel`` selects how hidden integer dot products are computed:
    ``"xnor"`` (bit-packed XNOR/popcount, ``kernels.xnor_gemm``), ``"int8"`` (unpacked
    +-1 int8 values, NumPy integer matmul: the plain baseline) or ``"float32"`` (+-1 as
    float32 through BLAS). All three give the same integers, hence the same scores.
    """

    def __init__(self, stages, backend=None):
        self.stages = stages
        self.backend = backend

    def forward(self, x, kernel="xnor", return_hidden=False):
        """x: (N, ...) float32 pixels shaped as the float model expects.

        Returns scores (N, C) float32, and with ``return_hidden`` also the list of int8
        +-1 hidden activations (one per hidden block, as fed to the next block).

        Raises:
            ValueError: an unknown ``kernel``, an input shape the first block cannot take,
                or NaN in the input.
        """
        if kernel not in KERNELS:
            raise ValueError(f"PackedBNN.forward: expected kernel in {KERNELS}, got {kernel!r}")
        h = np.asarray(x.data if isinstance(x, Tensor) else x, dtype=np.float32)
        self.stages[0].check_input(h)
        hidden = []
        for stage in self.stages:
            h = stage(h, kernel, self.backend)
            if not stage.last and return_hidden:
                hidden.append(_pm1(h, np.int8))
        return (h, hidden) if return_hidden else h

    __call__ = forward

    def predict(self, x, kernel="xnor", batch_size=1000) -> np.ndarray:
        """Predicted classes (N,) int64 of pixels x (N, ...) float32, in batches (errors as ``forward``)."""
        x = np.asarray(x)
        out = [self.forward(x[i:i + batch_size], kernel).argmax(axis=1) for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def size(self) -> dict:
        """Model size: bits of binary weights, bits of everything else, total bits and bytes."""
        w = sum(s.size_bits()["weights"] for s in self.stages)
        o = sum(s.size_bits()["other"] for s in self.stages)
        return {"weight_bits": w, "other_bits": o, "bits": w + o, "bytes": math.ceil((w + o) / 8)}

    def describe(self) -> list:
        """One dict per block: kind, K, outputs, how it runs."""
        rows = []
        for i, s in enumerate(self.stages):
            how = "float32 input x binary weights" if s.first else "xnor/popcount"
            tail = "scores (BN affine)" if s.last else ("sign" if s.first else "integer threshold")
            rows.append({"block": i, "layer": "conv" if s.conv else "linear", "K": s.k,
                         "outputs": s.out_channels, "dot": how, "activation": tail})
        return rows


def pack(model: Module, backend=None) -> PackedBNN:
    """Convert a trained binarized ``Sequential`` into a ``PackedBNN``.

    The model is a sequence of blocks ``Binary{Linear,Conv2d} -> [pooling] -> [BatchNorm]
    -> [Flatten]``; the first binary layer may take real inputs, all later ones must have
    ``binary_input=True``. Leading Flatten layers are allowed. Stochastic layers are packed
    with their deterministic (eval-mode) signs.

    Raises:
        ValueError: an unsupported module, block order, or a padded binary-input conv.
    """
    layers = _flat_layers(model)
    lead = 0
    while lead < len(layers) and _kind(layers[lead]) == "flatten":
        lead += 1
    idx = [i for i, m in enumerate(layers) if _kind(m) == "binary"]
    if not idx or idx[0] != lead:
        names = [type(m).__name__ for m in layers]
        raise ValueError(f"pack: expected a Sequential starting with [Flatten] and a binary layer, got {names}")
    for i in idx[1:]:
        if not layers[i].binary_input:
            raise ValueError(f"pack: only the first binary layer may take real-valued inputs (layer {i} does not "
                             "binarize its input)")
    for m in layers:
        t = m.weight.find_transform(Binarize) if _kind(m) == "binary" else None
        if _kind(m) == "binary" and t is None:
            raise ValueError("pack: a binary layer has lost its Binarize transform (was it baked?)")
    stages = []
    bounds = idx + [len(layers)]
    for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        stages.append(_Stage(layers[a], layers[a + 1:b], last=(j == len(idx) - 1), backend=backend))
    stages[0].flatten_input = lead > 0
    return PackedBNN(stages, backend=backend)


def sign_path(model: Module, x) -> tuple:
    """Run the float model in eval mode and return (scores, hidden signs).

    The hidden signs are int8 +-1 arrays: the sign (0 -> +1) of each block's output that
    feeds a binary-input layer, i.e. what that layer binarizes. They are what
    ``PackedBNN.forward(..., return_hidden=True)`` must reproduce exactly.
    """
    layers = _flat_layers(model)
    was = model.training
    model.eval()
    hidden = []
    try:
        with no_grad():
            h = Tensor(np.asarray(x, dtype=np.float32))
            for i, m in enumerate(layers):
                if _kind(m) == "binary" and m.binary_input:
                    hidden.append(_pm1(_to_array(h) >= 0, np.int8))
                h = m(h)
    finally:
        model.train(was)
    return _to_array(h), hidden



# ----------------------------------------------------------------------------- exercises
def pack_signs(v) -> np.ndarray:
    """Pack a real vector's signs into 64-bit words, in plain NumPy (exercise).

    v: (K,) real -> (ceil(K/64),) uint64 where bit ``j % 64`` (least significant first) of
    word ``j // 64`` is 1 iff ``v[j] >= 0`` (+1); padding bits are 0. The layout of
    ``kernels.pack_bits``. Raises ValueError for a non-1-D input.
    """
    v = np.asarray(v)
    if v.ndim != 1:
        raise ValueError(f"pack_signs: expected a 1-D vector, got shape {v.shape}")
    # BEGIN SOLUTION
    words = np.zeros((v.size + 63) // 64, dtype=np.uint64)
    for j in np.flatnonzero(v >= 0):
        words[j // 64] |= np.uint64(1) << np.uint64(j % 64)
    return words
    # END SOLUTION


def xnor_popcount_dot(a_bits, b_bits, k: int) -> int:
    """Dot product of two packed +-1 vectors of length ``k``: ``k - 2 * popcount(a XOR b)`` (exercise).

    a_bits, b_bits: (ceil(k/64),) uint64 in the ``pack_signs`` layout (padding bits 0).
    Returns a Python int equal to ``unpack(a) @ unpack(b)`` exactly. Raises ValueError when
    the word counts do not fit k.
    """
    a_bits, b_bits = np.asarray(a_bits, dtype=np.uint64), np.asarray(b_bits, dtype=np.uint64)
    if a_bits.shape != ((k + 63) // 64,) or b_bits.shape != a_bits.shape:
        raise ValueError(f"xnor_popcount_dot: expected two vectors of {(k + 63) // 64} words for k={k}, "
                         f"got {a_bits.shape} and {b_bits.shape}")
    # BEGIN SOLUTION
    differing = sum(bin(int(word)).count("1") for word in a_bits ^ b_bits)
    return int(k - 2 * differing)
    # END SOLUTION


def bn_sign_threshold(gamma, beta, mean, var, eps: float = 1e-5):
    """Fold batch norm followed by sign into one integer comparison per channel (exercise).

    For an integer dot product d, ``sign(gamma * (d - mean) / sqrt(var + eps) + beta) = +1``
    exactly when ``s * d >= t``. Per-channel (C,) float arrays with gamma != 0 in, returns
    ``(s, t)``: s int8 (C,) in {+1, -1} (the sign of gamma), t int64 (C,). Raises ValueError
    for a zero gamma (that channel's output is constant; ``fold_threshold`` handles it).
    """
    gamma, beta, mean, var = (np.asarray(a, dtype=np.float64) for a in (gamma, beta, mean, var))
    if np.any(gamma == 0):
        raise ValueError("bn_sign_threshold: expected gamma != 0 in every channel (use fold_threshold)")
    # BEGIN SOLUTION
    tau = np.clip(mean - beta * np.sqrt(var + eps) / gamma, -2.0**62, 2.0**62)
    s = np.where(gamma > 0, 1, -1).astype(np.int8)
    t = np.where(gamma > 0, np.ceil(tau), -np.floor(tau))
    return s, t.astype(np.int64)
    # END SOLUTION
