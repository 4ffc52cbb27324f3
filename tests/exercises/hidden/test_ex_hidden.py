"""Hidden property tests of the course's code exercises (left out of the student release).

Each test carries its exercise's marker; ``tinyapprox course grade`` runs them with only
that exercise's functions taken from the submission. Properties are stated against the
library's own implementations (the plain twins the exercises re-derive) or as the bound
the lecture states, never as hard-coded outputs.
"""
import importlib

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyapprox as ta
from tinyapprox import functional as F
from tinyapprox import kernels
from tinyapprox.bnn import packing
from tinyapprox.optim import hogwild, races, stored
from tinyapprox.prune import criteria, schedules
from tinyapprox.quant import fake, formats, integer
from tinyapprox.sparse import CSR
from tinyapprox.sparse import formats as sparse_formats
from tinyapprox.testing import gradcheck
from tinyapprox.testing import strategies as tst

binarize = importlib.import_module("tinyapprox.bnn.binarize")

TIES = st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])


# ------------------------------------------------------------------------- pruning
@st.composite
def weights(draw):
    if draw(st.booleans()):
        shape = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    else:
        shape = tuple(draw(st.integers(1, 3)) for _ in range(4))
    elements = TIES | tst.finite_floats(-3, 3) if draw(st.booleans()) else tst.finite_floats(-3, 3)
    return draw(hnp.arrays(np.float64, shape, elements=elements))


@pytest.mark.ex_magnitude_mask
@given(w=weights(), amount=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]) | st.floats(0, 1),
       granularity=st.sampled_from(criteria.GRANULARITIES))
def test_magnitude_mask_prunes_exactly_the_weakest_groups(w, amount, granularity):
    keep = criteria.magnitude_keep_mask(w, amount, granularity)
    assert isinstance(keep, np.ndarray) and keep.dtype == bool and keep.shape == w.shape
    n, size = criteria.group_shape(w.shape, granularity)
    groups = keep.reshape(n, size)
    assert (groups == groups[:, :1]).all(), "the mask is not constant inside a group"
    kept = groups[:, 0]
    assert int((~kept).sum()) == int(round(amount * n))
    scores = criteria.group_scores(w, granularity)
    if kept.any() and (~kept).any():
        assert scores[kept].min() >= scores[~kept].max()
    want = np.ones(n, dtype=bool)
    want[np.argsort(scores, kind="stable")[:int(round(amount * n))]] = False
    np.testing.assert_array_equal(kept, want, err_msg="equal scores are pruned lower group index first")


@pytest.mark.ex_agp_sparsity
@given(s_i=st.floats(0, 1), s_f=st.floats(0, 1), start=st.integers(0, 50), length=st.integers(1, 100),
       step=st.integers(-10, 200))
def test_agp_sparsity_is_the_clamped_cubic(s_i, s_f, start, length, step):
    end = start + length
    got = schedules.agp_sparsity(step, s_f, start, end, s_i)
    t = min(max(step, start), end)
    assert got == pytest.approx(s_f + (s_i - s_f) * (1 - (t - start) / length) ** 3, abs=1e-12)
    assert schedules.agp_sparsity(start - 1, s_f, start, end, s_i) == pytest.approx(s_i, abs=1e-12)
    assert schedules.agp_sparsity(end + 1, s_f, start, end, s_i) == pytest.approx(s_f, abs=1e-12)
    nxt = schedules.agp_sparsity(step + 1, s_f, start, end, s_i)
    assert (nxt - got) * (s_f - s_i) >= -1e-12, "the schedule moves away from the final sparsity"


@pytest.mark.ex_csr
@given(tst.sparse_matrices())
def test_csr_arrays_equal_the_library_csr(dense):
    indptr, indices, data = sparse_formats.csr_arrays(dense)
    ref = CSR.from_dense(dense)
    assert indptr.dtype == np.int64 and indices.dtype == np.int32 and data.dtype == np.float32
    np.testing.assert_array_equal(indptr, ref.indptr)
    np.testing.assert_array_equal(indices, ref.indices)
    np.testing.assert_array_equal(data, ref.data)
    np.testing.assert_array_equal(CSR(indptr, indices, data, dense.shape).to_dense(), dense)
    assert sparse_formats.csr_nbytes(dense.shape[0], len(data)) == ref.nbytes


