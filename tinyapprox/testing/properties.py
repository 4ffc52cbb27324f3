"""Properties that students write, graded by mutation (exercises in the style of minitorch's task 0.2).

Each ``check_*`` function states one property of an implementation on one example: it
calls the implementation it is given and raises ``AssertionError`` (a plain ``assert``)
when the property fails. A hypothesis test then runs the check over many examples. The
grader accepts a check when it passes on the reference implementation here and fails on
each of several planted buggy implementations (mutants) for at least one example.

The references:

* ``fake_quant_symmetric(x, bits, max_abs)``: symmetric uniform fake quantization;
* ``csr_arrays`` / ``csr_decode``: dense -> CSR arrays -> dense;
* ``magnitude_prune_step(w, mask, amount)``: one magnitude-pruning step that never revives.
"""
from __future__ import annotations

import numpy as np

from ..sparse.formats import CSR, csr_arrays

__all__ = ["fake_quant_symmetric", "csr_arrays", "csr_decode", "magnitude_prune_step",
           "check_fake_quant_error", "check_csr_round_trip", "check_no_revive"]


# ----------------------------------------------------------------------------- references
def fake_quant_symmetric(x, bits: int, max_abs: float) -> np.ndarray:
    """Round x to the grid ``k * step``, ``step = max_abs / (2^(bits-1) - 1)``, |k| <= 2^(bits-1) - 1.

    x: real array -> float64 of x's shape; values beyond ``max_abs`` saturate. bits >= 2, max_abs > 0.
    """
    qmax = 2 ** (bits - 1) - 1
    step = max_abs / qmax
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / step), -qmax, qmax) * step


def csr_decode(indptr, indices, data, shape) -> np.ndarray:
    """The dense (M, K) float32 array the CSR arrays describe (validated by ``CSR``)."""
    return CSR(indptr, indices, data, shape).to_dense()


def magnitude_prune_step(w, mask, amount: float) -> np.ndarray:
    """New keep mask pruning ``round(amount * w.size)`` weights in total, smallest |w| first.

    Weights that ``mask`` (bool, w's shape, True = kept) already prunes stay pruned and
    count towards the amount; when they already exceed it nothing more is pruned. Among
    the kept weights, equal magnitudes are pruned in flat-index order.
    """
    a = np.abs(np.asarray(w, dtype=np.float64)).ravel()
    keep = np.asarray(mask, dtype=bool).ravel().copy()
    extra = int(round(amount * a.size)) - int(np.count_nonzero(~keep))
    if extra > 0:
        alive = np.flatnonzero(keep)
        keep[alive[np.argsort(a[alive], kind="stable")[:extra]]] = False
    return keep.reshape(np.shape(mask))


# ----------------------------------------------------------------------- the exercises
def check_fake_quant_error(fake_quant, x, bits: int, max_abs: float) -> None:
    """State what symmetric b-bit fake quantization over [-max_abs, max_abs] guarantees.

    ``fake_quant(x, bits, max_abs)`` must behave like ``fake_quant_symmetric``; write the
    property, not a copy of it: the output has x's shape, every output is a whole number
    of steps (``step = max_abs / (2^(bits-1) - 1)``) within ``[-max_abs, max_abs]``, and
    every x inside the range moves by at most half a step. Raise AssertionError when not.
    """
    # BEGIN SOLUTION
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(fake_quant(x, bits, max_abs), dtype=np.float64)
    step = max_abs / (2 ** (bits - 1) - 1)
    assert y.shape == x.shape, f"shape {y.shape} != {x.shape}"
    k = y / step
    assert np.allclose(k, np.rint(k), rtol=0, atol=1e-6), "an output is not a whole number of steps"
    assert np.all(np.abs(y) <= max_abs * (1 + 1e-12)), "an output lies outside the range"
    inside = np.abs(x) <= max_abs
    err = np.abs(y - x)[inside]
    assert np.all(err <= step / 2 * (1 + 1e-9)), f"error {err.max()} > half a step {step / 2}"
    # END SOLUTION


def check_csr_round_trip(encode, decode, dense) -> None:
    """State what a CSR encoder/decoder pair guarantees for a dense (M, K) float32 array.

    ``encode(dense) -> (indptr, indices, data)``; ``decode(indptr, indices, data, shape)``
    returns a dense array. The property: decoding the encoding gives back exactly the same
    array (same shape, same bits), and exactly the non-zero entries are stored.
    """
    # BEGIN SOLUTION
    dense = np.asarray(dense, dtype=np.float32)
    indptr, indices, data = encode(dense)
    back = np.asarray(decode(indptr, indices, data, dense.shape))
    assert back.shape == dense.shape, f"round trip changed the shape {dense.shape} -> {back.shape}"
    assert np.array_equal(back, dense), "round trip changed values"
    assert len(data) == np.count_nonzero(dense), f"stored {len(data)} entries for {np.count_nonzero(dense)} non-zeros"
    # END SOLUTION


def check_no_revive(prune_step, w, mask, amount: float) -> None:
    """State what one magnitude-pruning step with an existing mask guarantees.

    ``prune_step(w, mask, amount) -> new mask`` (bool, True = kept) must never revive a
    weight ``mask`` prunes, must prune ``max(round(amount * w.size), already pruned)``
    weights in total, and every weight it newly prunes must be no larger in |w| than every
    weight it keeps.
    """
    # BEGIN SOLUTION
    w, mask = np.asarray(w, dtype=np.float64), np.asarray(mask, dtype=bool)
    new = np.asarray(prune_step(w, mask, amount), dtype=bool)
    assert new.shape == mask.shape, f"mask shape {new.shape} != {mask.shape}"
    assert not np.any(new & ~mask), "a pruned weight was revived"
    want = max(int(round(amount * w.size)), int(np.count_nonzero(~mask)))
    assert int(np.count_nonzero(~new)) == want, f"pruned {np.count_nonzero(~new)}, expected {want}"
    newly = mask & ~new
    if newly.any() and new.any():
        assert np.abs(w[newly]).max() <= np.abs(w[new]).min(), "a larger weight was pruned before a smaller one"
    # END SOLUTION
