"""Hidden mutation grading of the "write the property" exercises.

A student's ``check_*`` function passes when it (1) holds on the reference for every
hypothesis example and (2) fails, for at least one example of a fixed pool, on each
planted buggy implementation (mutant) below. The pools are deterministic and include the
corners each mutant hides in, so a property that states the whole contract catches all.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinyapprox.prune import criteria
from tinyapprox.sparse import formats as sparse_formats
from tinyapprox.testing import properties as P
from tinyapprox.testing import strategies as tst


def _catches(check, *args) -> bool:
    try:
        check(*args)
    except AssertionError:
        return True
    return False


# ---------------------------------------------------------------- fake quantization
def fq_identity(x, bits, max_abs):
    """Returns x unchanged: zero error, but not on the grid."""
    return np.asarray(x, dtype=np.float64)


def fq_floor(x, bits, max_abs):
    """Rounds down instead of to nearest: errors up to a whole step."""
    qmax = 2 ** (bits - 1) - 1
    step = max_abs / qmax
    return np.clip(np.floor(np.asarray(x, dtype=np.float64) / step), -qmax, qmax) * step


def fq_wide_grid(x, bits, max_abs):
    """Uses 2^bits - 1 levels on each side: a finer grid than b bits can hold."""
    step = max_abs / (2 ** bits - 1)
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / step), -(2 ** bits - 1), 2 ** bits - 1) * step


def fq_early_saturation(x, bits, max_abs):
    """Saturates one step early (qmax - 1): the top of the range is off by a step."""
    qmax = 2 ** (bits - 1) - 1
    step = max_abs / qmax
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / step), -(qmax - 1), qmax - 1) * step


def _fq_pool():
    rng = np.random.default_rng(7)
    pool = []
    for bits in (2, 3, 4, 8):
        for max_abs in (1.0, 0.3, 6.0):
            step = max_abs / (2 ** (bits - 1) - 1)
            grid = np.arange(-(2 ** (bits - 1) - 1), 2 ** (bits - 1)) * step
            x = np.concatenate([grid, grid + 0.4 * step, grid - 0.3 * step, grid + 0.8 * step,
                                [-max_abs, max_abs], rng.uniform(-max_abs, max_abs, 8)])
            pool.append((np.clip(x, -max_abs, max_abs), bits, max_abs))
    return pool


@st.composite
def fq_examples(draw):
    bits = draw(st.integers(2, 8))
    max_abs = draw(st.sampled_from([0.1, 1.0, 2.5, 7.0]))
    step = max_abs / (2 ** (bits - 1) - 1)
    x = draw(tst.near_steps(step, n_steps=2 ** (bits - 1) + 2))
    return x, bits, max_abs


@pytest.mark.ex_prop_fake_quant
@given(fq_examples())
def test_fake_quant_property_holds_on_the_reference(example):
    P.check_fake_quant_error(P.fake_quant_symmetric, *example)


@pytest.mark.ex_prop_fake_quant
@pytest.mark.parametrize("mutant", [fq_identity, fq_floor, fq_wide_grid, fq_early_saturation],
                         ids=lambda m: m.__name__)
def test_fake_quant_property_catches(mutant):
    assert any(_catches(P.check_fake_quant_error, mutant, *ex) for ex in _fq_pool()), \
        f"the property passes on a buggy fake quantizer: {mutant.__doc__}"


# -------------------------------------------------------------------- CSR round trip
def csr_lose_last_row(dense):
    """Forgets the entries of the last row."""
    indptr, indices, data = sparse_formats.csr_arrays(dense)
    if len(indptr) < 2:
        return indptr, indices, data
    n = indptr[-2]
    return np.concatenate([indptr[:-1], [n]]), indices[:n], data[:n]


def csr_swap_axes(dense):
    """Encodes the transpose (rows and columns swapped)."""
    d = np.asarray(dense)
    indptr, indices, data = sparse_formats.csr_arrays(d.T)
    m = d.shape[0]
    if len(indptr) != m + 1:  # make the arrays fit the original row count where possible
        indptr = np.concatenate([indptr, np.full(max(m + 1 - len(indptr), 0), indptr[-1])])[:m + 1]
    keep = indptr[-1]
    return indptr, np.minimum(indices[:keep], max(d.shape[1] - 1, 0)), data[:keep]


def csr_keep_zeros(dense):
    """Stores every entry, zeros included (a dense array in CSR clothes)."""
    d = np.asarray(dense, dtype=np.float32)
    m, k = d.shape
    indptr = np.arange(m + 1, dtype=np.int64) * k
    return indptr, np.tile(np.arange(k, dtype=np.int32), m), d.ravel().copy()


def csr_drop_tiny(dense):
    """Treats |value| < 1e-3 as zero."""
    d = np.asarray(dense, dtype=np.float32)
    return sparse_formats.csr_arrays(np.where(np.abs(d) < 1e-3, 0, d))


def _csr_pool():
    rng = np.random.default_rng(11)
    pool = [np.zeros((2, 3), np.float32), np.eye(3, dtype=np.float32), np.array([[0, 5e-4], [2, 0], [0, -3]], np.float32)]
    for m, k, density in ((3, 5, 0.5), (5, 2, 0.7), (4, 4, 0.3), (1, 6, 1.0), (6, 1, 0.5)):
        d = rng.standard_normal((m, k)).astype(np.float32)
        pool.append(np.where(rng.random((m, k)) < density, d, 0).astype(np.float32))
    return pool


@pytest.mark.ex_prop_csr_round_trip
@given(tst.sparse_matrices())
def test_csr_property_holds_on_the_reference(dense):
    P.check_csr_round_trip(sparse_formats.csr_arrays, P.csr_decode, dense)


@pytest.mark.ex_prop_csr_round_trip
@pytest.mark.parametrize("mutant", [csr_lose_last_row, csr_swap_axes, csr_keep_zeros, csr_drop_tiny],
                         ids=lambda m: m.__name__)
def test_csr_property_catches(mutant):
    def decode(indptr, indices, data, shape):
        try:
            return P.csr_decode(indptr, indices, data, shape)
        except (ValueError, TypeError, IndexError):  # arrays no CSR can hold: return something wrong
            return np.full(shape, np.nan, dtype=np.float32)
    assert any(_catches(P.check_csr_round_trip, mutant, decode, d) for d in _csr_pool()), \
        f"the property passes on a buggy CSR encoder: {mutant.__doc__}"


# ------------------------------------------------------------- pruning never revives
def prune_fresh_mask(w, mask, amount):
    """Ignores the old mask and prunes from scratch: revives large pruned weights."""
    return criteria.magnitude_keep_mask(np.asarray(w, dtype=np.float64), amount, "element")


def prune_revive_at_zero(w, mask, amount):
    """With amount 0 it returns an all-kept mask (revives everything)."""
    if amount == 0:
        return np.ones(np.shape(mask), dtype=bool)
    return P.magnitude_prune_step(w, mask, amount)


def prune_largest_first(w, mask, amount):
    """Prunes the largest surviving weights instead of the smallest."""
    return P.magnitude_prune_step(-1.0 / (np.abs(np.asarray(w, dtype=np.float64)) + 1e-3), mask, amount)


def prune_one_short(w, mask, amount):
    """Prunes one weight fewer than asked whenever it prunes any."""
    a = np.abs(np.asarray(w, dtype=np.float64)).ravel()
    keep = np.asarray(mask, dtype=bool).ravel().copy()
    extra = int(round(amount * a.size)) - int(np.count_nonzero(~keep)) - 1
    if extra > 0:
        alive = np.flatnonzero(keep)
        keep[alive[np.argsort(a[alive], kind="stable")[:extra]]] = False
    return keep.reshape(np.shape(mask))


def _prune_pool():
    rng = np.random.default_rng(5)
    pool = []
    for shape in ((4, 5), (3, 3), (2, 8)):
        w = rng.standard_normal(shape)
        big = np.abs(w) > np.quantile(np.abs(w), 0.7)  # an old mask that pruned large weights
        for mask in (np.ones(shape, bool), ~big, rng.random(shape) > 0.3):
            for amount in (0.0, 0.25, 0.5, 0.8):
                pool.append((w, mask, amount))
    return pool


@st.composite
def prune_examples(draw):
    shape = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    w = draw(hnp.arrays(np.float64, shape, elements=tst.finite_floats(-3, 3)))
    mask = draw(hnp.arrays(bool, shape))
    return w, mask, draw(st.sampled_from([0.0, 0.2, 0.5, 0.75, 1.0]))


@pytest.mark.ex_prop_no_revive
@given(prune_examples())
def test_no_revive_property_holds_on_the_reference(example):
    P.check_no_revive(P.magnitude_prune_step, *example)


@pytest.mark.ex_prop_no_revive
@pytest.mark.parametrize("mutant", [prune_fresh_mask, prune_revive_at_zero, prune_largest_first, prune_one_short],
                         ids=lambda m: m.__name__)
def test_no_revive_property_catches(mutant):
    assert any(_catches(P.check_no_revive, mutant, *ex) for ex in _prune_pool()), \
        f"the property passes on a buggy pruning step: {mutant.__doc__}"