@pytest.mark.ex_csr
@given(m=st.integers(0, 10 ** 6), nnz=st.integers(0, 10 ** 7), vb=st.sampled_from([1, 2, 4, 8]),
       ib=st.sampled_from([1, 2, 4, 8]))
def test_csr_nbytes_counts_every_array(m, nnz, vb, ib):
    got = sparse_formats.csr_nbytes(m, nnz, value_bytes=vb, index_bytes=ib, indptr_bytes=8)
    assert got == nnz * vb + nnz * ib + (m + 1) * 8
    assert sparse_formats.csr_nbytes(m, nnz + 1, vb, ib, 8) - got == vb + ib


# -------------------------------------------------------------------- quantization
@st.composite
def dfp_inputs(draw):
    base = draw(tst.arrays(shape=(draw(st.integers(1, 12)),), low=-100, high=100, noncontiguous=False))
    if draw(st.booleans()):  # a maximum exactly on a power of two
        base[0] = draw(st.sampled_from([-4.0, -1.0, 0.5, 1.0, 2.0, 8.0, 64.0]))
    if draw(st.booleans()):
        base = base * 0.0
    return base


@pytest.mark.ex_dfp_quantize
@given(x=dfp_inputs(), bits=st.integers(2, 16))
def test_dfp_quantize_equals_the_library_format(x, bits):
    codes, fl = formats.dfp_quantize(x, bits)
    ref = formats.DynamicFixedPoint.from_tensor(x, bits, signed=True)
    assert fl == ref.frac_length
    np.testing.assert_array_equal(codes, ref.quantize(x))
    assert codes.min() >= -(2 ** (bits - 1)) and codes.max() <= 2 ** (bits - 1) - 1
    step = 2.0 ** -fl
    inside = np.abs(x) <= (2 ** (bits - 1) - 1) * step
    assert np.all(np.abs(codes * step - x)[inside] <= step / 2 + 1e-12)


@pytest.mark.ex_dfp_quantize
@given(tst.near_steps(2.0 ** -4, n_steps=100))
def test_dfp_quantize_ties_go_to_even(x):
    x = np.concatenate([[7.9], x])  # FL = 8 - 4 = 4: the step of the drawn values
    codes, fl = formats.dfp_quantize(x, 8)
    assert fl == 4
    np.testing.assert_array_equal(codes, np.clip(np.rint(x * 16), -128, 127))


@pytest.mark.ex_int8_quantize
@given(x=tst.arrays(shape=(16,), low=-300, high=300, noncontiguous=False),
       scale=st.sampled_from([0.01, 0.1, 0.5, 1.0, 3.7]), zp=st.integers(-20, 20))
def test_int8_quantize_error_and_saturation(x, scale, zp):
    q = formats.quantize_int8(x, scale, zp)
    assert q.dtype == np.int8 and q.shape == x.shape
    back = (q.astype(np.float64) - zp) * scale
    inside = (x >= (-128 - zp) * scale) & (x <= (127 - zp) * scale)
    assert np.all(np.abs(back - x)[inside] <= scale / 2 * (1 + 1e-9))
    assert np.all(q[x > (127 - zp + 1) * scale] == 127) and np.all(q[x < (-128 - zp - 1) * scale] == -128)
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(q[order].astype(int)) >= 0), "quantization is not monotone"


@pytest.mark.ex_int8_quantize
@given(tst.near_steps(0.5, n_steps=60), st.integers(-5, 5))
def test_int8_quantize_ties_go_to_even(x, zp):
    np.testing.assert_array_equal(formats.quantize_int8(x, 0.5, zp), np.clip(np.rint(x / 0.5) + zp, -128, 127))


@pytest.mark.ex_requantize
@given(acc=hnp.arrays(np.int32, st.integers(1, 20), elements=st.integers(-2 ** 31, 2 ** 31 - 1) | st.integers(-3000, 3000)),
       log2m=st.floats(-20, 2), zp=st.integers(-128, 127))
def test_requantize_equals_the_integer_pipeline(acc, log2m, zp):
    M = float(2.0 ** log2m)
    q = integer.requantize_int8(acc, M, zp)
    assert q.dtype == np.int8 and q.shape == acc.shape
    np.testing.assert_array_equal(q, integer.requantize(acc, M, -128 - zp, 127 - zp) + zp)
    approx = np.clip(np.rint(acc.astype(np.float64) * M) + zp, -128, 127)
    assert np.all(np.abs(q.astype(np.int64) - approx) <= 1)


