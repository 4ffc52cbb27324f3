"""Visible tests of the course exercises: one small worked example each.

Run one exercise with its marker: ``pytest tests/exercises -m ex_csr``. The hidden tests
(``tinyapprox course grade``) check the same functions with hypothesis properties.
Functions are reached through their module (``criteria.magnitude_keep_mask``) so that the
grader can swap in a submission's version.
"""
import importlib

import numpy as np
import pytest

import tinyapprox as ta
from tinyapprox import functional as F
from tinyapprox.bnn import packing
from tinyapprox.optim import races, stored
from tinyapprox.prune import criteria, schedules
from tinyapprox.quant import fake, formats, integer
from tinyapprox.sparse import formats as sparse_formats
from tinyapprox.testing import gradcheck
from tinyapprox.testing import properties as P

binarize = importlib.import_module("tinyapprox.bnn.binarize")  # the package re-exports a function of that name


# ------------------------------------------------------------------------- pruning
@pytest.mark.ex_magnitude_mask
def test_magnitude_mask_by_hand():
    w = np.array([[0.1, -3.0, 0.2], [2.0, -0.05, 1.0]])
    keep = criteria.magnitude_keep_mask(w, 0.5, "element")
    np.testing.assert_array_equal(keep, [[False, True, False], [True, False, True]])
    w4 = np.arange(2 * 2 * 1 * 2, dtype=float).reshape(2, 2, 1, 2) - 1  # filter 0 is smaller
    np.testing.assert_array_equal(criteria.magnitude_keep_mask(w4, 0.5, "filter")[:, 0, 0, 0], [False, True])


@pytest.mark.ex_agp_sparsity
def test_agp_sparsity_by_hand():
    assert schedules.agp_sparsity(0, 0.8, 0, 10) == 0.0
    assert schedules.agp_sparsity(10, 0.8, 0, 10) == pytest.approx(0.8)
    assert schedules.agp_sparsity(5, 0.8, 0, 10) == pytest.approx(0.8 * (1 - 0.5 ** 3))


@pytest.mark.ex_csr
def test_csr_by_hand():
    dense = np.array([[0, 2, 0, 1], [0, 0, 0, 0], [3, 0, 0, 4]], dtype=np.float32)
    indptr, indices, data = sparse_formats.csr_arrays(dense)
    np.testing.assert_array_equal(indptr, [0, 2, 2, 4])
    np.testing.assert_array_equal(indices, [1, 3, 0, 3])
    np.testing.assert_array_equal(data, [2, 1, 3, 4])
    assert sparse_formats.csr_nbytes(3, 4) == 4 * 4 + 4 * 4 + 4 * 8


# -------------------------------------------------------------------- quantization
@pytest.mark.ex_dfp_quantize
def test_dfp_quantize_by_hand():
    codes, fl = formats.dfp_quantize(np.array([0.75, -1.5, 0.1]), bits=8)
    assert fl == 6  # max |x| = 1.5 -> IL = 1 + 1 (sign) = 2, FL = 8 - 2
    np.testing.assert_array_equal(codes, [48, -96, 6])


@pytest.mark.ex_int8_quantize
def test_int8_quantize_by_hand():
    q = formats.quantize_int8(np.array([0.0, 0.25, 0.75, 100.0, -100.0]), scale=0.5, zero_point=3)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, [3, 3, 5, 127, -128])  # 0.5 and 1.5 round to the even 0 and 2


@pytest.mark.ex_requantize
def test_requantize_by_hand():
    acc = np.array([1000, -1000, 300, 10 ** 6], dtype=np.int32)
    np.testing.assert_array_equal(integer.requantize_int8(acc, 0.01), [10, -10, 3, 127])
    np.testing.assert_array_equal(integer.requantize_int8(np.array([5, 7]), 0.5, zero_point=-5), [-3, -1])  # ties to even


