"""Integer arithmetic of quantized inference: requantization, rounding shifts, overflow.

``quant.convert`` (``quant.lowered``) runs a calibrated fake-quant model on integers with
these pieces:

* ``multiplier(M)`` writes a positive real multiplier ``M = s_acc / s_out`` as
  ``m0 * 2^-shift`` with ``m0`` an int in [2^30, 2^31), and ``requantize`` maps an integer
  accumulator to the next layer's codes ``clip(round(acc * m0 / 2^shift), lo, hi)`` with
  ``acc * m0`` in int64 and an arithmetic right shift that rounds half to even
  (``round_shift``) -- the project's one requantizer, ``kernels.reference.requantize``
  (re-exported here with ``multiplier`` and ``round_shift``), which the fused C kernel
  (``kernels.int8_linear``) computes bit for bit; a ReLU just before is fused into the
  clip (``lo = 0``);
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

from ..kernels.reference import multiplier, requantize, round_shift  # the one requantizer, re-exported

__all__ = ["round_shift", "requantize", "multiplier", "wrap", "accumulator_bound", "pow2_matmul",
           "pow2_matmul_reference"]


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
    """The literal loop of ``pow2_matmul`` (slow; for tests, and an exercise).

    x_int: (N, K) integers; sign: (O, K) in {-1, 0, +1}; exp: (O, K) >= min_exp.
    Returns int64 (N, O): ``z[n, o] = sum_j sign[o, j] * (x[n, j] << (exp[o, j] - min_exp))``
    with Python integers (no overflow), shifts and adds only.
    """
    x = np.asarray(x_int, dtype=np.int64)
    N, K = x.shape
    O = sign.shape[0]
    # BEGIN SOLUTION
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
    # END SOLUTION


# ----------------------------------------------------------------------------- exercises
def requantize_int8(acc, M, zero_point: int = 0) -> np.ndarray:
    """int32 accumulators to int8 codes with integer arithmetic only (exercise).

    ``clip(round(acc * M) + zero_point, -128, 127)`` where ``M`` (a positive scalar, e.g.
    ``s_in * s_w / s_out``) is applied as ``m0 * 2^-shift`` from ``multiplier(M)`` and the
    rounding is ``round_shift`` (half to even). acc: int array, any shape, |acc| < 2^31.
    Returns int8 of acc's shape. Raises ValueError for M <= 0 or a zero point outside int8.
    """
    if int(zero_point) != zero_point or not -128 <= zero_point <= 127:
        raise ValueError(f"requantize_int8: expected an integer zero_point in [-128, 127], got {zero_point}")
    acc = np.asarray(acc, dtype=np.int64)
    m0, shift = multiplier(M)
    # BEGIN SOLUTION
    q = round_shift(acc * m0, shift) + int(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)
    # END SOLUTION