@pytest.mark.ex_pow2_matmul
@given(data=st.data(), n=st.integers(0, 4), k=st.integers(0, 6), o=st.integers(0, 4), min_exp=st.integers(-8, 0))
def test_pow2_matmul_is_the_product_with_powers_of_two(data, n, k, o, min_exp):
    x = data.draw(hnp.arrays(np.int64, (n, k), elements=st.integers(-128, 127)))
    sign = data.draw(hnp.arrays(np.int64, (o, k), elements=st.sampled_from([-1, 0, 1])))
    exp = data.draw(hnp.arrays(np.int64, (o, k), elements=st.integers(min_exp, min_exp + 7)))
    z = integer.pow2_matmul_reference(x, sign, exp, min_exp)
    assert z.shape == (n, o)
    np.testing.assert_array_equal(z, x @ (sign * (1 << (exp - min_exp))).T)
    np.testing.assert_array_equal(z, integer.pow2_matmul(x, sign, exp, min_exp))


# -------------------------------------------------------------------- binarization
@pytest.mark.ex_stochastic_sign
@given(x=tst.arrays(shape=(9,), low=-2, high=2, noncontiguous=False, dtype=np.float32) | tst.near_zero((9,), np.float32),
       seed=st.integers(0, 2 ** 32 - 1))
def test_stochastic_sign_equals_the_library_on_the_same_draws(x, seed):
    u = np.random.default_rng(seed).random(x.shape, dtype=np.float32)
    got = binarize.stochastic_sign_from_uniform(x, u)
    want = binarize.stochastic_sign(ta.tensor(x), np.random.default_rng(seed)).data
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, want)
    assert np.all(got[x >= 1] == 1) and np.all(got[x <= -1] == -1)


@pytest.mark.ex_stochastic_sign
@given(v=st.floats(-1.5, 1.5))
def test_stochastic_sign_mean_is_the_clipped_input(v):
    n = 4000
    u = np.random.default_rng(0).random(n)
    mean = binarize.stochastic_sign_from_uniform(np.full(n, v), u).mean()
    p = min(max((v + 1) / 2, 0), 1)
    assert abs(mean - (2 * p - 1)) <= 4 * 2 * np.sqrt(p * (1 - p) / n) + 1e-12


@pytest.mark.ex_bit_packing
@given(k=st.sampled_from([0, 1, 5, 63, 64, 65, 127, 128, 129, 200]), seed=st.integers(0, 2 ** 32 - 1),
       zeros=st.booleans())
def test_pack_signs_equals_kernels_pack_bits(k, seed, zeros):
    rng = np.random.default_rng(seed)
    v = rng.integers(-1, 1, k).astype(np.float64) if zeros else rng.standard_normal(k)
    words = packing.pack_signs(v)
    assert words.dtype == np.uint64
    np.testing.assert_array_equal(words, kernels.pack_bits(v))


@pytest.mark.ex_bit_packing
@given(tst.sign_problems())
def test_xnor_dot_equals_the_float_product_of_signs(problem):
    xa, xb, k = problem
    assume(len(xa) and len(xb))
    a, b = np.asarray(xa[0]), np.asarray(xb[0])
    got = packing.xnor_popcount_dot(kernels.pack_bits(a), kernels.pack_bits(b), k)
    assert got == int(np.where(a >= 0, 1, -1) @ np.where(b >= 0, 1, -1))


@pytest.mark.ex_bn_threshold
@given(tst.bn_params())
def test_bn_threshold_equals_batch_norm_then_sign(params):
    k, gamma, beta, mean, var = params
    assume(np.all(gamma != 0))
    eps = 1e-4
    s, t = packing.bn_sign_threshold(gamma, beta, mean, var, eps=eps)
    assert s.dtype == np.int8 and t.dtype == np.int64 and s.shape == t.shape == gamma.shape
    d = np.arange(-k, k + 1, dtype=np.float64)[:, None]
    g, b, m, v = (a.astype(np.float64) for a in (gamma, beta, mean, var))
    z = g * (d - m) / np.sqrt(v + eps) + b
    got = s.astype(np.int64) * d.astype(np.int64) >= t
    sure = np.abs(z) > 1e-9 * (np.abs(g) * (np.abs(d) + np.abs(m)) / np.sqrt(v + eps) + np.abs(b) + 1)
    np.testing.assert_array_equal(got[sure], (z >= 0)[sure])
    s_ref, t_ref, _ = packing.fold_threshold(gamma, beta, mean, var, eps=eps, k=k)
    inside = np.abs(t_ref) <= k
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(t[inside], t_ref[inside])


