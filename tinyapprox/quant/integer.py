"""Integer arithmetic of quantized inference: requantization, rounding shifts, overflow.

``quant.convert`` (``quant.lowered``) runs a calibrated fake-quant model on integers with
these pieces:

* ``multiplier(M)`` writes a positive real multiplier ``M = s_acc / s_out`` as
  ``m0 * 2^-shift`` with ``m0`` an int in [2^30, 2^31), and ``requantize`` maps an integer
  accumulator to the next layer's codes ``clip(round(acc * m0 / 2^shift), lo, hi)`` with
  ``acc * m0`` in int64 and an arithmetic right shift that rounds half to even
  (``round_shift``) -- the project's one requantizer, which the fused C kernel
  (``kernels.int8_linear``) and its NumPy twin compute bit for bit; a ReLU just before is
  fused into the clip (``lo = 0``);
* ``wrap`` is what a narrow accumulator does on overflow, and ``accumulator_bound`` says
  whether a K-term dot product of given value ranges can overflow an int32 (or int16)
  accumulator -- the lecture's overflow caveat, reported per layer by the converted
  model's ``check()``;
* ``pow2_matmul``: the product with power-of-two weights by shifts and adds only.

Why integer inference equals the simulation exactly: when every scale is a power of two
``M`` is a power of two, ``m0 = 2^30``, and requantization is a pure shift with the same
ties-to-even rule as ``np.rint`` in the simulation. The simulation's float32 arithmetic is
itself exact as long as ``K * max|q_x| * max|q_w| + max|q_b| < 2^24``. With arbitrary float
scales ``M`` is rounded to 31 bits and results may differ from the float simulation by
one step in rare cases.
"""
from __future__ import annotations

import numpy as np


__all__ = ["round_shift", "requantize", "multiplier", "wrap", "accumulator_bound", "pow2_matmul",
           "pow2_matmul_reference"]