@pytest.mark.ex_pow2_matmul
def test_pow2_matmul_by_hand():
    x = np.array([[3, -1]])
    sign = np.array([[1, -1], [0, 1]])
    exp = np.array([[-1, -3], [-3, -2]])
    np.testing.assert_array_equal(integer.pow2_matmul_reference(x, sign, exp, min_exp=-3), [[13, -2]])


# -------------------------------------------------------------------- binarization
@pytest.mark.ex_stochastic_sign
def test_stochastic_sign_by_hand():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    u = np.array([0.0, 0.2, 0.6, 0.7, 0.99])
    np.testing.assert_array_equal(binarize.stochastic_sign_from_uniform(x, u), [-1, 1, -1, 1, 1])


@pytest.mark.ex_bit_packing
def test_bit_packing_by_hand():
    v = np.array([1.0, -1.0, 0.0, -2.0] + [-1.0] * 60 + [5.0])  # 65 entries: two words
    words = packing.pack_signs(v)
    np.testing.assert_array_equal(words, np.array([0b101, 1], dtype=np.uint64))
    w = -v
    assert packing.xnor_popcount_dot(words, packing.pack_signs(w), 65) == int(np.sign(v + 1e-9) @ np.sign(w + 1e-9))


@pytest.mark.ex_bn_threshold
def test_bn_threshold_by_hand():
    s, t = packing.bn_sign_threshold(np.array([2.0, -1.0]), np.array([-1.0, 0.5]), np.array([1.0, 0.0]),
                                     np.array([3.0, 0.0]), eps=1.0)
    # channel 0: 2 (d - 1) / 2 - 1 >= 0 iff d >= 2; channel 1: -d + 0.5 >= 0 iff d <= 0.5 iff -d >= 0
    np.testing.assert_array_equal(s, [1, -1])
    np.testing.assert_array_equal(t, [2, 0])


# ------------------------------------------------------------------------ training
@pytest.mark.ex_lost_updates
def test_lost_updates_by_hand():
    race = [(0, "read"), (1, "read"), (0, "begin"), (1, "begin"), (0, "end"), (1, "end")]
    serial = [(0, "read"), (0, "begin"), (0, "end"), (1, "read"), (1, "begin"), (1, "end")]
    assert races.lost_increments(race) == 1
    assert races.lost_increments(serial) == 0


@pytest.mark.ex_stored_update
def test_stored_update_by_hand():
    w = np.array([0.5, 0.5, 0.5])
    out = stored.stored_step(w, np.array([0.01, 0.2, -0.3]), frac_bits=2)  # step 0.25
    np.testing.assert_array_equal(out, [0.5, 0.75, 0.25])  # the 0.01 update vanished


@pytest.mark.ex_stochastic_update
def test_stochastic_update_by_hand():
    out = stored.stochastic_stored_step(np.full(4, 0.5), np.full(4, 0.0625), 2, np.array([0.0, 0.2, 0.3, 0.9]))
    np.testing.assert_array_equal(out, [0.75, 0.75, 0.5, 0.5])  # rounds up with probability 1/4


# ---------------------------------------------------------- properties (mutation)
@pytest.mark.ex_prop_fake_quant
def test_fake_quant_property_accepts_the_reference_and_catches_identity():
    x = np.linspace(-1.0, 1.0, 21)
    P.check_fake_quant_error(P.fake_quant_symmetric, x, 3, 1.0)
    with pytest.raises(AssertionError):
        P.check_fake_quant_error(lambda x, bits, max_abs: np.asarray(x, dtype=float), x, 3, 1.0)


@pytest.mark.ex_prop_csr_round_trip
def test_csr_property_accepts_the_reference_and_catches_a_lost_row():
    dense = np.array([[0, 1.5], [2, 0], [0, -3]], dtype=np.float32)
    P.check_csr_round_trip(sparse_formats.csr_arrays, P.csr_decode, dense)

    def lose_last_row(d):
        indptr, indices, data = sparse_formats.csr_arrays(d)
        n = indptr[-2]
        return np.concatenate([indptr[:-1], [n]]), indices[:n], data[:n]
    with pytest.raises(AssertionError):
        P.check_csr_round_trip(lose_last_row, P.csr_decode, dense)