# ------------------------------------------------------------------------ training
@pytest.mark.ex_lost_updates
@given(tst.race_schedules(min_workers=1, max_workers=4))
def test_lost_updates_equal_the_replayed_count(drawn):
    workers, schedule = drawn
    want = hogwild.replay_schedule(schedule, workers=workers, processes=False)["lost_increments"]
    assert races.lost_increments(schedule) == want


@pytest.mark.ex_lost_updates
@given(st.integers(1, 4), st.integers(1, 3))
def test_serial_schedules_lose_nothing(workers, updates):
    schedule = [(k, op) for k in range(workers) for _ in range(updates) for op in ("read", "begin", "end")]
    assert races.lost_increments(schedule) == 0


@pytest.mark.ex_stored_update
@given(k=hnp.arrays(np.int64, 8, elements=st.integers(-1000, 1000)), delta=tst.arrays(shape=(8,), low=-2, high=2),
       f=st.integers(0, 12))
def test_stored_step_rounds_to_the_grid_and_small_updates_vanish(k, delta, f):
    step = 2.0 ** -f
    w = k * step
    out = stored.stored_step(w, delta, f)
    assert np.all(out / step == np.rint(out / step)), "a stored weight is off the grid"
    assert np.all(np.abs(out - (w + delta)) <= step / 2 + 1e-12)
    small = np.abs(delta) < step / 2
    np.testing.assert_array_equal(out[small], w[small])
    np.testing.assert_array_equal(out, formats.DynamicFixedPoint(32, f).fake(w + delta))


@pytest.mark.ex_stochastic_update
@given(k=st.integers(-1000, 1000), delta=st.floats(-1, 1), f=st.integers(0, 10))
def test_stochastic_step_is_unbiased_between_the_two_neighbours(k, delta, f):
    step = 2.0 ** -f
    w = k * step
    n = 1024
    u = (np.arange(n) + 0.5) / n  # evenly spread draws: the mean is the expectation up to 1/n
    out = stored.stochastic_stored_step(np.full(n, w), np.full(n, delta), f, u)
    lo = np.floor((w + delta) / step) * step
    assert np.all((out == lo) | (out == lo + step)), "not one of the two grid neighbours"
    assert abs(out.mean() - (w + delta)) <= step / n + 1e-9
    up = stored.stochastic_stored_step(w, delta, f, 0.0)
    assert up == (w + delta if (w + delta) / step == np.floor((w + delta) / step) else lo + step)


# -------------------------------------------------------- engine: autograd, layers
SHAPES = tst.broadcastable_shapes(2, min_dims=0, max_dims=3, min_side=1, max_side=3)


@pytest.mark.ex_mul
@given(shapes=SHAPES, data=st.data())
def test_mul_gradcheck(shapes, data):
    a, b = (data.draw(tst.arrays(shape=s, low=-3, high=3)) for s in shapes)
    assert gradcheck(F.mul, [a, b])


@pytest.mark.ex_div
@given(shapes=SHAPES, data=st.data())
def test_div_gradcheck(shapes, data):
    a = data.draw(tst.arrays(shape=shapes[0], low=-3, high=3))
    b = data.draw(tst.arrays(shape=shapes[1], low=0.5, high=3)) * data.draw(st.sampled_from([1, -1]))
    assert gradcheck(F.div, [a, b])


def small_arrays(low, high):
    return tst.shapes(1, 3, 1, 4).flatmap(lambda shape: tst.arrays(shape=shape, low=low, high=high))


def _unary(op, low, high):
    @given(small_arrays(low, high))
    def check(x):
        assert gradcheck(op, [x])
    return check


test_exp_gradcheck = pytest.mark.ex_exp(_unary(F.exp, -3, 3))
test_log_gradcheck = pytest.mark.ex_log(_unary(F.log, 0.1, 5))
test_sqrt_gradcheck = pytest.mark.ex_sqrt(_unary(F.sqrt, 0.1, 5))
test_sigmoid_gradcheck = pytest.mark.ex_sigmoid(_unary(F.sigmoid, -5, 5))
test_tanh_gradcheck = pytest.mark.ex_tanh(_unary(F.tanh, -3, 3))


