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

``pack(model)`` returns a ``PackedBinaryModel``: an eval-only ``nn.Sequential`` with one
layer per block (``PackedBinaryLinear`` / ``PackedBinaryConv2d``):
* first block: real-valued pixels times the binary weights in float32 (the same call the
  float model makes), pooling as in the float model, then batch norm + sign as one exact
  float32 threshold per channel (``float_thresholds``) -> packed bits;
* hidden blocks: packed bits in, one call of ``kernels.binary_linear`` (XNOR/popcount with
  the integer thresholds, convolutions through ``conv.im2col`` of the packed words, max
  pooling as OR/AND of packed words) -> the next block's packed bits;
* last block: ``kernels.binary_linear`` dot products, then bias + batch norm in float32 ->
  class scores.
The model takes pixels like the float model and returns the same scores; ``KERNELS`` and
``int8_matmul`` remain as the plain baselines the binarize experiment compares against.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import functional as F
from .. import kernels
from ..nn.inference import InferenceModule, as_array, patches
from ..nn.module import Module, Sequential
from ..tensor import Tensor, no_grad
from .binarize import Binarize, _pm1
from .layers import BinaryConv2d, BinaryLinear

__all__ = ["pack_bool", "int8_matmul", "xnor_dot", "fold_threshold", "calibrate_threshold", "float_thresholds",
           "apply_threshold", "pack", "PackedBinaryModel", "PackedBinaryLinear", "PackedBinaryConv2d", "sign_path",
           "KERNELS"]

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

    Raises:
        ValueError: the arrays are not all 1-D of one length C, hold a NaN or infinity, or
            ``var + eps`` is not > 0 (a NaN threshold would cast to an arbitrary integer).
    """
    gamma, beta, mean, var = (np.asarray(a, dtype=np.float64) for a in (gamma, beta, mean, var))
    bias = np.zeros_like(gamma) if bias is None else np.asarray(bias, dtype=np.float64)
    parts = {"gamma": gamma, "beta": beta, "mean": mean, "var": var, "bias": bias}
    if gamma.ndim != 1 or any(a.shape != gamma.shape for a in parts.values()):
        got = ", ".join(f"{n} {a.shape}" for n, a in parts.items())
        raise ValueError(f"fold_threshold: expected 1-D per-channel arrays of one length, got {got}")
    bad = [n for n, a in parts.items() if not np.isfinite(a).all()]
    if bad:
        raise ValueError(f"fold_threshold: expected finite values, got NaN or infinity in {bad}")
    if not np.all(var + eps > 0):
        raise ValueError(f"fold_threshold: expected var + eps > 0 in every channel, got min {float(np.min(var + eps))!r}")
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


_FLOAT_RANGE = 1e30


def _float_keys(v):
    """Order-preserving int64 keys of float32 values (-0 and +0 share key 0)."""
    b = np.asarray(v, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(b >= 0, b, -(b & 0x7FFFFFFF))


def _keys_float(k):
    """Inverse of ``_float_keys``: int64 keys -> float32 values."""
    k = np.asarray(k, dtype=np.int64)
    b = np.where(k >= 0, k, (-k) | 0x80000000).astype(np.uint32)
    return b.view(np.float32)


def float_thresholds(fn, channels: int, spatial: bool = False):
    """Exact float32 thresholds of ``sign(fn(y))`` for a per-channel monotone ``fn`` (a batch norm).

    The first binary layer's output ``y`` is real, so its sign after batch norm is a step
    function of ``y`` over the float32 numbers; bisection on the ordered float32 values
    (33 steps, all channels at once) finds, per channel, the float where it steps.

    Returns (s, t): s (C,) float32 in {+1, -1}, t (C,) float32, such that
    ``s * y >= s * t`` (computed in float32; negation is exact) equals ``fn(y) >= 0`` for
    every float32 y with |y| <= 1e30 (far beyond any sum of pixels times +-1 weights; the
    bound keeps the batch norm's own arithmetic finite). Channels whose sign does not
    change in that range get t = -inf (always +1) or +inf (never).
    """
    big = np.float32(_FLOAT_RANGE)

    def positive(v):
        g = v.reshape((1, channels) + ((1, 1) if spatial else ()))
        with no_grad(), np.errstate(over="ignore", invalid="ignore"):
            z = fn(g)
        return np.asarray(z.data if isinstance(z, Tensor) else z).reshape(channels) >= 0

    at_lo, at_hi = positive(np.full(channels, -big, np.float32)), positive(np.full(channels, big, np.float32))
    up = ~at_lo & at_hi
    down = at_lo & ~at_hi
    lo = np.full(channels, _float_keys(-big), dtype=np.int64)   # up: fn < 0 here; down: fn >= 0 here
    hi = np.full(channels, _float_keys(big), dtype=np.int64)    # up: fn >= 0 here; down: fn < 0 here
    while np.any(hi - lo > 1):
        mid = lo + (hi - lo) // 2
        pos = positive(_keys_float(mid))
        move_lo = np.where(up, ~pos, pos)
        lo = np.where(move_lo, mid, lo)
        hi = np.where(move_lo, hi, mid)
    s = np.where(down, -1, 1).astype(np.float32)
    t = np.where(up, _keys_float(hi), np.where(down, _keys_float(lo), np.where(at_lo, -np.inf, np.inf)))
    return s, t.astype(np.float32)


def _bn_fn(bias, bn):
    """Bias then batch norm (eval) on float32 values, exactly as the float model computes them."""
    def fn(v):
        with no_grad():
            if bias is not None:
                v = v + bias.reshape((1, -1) + (1,) * (v.ndim - 2))
            return _to_array(bn.forward(Tensor(v))) if bn is not None else v
    return fn


def _check_post(post):
    """Split the modules after a binary layer into (max pools, batch norm or None); ValueError otherwise."""
    kinds = [_kind(m) for m in post]
    order = {"pool": 0, "bn": 1}
    if any(k not in order for k in kinds) or [order[k] for k in kinds] != sorted(order[k] for k in kinds) \
            or kinds.count("bn") > 1:
        names = [type(m).__name__ for m in post]
        raise ValueError(f"pack: after a binary layer expected [pooling...] [batch norm] [Flatten], got {names}")
    pools = [copy.deepcopy(m).eval() for m, k in zip(post, kinds) if k == "pool"]
    bns = [copy.deepcopy(m).eval() for m, k in zip(post, kinds) if k == "bn"]
    return pools, (bns[0] if bns else None)


class _PackedLayer(InferenceModule):
    """One block "binary layer -> [max pooling] -> [batch norm] -> sign" in packed form.

    Three roles: ``first`` (real input: the float model's own product, then an exact float
    threshold), hidden (packed bits in, ``kernels.binary_linear`` with integer thresholds,
    packed bits out) and ``last`` (packed bits in, integer dot products, then bias + batch
    norm in float32 -> class scores).
    """

    def _setup(self, layer, post, last, in_layout, threads, backend, first_mode="float"):
        self.first, self.last = not layer.binary_input, bool(last)
        self.first_mode = first_mode if self.first else None
        self.threads, self.backend = threads, backend
        self.wb = _binary_weight(layer)
        self.bias = None if layer.bias is None else layer.bias.data.copy()
        self.out_channels = self.wb.shape[0]
        self.k = int(np.prod(self.wb.shape[1:]))
        self.pools, bn = _check_post(post)
        object.__setattr__(self, "bn", bn)     # a frozen part of this layer, not a child module
        self.fn = _bn_fn(self.bias, self.bn)
        self.out_words = (self.out_channels + 63) // 64
        if not self.first:
            w = self.wb if self.wb.ndim == 2 else self.wb.transpose(0, 2, 3, 1)   # columns in (u, v, c) order
            w = w.reshape(self.out_channels, -1)
            positions, c = in_layout
            if positions > 1 or self.wb.ndim == 4:
                cw = (c + 63) // 64
                padded = np.ones((self.out_channels, w.shape[1] // c, cw * 64), dtype=np.float32)
                if self.wb.ndim == 2:      # float model flattens (C, H, W); packed bits arrive as (H, W, C)
                    w = w.reshape(self.out_channels, c, positions).transpose(0, 2, 1)
                padded[:, :, c:] = -1       # padding bits are 0 (-1) in activations and weights: they agree
                padded[:, :, :c] = w.reshape(self.out_channels, -1, c)
                w = padded.reshape(self.out_channels, -1)
            self.k_eff = w.shape[1]
            self.pad = self.k_eff - self.k
            self.w_bits = kernels.pack_bits(np.ascontiguousarray(w))
            if not self.last:
                s, t = calibrate_threshold(self.fn, self.k, self.out_channels, spatial=self.wb.ndim == 4)
                self.thresholds = (s.astype(np.int64) * t + self.pad).astype(np.int32)
                self.flip = s < 0
                self.flip_bits = kernels.pack_bits(np.where(self.flip, 1, -1)[None].astype(np.int8))[0] \
                    if self.wb.ndim == 4 else None
        elif not self.last:
            self.s, self.t = float_thresholds(self.fn, self.out_channels, spatial=self.wb.ndim == 4)
            self.st = self.s * self.t
            if first_mode == "int8":
                self._setup_int8_first()

    def _setup_int8_first(self):
        """The 8-bit-pixel first layer: ``D = p @ sign(w)^T`` exactly on the int8 kernel, then
        the sign of batch norm at ``float32(D / 255)`` as one integer threshold per unit.

        Pixels p = round(255 x) in [0, 255] enter as int8 codes p - 128 (the kernel's bias
        adds back 128 * sum(w)); a unit whose batch norm decreases (s = -1) gets its weight
        row negated, so every unit is "D' >= T"; with bias ``128 * sum(w') - T + 1`` and the
        output clipped to [0, 1] the fused call returns the bit itself.
        """
        K, O = self.k, self.out_channels
        top = 255 * K
        w = (self.wb.reshape(O, K) * self.s[:, None]).astype(np.int64)      # rows of down units negated
        # smallest D' with s * float32(s * D' / 255) >= s * t, searched around t * 255
        with np.errstate(invalid="ignore", over="ignore"):
            guess = np.where(np.isfinite(self.t), np.floor(self.s.astype(np.float64) * self.t * 255.0) - 2, 0)
        cand = np.clip(guess, -top - 2, top + 2)[:, None] + np.arange(6)[None, :]
        y = ((self.s[:, None] * cand) / 255.0).astype(np.float32)
        ok = y * self.s[:, None] >= self.st[:, None]
        T = np.where(ok.any(axis=1), cand[np.arange(O), ok.argmax(axis=1)], top + 2)
        T = np.where(np.isinf(self.t) & (self.t < 0), -top - 2, np.where(np.isinf(self.t), top + 2, T))
        # the step must lie inside the window, or beyond the reachable range [-top, top]
        placed = np.where(ok.any(axis=1), ~ok[:, 0] | (cand[:, 0] <= -top), cand[:, -1] >= top)
        if not np.all(placed | ~np.isfinite(self.t)):
            raise RuntimeError("pack: could not place an integer threshold for the 8-bit first layer")
        self.int8_weights = kernels.prepare_int8(np.ascontiguousarray(w.T.astype(np.int8)))
        self.int8_bias = (128 * w.sum(axis=1) - T + 1).astype(np.int32)

    def _first_bits_int8(self, x):
        """pixels x (N, K) float32 on the 1/255 grid -> packed bits, all integer arithmetic.
        Values outside [0, 1] are clipped to the 8-bit range first."""
        codes = np.rint(np.clip(x, 0, 1) * np.float32(255)).astype(np.int16)
        codes -= 128
        q = kernels.int8_linear(codes.astype(np.int8), self.int8_weights, bias=self.int8_bias, lo=0, hi=1,
                                threads=self.threads, backend=self.backend)
        return pack_bool(q.view(np.bool_))

    def _first_bits(self, y):
        """float pre-activations (rows, C) -> packed signs (rows, ceil(C/64)): ``s*y >= s*t`` per channel."""
        return pack_bool(y * self.s >= self.st)

    def _dot(self, x_bits):
        return kernels.binary_linear(x_bits, self.w_bits, self.k_eff, threads=self.threads, backend=self.backend)

    def _threshold(self, x_bits):
        return kernels.binary_linear(x_bits, self.w_bits, self.k_eff, self.thresholds, self.flip,
                                     threads=self.threads, backend=self.backend)

    def _scores(self, d):
        """Integer dot products (the float model's exact sums) -> bias + batch norm in float32."""
        return self.fn(d.astype(np.float32))

    def _pool_float(self, y):
        with no_grad():
            for p in self.pools:
                y = _to_array(p(Tensor(y)))
        return y

    def stored_values(self):
        extra = (0 if self.bn is None else 2 * self.out_channels) + (0 if self.bias is None else self.out_channels)
        return self.out_channels * self.k + (extra if self.first or self.last else self.out_channels)

    def stored_bytes(self):
        """1 bit per weight; float32 batch-norm and bias values (first/last block) or an int32
        threshold and a flip bit per channel (hidden blocks)."""
        n = self.out_channels * self.k
        extra = self.stored_values() - n
        if self.first or self.last:
            return -(-n // 8) + 4 * extra
        return -(-n // 8) + 4 * extra + -(-self.out_channels // 8)

    def inference_cost(self, x, y):
        size = self.out_channels * self.k
        macs = (int(np.prod(x.shape[:-1])) if self.wb.ndim == 2 else self._positions) * size
        return {"kind": "linear" if self.wb.ndim == 2 else "conv", "weights": size, "nonzero_weights": size,
                "macs": macs, "nonzero_macs": macs, "executed_macs": macs,
                "mult_op": None if self.first else "xnor1", "add_op": "float32_add" if self.first else "popcount1"}

    def _extra(self):
        role = (f"first: {'8-bit pixels, int8' if self.first_mode == 'int8' else 'float input'}" if self.first
                else ("last: scores" if self.last else "hidden: bits"))
        return f"{role}, K={self.k}, out={self.out_channels}"


class PackedBinaryLinear(_PackedLayer):
    """A binary linear block in packed form (see ``_PackedLayer`` for the three roles).

    forward: first: x (N, K) float32 pixels; hidden/last: x (N, ceil(K'/64)) uint64 packed
    bits -> (N, ceil(out/64)) uint64 bits, or (N, out) float32 scores for the last block.
    Raises ValueError for a wrong input shape or NaN pixels.
    """

    def __init__(self, layer, post=(), last=False, in_layout=None, threads=None, backend=None, first_mode="float"):
        super().__init__()
        self._setup(layer, list(post), last, in_layout or (1, layer.in_features), threads, backend, first_mode)
        if self.pools:
            raise ValueError("pack: pooling after a BinaryLinear is not supported")

    def forward(self, x):
        x = as_array(x)
        if self.first:
            if x.ndim != 2 or x.shape[1] != self.k:
                raise ValueError(f"PackedBinaryLinear: expected pixels of shape (N, {self.k}), got {x.shape}")
            x = x.astype(np.float32, copy=False)
            if np.isnan(x).any():
                raise ValueError(f"PackedBinaryLinear: expected pixels without NaN, got {int(np.isnan(x).sum())} "
                                 f"NaN entries in input of shape {x.shape}")
            if self.first_mode == "int8" and not self.last:
                return Tensor(self._first_bits_int8(np.ascontiguousarray(x)))
            with no_grad():
                y = _to_array(F.linear(Tensor(x), Tensor(self.wb), None if self.bias is None else Tensor(self.bias)))
            return Tensor(self.fn(y) if self.last else self._first_bits(y))
        words = (self.k_eff + 63) // 64
        if x.dtype != np.uint64 or x.ndim != 2 or x.shape[1] != words:
            raise ValueError(f"PackedBinaryLinear: expected packed bits uint64 (N, {words}), got {x.dtype} {x.shape}")
        x = np.ascontiguousarray(x)
        if self.last:
            return Tensor(self._scores(self._dot(x) - self.pad) if self.pad else self._scores(self._dot(x)))
        return Tensor(self._threshold(x))

    def extra_repr(self):
        return self._extra()


class PackedBinaryConv2d(_PackedLayer):
    """A binary convolution block in packed form, max pooling folded in.

    Hidden blocks keep activations channels-last and packed: (N, H, W, ceil(C/64)) uint64,
    channel c of pixel (h, w) in bit c % 64 of word c // 64. Their patch matrix is
    ``conv.im2col`` of the packed words (rows (N*OH*OW, kh*kw*ceil(C/64))), multiplied on
    ``kernels.binary_linear``; padding bits between channel groups agree with the
    weights' and are subtracted from the thresholds. Max pooling of a thresholded map is
    an OR of the bits (AND where the comparison is flipped), done on the packed words.

    forward: first: x (N, C, H, W) float32 pixels -> packed bits (N, OH', OW', ceil(O/64));
    hidden: packed bits -> packed bits; last: packed bits -> (N, O, OH', OW') float32 scores.
    Raises ValueError for a wrong input shape or NaN pixels.
    """

    def __init__(self, layer, post=(), last=False, in_layout=None, threads=None, backend=None):
        super().__init__()
        if layer.binary_input and layer.padding:
            raise ValueError(f"pack: BinaryConv2d with binary input and padding={layer.padding} pads with zeros, "
                             "which are not +-1 values; use padding=0")
        self.kernel_size, self.stride, self.padding = layer.kernel_size, layer.stride, layer.padding
        self.in_channels = layer.in_channels
        self._setup(layer, list(post), last, in_layout or (1, layer.in_channels), threads, backend)
        for p in self.pools:
            if type(p).__name__ != "MaxPool2d" or tuple(p.padding) != (0, 0):
                raise ValueError(f"pack: only max pooling without padding folds into a binary conv, got {p!r}")
        self._positions = 0

    def _pool_bits(self, b):
        """OR / AND pooling of packed bits (N, H, W, words) for each folded max pool."""
        for p in self.pools:
            (kh, kw), (sh, sw) = p.kernel_size, p.stride
            win = np.lib.stride_tricks.sliding_window_view(b, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
            any_ = np.bitwise_or.reduce(np.bitwise_or.reduce(win, axis=-1), axis=-1)
            all_ = np.bitwise_and.reduce(np.bitwise_and.reduce(win, axis=-1), axis=-1)
            b = np.ascontiguousarray((any_ & ~self.flip_bits) | (all_ & self.flip_bits))
        return b

    def forward(self, x):
        x = as_array(x)
        kh, kw = self.kernel_size
        if self.first:
            if x.ndim != 4 or x.shape[1] != self.in_channels:
                raise ValueError(f"PackedBinaryConv2d: expected pixels of shape (N, {self.in_channels}, H, W), "
                                 f"got {x.shape}")
            x = x.astype(np.float32, copy=False)
            if np.isnan(x).any():
                raise ValueError(f"PackedBinaryConv2d: expected pixels without NaN, got {int(np.isnan(x).sum())} "
                                 f"NaN entries in input of shape {x.shape}")
            with no_grad():
                y = _to_array(F.conv2d(Tensor(x), Tensor(self.wb), None if self.bias is None else Tensor(self.bias),
                                       stride=self.stride, padding=self.padding))
            self._positions = y.shape[0] * y.shape[2] * y.shape[3]
            y = self._pool_float(y)
            if self.last:
                return Tensor(self.fn(y))
            n, c, h, w = y.shape
            rows = np.ascontiguousarray(y.transpose(0, 2, 3, 1)).reshape(n * h * w, c)
            return Tensor(self._first_bits(rows).reshape(n, h, w, self.out_words))
        cw = (self.in_channels + 63) // 64
        if x.dtype != np.uint64 or x.ndim != 4 or x.shape[3] != cw:
            raise ValueError(f"PackedBinaryConv2d: expected packed bits uint64 (N, H, W, {cw}), got {x.dtype} "
                             f"{x.shape}")
        n, h, w, _ = x.shape
        cols = patches(self, x, kh, kw, self.stride, 0)
        oh, ow = (h - kh) // self.stride + 1, (w - kw) // self.stride + 1
        self._positions = n * oh * ow
        if self.last:
            d = (self._dot(cols) - self.pad).reshape(n, oh, ow, self.out_channels).transpose(0, 3, 1, 2)
            return Tensor(self.fn(self._pool_float(d.astype(np.float32))))
        b = self._threshold(cols).reshape(n, oh, ow, self.out_words)
        return Tensor(self._pool_bits(b))

    def extra_repr(self):
        return f"{self._extra()}, kernel_size={self.kernel_size}, stride={self.stride}"


class PackedBinaryModel(Sequential):
    """The result of ``bnn.pack``: packed binary blocks in order (an eval-only ``Sequential``).

    ``model(pixels)`` -> float32 scores Tensor, like the float model; ``hidden(pixels)``
    gives the +-1 activations each hidden block feeds to the next binary layer.
    """

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("PackedBinaryModel: a packed model is for inference only; train the float model "
                               "and pack it again")
        return super().train(False)

    def hidden(self, x) -> list:
        """int8 +-1 activations of every hidden block, shaped as the float model feeds them on
        ((N, C, H, W) before a binary conv, (N, features) before a binary linear)."""
        h = Tensor(np.asarray(as_array(x), dtype=np.float32))
        layers = list(self)
        out = []
        for i, m in enumerate(layers):
            h = m(h)
            if isinstance(m, _PackedLayer) and not m.last:
                bits = as_array(h)
                if bits.ndim == 4:          # (N, H, W, words) -> (N, C, H, W)
                    n, hh, ww, _ = bits.shape
                    pm = kernels.unpack_bits(bits.reshape(n * hh * ww, -1), m.out_channels)
                    pm = pm.reshape(n, hh, ww, m.out_channels).transpose(0, 3, 1, 2)
                    nxt = next(L for L in layers[i + 1:] if isinstance(L, _PackedLayer))
                    if isinstance(nxt, PackedBinaryLinear):
                        pm = pm.reshape(n, -1)
                else:
                    pm = kernels.unpack_bits(bits, m.out_channels)
                out.append(pm.astype(np.int8))
        return out


def pack(model: Module, threads=None, backend=None, first_layer: str = "float") -> PackedBinaryModel:
    """Lower a trained binarized ``Sequential`` to packed inference layers (a ``PackedBinaryModel``).

    The model is a sequence of blocks ``Binary{Linear,Conv2d} -> [max pooling] ->
    [BatchNorm] -> [Flatten]``; the first binary layer may take real inputs, all later ones
    must have ``binary_input=True``. Leading Flatten layers are allowed. Stochastic layers
    are packed with their deterministic (eval-mode) signs. Each block becomes one
    ``PackedBinaryLinear`` / ``PackedBinaryConv2d``: batch norm + sign folded into integer
    thresholds (exact float thresholds for the first block), packed bits between hidden
    blocks, float32 scores from the last.

    ``first_layer``: "float" (default) runs the first block's real pixels times the binary
    weights with the float model's own call, so the packed model equals the float sign
    path *exactly*. "int8" takes the pixels as 8-bit images (p = round(255 x)) and computes
    the exact integer dot products ``D`` on the int8 kernel with the batch norm + sign
    folded into an integer threshold on ``D``: it equals the network evaluated with exact
    sums (batch norm at ``float32(D / 255)``), and differs from the float32 evaluation only
    where the float model's rounded sum falls on the other side of a threshold (the
    benchmark counts such images). A first linear block only.

    Raises:
        ValueError: an unsupported module, block order, a padded binary-input conv, an
            unknown ``first_layer`` or "int8" for a convolutional or last first block.
    """
    if first_layer not in ("float", "int8"):
        raise ValueError(f"pack: expected first_layer 'float' or 'int8', got {first_layer!r}")
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
    for i in idx:
        if layers[i].weight.find_transform(Binarize) is None:
            raise ValueError("pack: a binary layer has lost its Binarize transform (was it baked?)")
    out = [copy.deepcopy(m) for m in layers[:lead]]
    bounds = idx + [len(layers)]
    layout = None                    # (positions, channels) of the packed bits flowing in
    for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        block = layers[a + 1:b]
        flat = [m for m in block if _kind(m) == "flatten"]
        post = [m for m in block if _kind(m) != "flatten"]
        if flat and block[-1] is not flat[0] or len(flat) > 1:
            raise ValueError(f"pack: a Flatten may only end a block, got {[type(m).__name__ for m in block]}")
        layer, last = layers[a], j == len(idx) - 1
        if j == 0 and first_layer == "int8" and (isinstance(layer, BinaryConv2d) or last):
            raise ValueError("pack: first_layer='int8' needs a first BinaryLinear block followed by others")
        if isinstance(layer, BinaryConv2d):
            packed = PackedBinaryConv2d(layer, post, last, layout, threads, backend)
        else:
            if layout is not None and layout[1] != layer.in_features:     # fed by a conv: (H*W, C)
                layout = (layer.in_features // layout[1], layout[1])
            packed = PackedBinaryLinear(layer, post, last, layout, threads, backend,
                                        first_layer if j == 0 else "float")
        out.append(packed)
        if flat:
            out.append(copy.deepcopy(flat[0]))
        layout = (1, packed.out_channels)       # a linear after a conv fixes the positions above
    return PackedBinaryModel(*out).eval()



def sign_path(model: Module, x) -> tuple:
    """Run the float model in eval mode and return (scores, hidden signs).

    The hidden signs are int8 +-1 arrays: the sign (0 -> +1) of each block's output that
    feeds a binary-input layer, i.e. what that layer binarizes. They are what
    ``PackedBinaryModel.hidden(x)`` must reproduce exactly.
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