def round_shift(v: np.ndarray, s) -> np.ndarray:
    """``round(v / 2^s)`` for integer ``v`` and integer shifts ``s`` (broadcast), ties to even.

    ``s <= 0`` is an exact left shift. For ``s > 0`` it is one expression of adds and
    arithmetic shifts: ``(v + 2^(s-1) - 1 + ((v >> s) & 1)) >> s`` — with ``v = q 2^s + r``,
    ``0 <= r < 2^s``, this is q when r is below half, q + 1 above, and the even one of the
    two at exactly half. Equal to ``np.rint(v / 2**s)``. Works in int64.
    """
    v = np.asarray(v, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    if s.ndim == 0 and int(s) <= 0:
        return v << int(-s)
    pos = np.maximum(s, 0)
    half = np.left_shift(np.int64(1), np.maximum(pos - 1, 0)) * (pos > 0)
    q = (v + half - (pos > 0) + ((v >> pos) & 1) * (pos > 0)) >> pos
    if s.ndim == 0:
        return q
    return np.where(s < 0, v << np.maximum(-s, 0), q)


def multiplier(M):
    """Integer form of a positive real multiplier: ``M = m0 * 2^-(30 + k)`` with ``m0`` in [2^30, 2^31).

    Returns ``(m0, shift)`` as int64 arrays (``shift = 30 + k``); a power of two gives
    ``m0 = 2^30`` exactly. Raises ValueError for non-positive or non-finite M.
    """
    M = np.asarray(M, dtype=np.float64)
    if not np.all(np.isfinite(M)) or np.any(M <= 0):
        raise ValueError(f"requantize: multipliers must be finite and > 0, got {M}")
    f, e = np.frexp(M)                       # M = f * 2^e, f in [0.5, 1)
    m0 = np.rint(np.ldexp(f, 31)).astype(np.int64)
    e = e.astype(np.int64)
    carry = m0 == 2 ** 31
    m0 = np.where(carry, 2 ** 30, m0)
    e = np.where(carry, e + 1, e)
    return m0, 31 - e


def requantize(acc, M, lo, hi, relu=False, channel_axis=1):
    """Integer requantization ``clip(round(acc * M), lo, hi)`` with ``M = m0 * 2^-shift``.

    Args:
        acc: int32/int64 accumulators, any shape; M: scalar or per-channel (along
            ``channel_axis``) positive multipliers ``s_acc / s_out``; lo, hi: code range;
            relu: clip below at max(lo, 0) (ReLU fused).
    Returns int64 codes. Rounding: half to even (``round_shift``).
    """
    acc = np.asarray(acc, dtype=np.int64)
    m0, shift = multiplier(M)
    if m0.ndim:
        shape = [1] * acc.ndim
        shape[channel_axis] = m0.size
        m0, shift = m0.reshape(shape), shift.reshape(shape)
    if np.all(m0 == 2 ** 30):           # a power-of-two multiplier: one rounding shift, no product
        q = round_shift(acc, shift - 30)
    else:
        q = round_shift(acc * m0, shift)
    return np.clip(q, max(lo, 0) if relu else lo, hi)


def wrap(v, bits):
    """Two's-complement wrap-around of integers to ``bits`` (what a narrow adder does)."""
    v = np.asarray(v, dtype=np.int64)
    half = 1 << (bits - 1)
    return ((v + half) & ((1 << bits) - 1)) - half


def accumulator_bound(K, x_max, w_max, b_max=0, acc_bits=32, w_abs_row_sums=None):
    """Can a dot product overflow a signed ``acc_bits`` accumulator?

    Worst case ``|acc| <= K * x_max * w_max + b_max`` (or, tighter, with the actual weights,
    ``x_max * max_row sum_j |w_j| + b_max`` when ``w_abs_row_sums`` is given). Returns
    ``{"bound", "limit", "safe", "headroom_bits"}`` with ``limit = 2^(acc_bits-1) - 1``.
    """
    if w_abs_row_sums is not None:
        bound = int(x_max) * int(np.max(w_abs_row_sums, initial=0)) + int(b_max)
    else:
        bound = int(K) * int(x_max) * int(w_max) + int(b_max)
    limit = 2 ** (acc_bits - 1) - 1
    head = float(np.log2(limit / bound)) if bound > 0 else float("inf")
    return {"bound": bound, "limit": limit, "safe": bound <= limit, "headroom_bits": head}


# --------------------------------------------------------------- power-of-two weights
def pow2_matmul(x_int, sign, exp, min_exp):
    """``z[n, o] = sum_j sign[o, j] * (x[n, j] << (exp[o, j] - min_exp))`` — shifts and adds only.

    Args:
        x_int: (N, K) integer activation codes (fixed point, any scale).
        sign: (O, K) in {-1, 0, +1} (0 = pruned / underflowed weight); exp: (O, K) exponents
            >= min_exp.
    Returns int64 (N, O); the real product is ``z * 2^min_exp * x_scale``.

    One pass per exponent value e: every activation is shifted left by ``e - min_exp`` once,
    then the shifted values are added (weight sign +1) or subtracted (sign -1) into the
    outputs that use exponent e — the sums are a product with a 0/1 selection matrix.
    """
    x = np.asarray(x_int, dtype=np.int64)
    sign, exp = np.asarray(sign), np.asarray(exp, dtype=np.int64)
    if x.ndim != 2 or sign.shape != exp.shape or sign.ndim != 2 or sign.shape[1] != x.shape[1]:
        raise ValueError(f"pow2_matmul: expected x (N, K), sign and exp (O, K); got {x.shape}, {sign.shape}, "
                         f"{exp.shape}")
    z = np.zeros((x.shape[0], sign.shape[0]), dtype=np.int64)
    for e in np.unique(exp[sign != 0]):
        shifted = x << (int(e) - min_exp)
        plus = ((sign > 0) & (exp == e)).astype(np.int64)
        minus = ((sign < 0) & (exp == e)).astype(np.int64)
        z += shifted @ plus.T - shifted @ minus.T
    return z


def pow2_matmul_reference(x_int, sign, exp, min_exp):
    """The literal loop of ``pow2_matmul`` (slow; for tests)."""
    x = np.asarray(x_int, dtype=np.int64)
    N, K = x.shape
    O = sign.shape[0]
    z = np.zeros((N, O), dtype=np.int64)
    for n in range(N):
        for o in range(O):
            acc = 0
            for j in range(K):
                if sign[o, j] > 0:
                    acc += int(x[n, j]) << int(exp[o, j] - min_exp)
                elif sign[o, j] < 0:
                    acc -= int(x[n, j]) << int(exp[o, j] - min_exp)
            z[n, o] = acc
    return z