@pytest.mark.ex_relu
@given(small_arrays(-3, 3))
def test_relu_gradcheck_away_from_zero_and_zero_at_zero(x):
    x = np.where(np.abs(x) < 1e-3, 0.5, x)
    assert gradcheck(F.relu, [x])
    z = ta.tensor(np.zeros(3), requires_grad=True)
    F.relu(z).backward(np.ones(3))
    np.testing.assert_array_equal(z.grad, np.zeros(3))


@pytest.mark.ex_matmul
@given(data=st.data(), n=st.integers(1, 3), k=st.integers(1, 3), m=st.integers(1, 3),
       kind=st.sampled_from(["1d1d", "1d2d", "2d1d", "2d2d", "batched", "broadcast"]))
def test_matmul_gradcheck(data, n, k, m, kind):
    shapes = {"1d1d": ((k,), (k,)), "1d2d": ((k,), (k, m)), "2d1d": ((n, k), (k,)), "2d2d": ((n, k), (k, m)),
              "batched": ((2, n, k), (2, k, m)), "broadcast": ((2, 1, n, k), (3, k, m))}[kind]
    a, b = (data.draw(tst.arrays(shape=s, low=-2, high=2)) for s in shapes)
    assert gradcheck(F.matmul, [a, b])


@pytest.mark.ex_softmax
@given(x=small_arrays(-3, 3), data=st.data())
def test_softmax_gradcheck(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    assert gradcheck(lambda t: F.softmax(t, axis=axis), [x], name="softmax")


@pytest.mark.ex_log_softmax
@given(x=small_arrays(-3, 3), data=st.data())
def test_log_softmax_gradcheck(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    assert gradcheck(lambda t: F.log_softmax(t, axis=axis), [x], name="log_softmax")


@pytest.mark.ex_linear
@given(data=st.data(), lead=st.sampled_from([(1,), (3,), (2, 3)]), fin=st.integers(1, 4), fout=st.integers(1, 3),
       bias=st.booleans())
def test_linear_gradcheck(data, lead, fin, fout, bias):
    x = data.draw(tst.arrays(shape=lead + (fin,), low=-2, high=2))
    w = data.draw(tst.arrays(shape=(fout, fin), low=-2, high=2))
    if bias:
        b = data.draw(tst.arrays(shape=(fout,), low=-2, high=2))
        assert gradcheck(F.linear, [x, w, b])
    else:
        assert gradcheck(lambda x, w: F.linear(x, w), [x, w], name="linear")


@pytest.mark.ex_cross_entropy
@given(data=st.data(), n=st.integers(1, 4), c=st.integers(1, 5), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy_gradcheck(data, n, c, reduction):
    logits = data.draw(tst.arrays(shape=(n, c), low=-4, high=4))
    labels = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, c - 1)))
    assert gradcheck(lambda z: F.cross_entropy(z, labels, reduction=reduction), [logits], name="cross_entropy")


@pytest.mark.ex_fake_quant_ste
@given(x=tst.arrays(shape=(12,), low=-30, high=30, noncontiguous=False), g=tst.arrays(shape=(12,), noncontiguous=False),
       kind=st.sampled_from(["int8", "dfp", "int4"]))
def test_fake_quant_ste_passes_the_gradient_inside_the_range(x, g, kind):
    fmt = {"int8": formats.Affine(bits=8, scale=0.1), "int4": formats.Affine(bits=4, scale=1.5),
           "dfp": formats.DynamicFixedPoint(8, 3)}[kind]
    lo, hi = fmt.bounds()
    t = ta.tensor(x, requires_grad=True)
    fake.fake_quant(t, fmt).backward(g)
    np.testing.assert_array_equal(t.grad, np.where((x >= lo) & (x <= hi), g, 0.0))


@pytest.mark.ex_sign_ste
@given(x=tst.arrays(shape=(10,), low=-2, high=2, noncontiguous=False) | st.just(np.array([-1.0, 1.0, -0.0, 0.0])),
       data=st.data())
def test_sign_ste_is_the_hardtanh_derivative(x, data):
    g = data.draw(tst.arrays(shape=x.shape, noncontiguous=False))
    t = ta.tensor(x, requires_grad=True)
    binarize.sign_ste(t).backward(g)
    np.testing.assert_array_equal(t.grad, g * (np.abs(x) <= 1))