@pytest.mark.ex_prop_no_revive
def test_no_revive_property_accepts_the_reference_and_catches_a_fresh_mask():
    w = np.array([[5.0, 0.1], [0.2, 3.0]])
    mask = np.array([[False, True], [True, True]])  # the largest weight is already pruned
    P.check_no_revive(P.magnitude_prune_step, w, mask, 0.5)
    with pytest.raises(AssertionError):
        P.check_no_revive(lambda w, m, a: criteria.magnitude_keep_mask(w, a), w, mask, 0.5)


# -------------------------------------------------------- engine: autograd, layers


@pytest.mark.ex_mul
def test_mul_backward():
    assert gradcheck(F.mul, [np.array([[1.0, -2.0, 0.5]]), np.array([[3.0], [0.25]])])


@pytest.mark.ex_div
def test_div_backward():
    assert gradcheck(F.div, [np.array([1.0, -2.0, 0.5]), np.array([2.0, 0.5, -1.5])])


@pytest.mark.ex_exp
def test_exp_backward():
    assert gradcheck(F.exp, [np.array([-1.0, 0.0, 1.5])])


@pytest.mark.ex_log
def test_log_backward():
    assert gradcheck(F.log, [np.array([0.5, 1.0, 3.0])])


@pytest.mark.ex_sqrt
def test_sqrt_backward():
    assert gradcheck(F.sqrt, [np.array([0.25, 1.0, 4.0])])


@pytest.mark.ex_relu
def test_relu_backward():
    assert gradcheck(F.relu, [np.array([-1.0, 0.5, 2.0])])


@pytest.mark.ex_sigmoid
def test_sigmoid_backward():
    assert gradcheck(F.sigmoid, [np.array([-2.0, 0.0, 3.0])])


@pytest.mark.ex_tanh
def test_tanh_backward():
    assert gradcheck(F.tanh, [np.array([-2.0, 0.0, 0.7])])


@pytest.mark.ex_matmul
def test_matmul_backward():
    rng = np.random.default_rng(0)
    assert gradcheck(F.matmul, [rng.standard_normal((2, 3)), rng.standard_normal((3, 4))])


@pytest.mark.ex_softmax
def test_softmax_backward():
    assert gradcheck(lambda x: F.softmax(x, axis=-1), [np.random.default_rng(1).standard_normal((2, 4))])


@pytest.mark.ex_log_softmax
def test_log_softmax_backward():
    assert gradcheck(lambda x: F.log_softmax(x, axis=-1), [np.random.default_rng(2).standard_normal((2, 4))])


@pytest.mark.ex_linear
def test_linear_backward():
    rng = np.random.default_rng(3)
    assert gradcheck(F.linear, [rng.standard_normal((4, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)])


@pytest.mark.ex_cross_entropy
def test_cross_entropy_backward():
    logits = np.random.default_rng(4).standard_normal((3, 5))
    assert gradcheck(lambda z: F.cross_entropy(z, np.array([0, 4, 2])), [logits])


@pytest.mark.ex_fake_quant_ste
def test_fake_quant_ste_backward():
    fmt = formats.Affine(bits=8, scale=0.1)
    x = ta.tensor(np.array([-20.0, -1.0, 0.0, 5.0, 20.0]), requires_grad=True)
    fake.fake_quant(x, fmt).backward(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_array_equal(x.grad, [0.0, 2.0, 3.0, 4.0, 0.0])  # range [-12.8, 12.7]


@pytest.mark.ex_sign_ste
def test_sign_ste_backward():
    x = ta.tensor(np.array([-2.0, -1.0, 0.3, 1.0, 1.5]), requires_grad=True)
    binarize.sign_ste(x).backward(np.full(5, 2.0))
    np.testing.assert_array_equal(x.grad, [0.0, 2.0, 2.0, 2.0, 0.0])
