"""Quantizer formats, observers and the straight-through fake-quant op."""
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyapprox as ta
from tinyapprox import nn, quant
from tinyapprox.quant import (FP16, Affine, DynamicFixedPoint, FP16OverflowError, FP16OverflowWarning, Minifloat,
                              PowerOfTwo)
from tinyapprox.testing.strategies import near_steps

pytestmark = pytest.mark.quant

EPS = 1e-12


# ------------------------------------------------------------------ hand-computed pins
def test_round_nearest_ties_to_even_and_stochastic_needs_known_mode():
    v = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49])
    np.testing.assert_array_equal(quant.round_values(v), [0, 2, 2, -0, -2, 0])
    with pytest.raises(ValueError, match="rounding"):
        quant.round_values(v, "up")


def test_affine_hand_values():
    a = Affine(8, 0.25)
    np.testing.assert_array_equal(a.quantize([0.125, 0.375, 100.0, -100.0, 0.6]), [0, 2, 127, -127, 2])
    b = Affine.from_range(-1.0, 3.0, bits=8, symmetric=False)
    assert b.scale == pytest.approx(4 / 255) and int(b.zero_point) == 64
    assert b.fake(np.array([0.0]))[0] == 0.0
    with pytest.raises(ValueError, match="scale"):
        Affine(8, 0.0)


def test_dfp_hand_values():
    d = DynamicFixedPoint(8, 4)
    np.testing.assert_array_equal(d.fake(np.array([0.03125, 0.09375, 100.0, -100.0])),
                                  [0.0, 0.125, 127 / 16, -128 / 16])
    # Ristretto: max |x| = 3 -> IL = ceil(log2 3) + 1 = 3, FL = 8 - 3 = 5
    assert DynamicFixedPoint.from_range(3.0, 8).frac_length == 5
    assert DynamicFixedPoint.from_range(3.0, 8, signed=False).frac_length == 6


def test_minifloat_hand_values():
    e4m3 = Minifloat(4, 3)           # bias 7, all exponent codes finite
    assert e4m3.max_value == 480.0 and e4m3.min_normal == 2.0 ** -6
    e3m4 = Minifloat(3, 4)           # bias 3
    assert e3m4.max_value == 31.0
    np.testing.assert_array_equal(e3m4.fake(np.array([1.03125, 1.09375, 1000.0, 2.0 ** -7, 3 * 2.0 ** -8])),
                                  [1.0, 1.125, 31.0, 0.0, 2.0 ** -6])
    assert len(e4m3.levels()) == 255      # 256 codes, +0 and -0 coincide
    assert Minifloat.from_range(3.0, 4, 3).max_value == 3.75


def test_pow2_hand_values():
    p = PowerOfTwo(-3, 0)
    np.testing.assert_array_equal(p.fake(np.array([0.3, -0.7, 0.01, 5.0, 0.0, 0.09])),
                                  [0.25, -0.5, 0.0, 1.0, 0.0, 0.125])
    assert PowerOfTwo.from_range(0.5, bits=4).min_exp == -7


# ------------------------------------------------------------------ FP16
@given(hnp.arrays(np.float64, 64, elements=st.floats(-7e4, 7e4, allow_nan=False)),
       st.integers(-30, 5))
def test_fp16_equals_numpy_float16(x, shift):
    x = np.ldexp(x, shift)
    f = FP16(on_overflow="ignore")
    with np.errstate(over="ignore"):
        ref = x.astype(np.float16)
    np.testing.assert_array_equal(f.quantize(x), ref.view(np.uint16))
    generic = Minifloat(5, 10, bias=15, saturate=False)
    np.testing.assert_array_equal(generic.fake(x), ref.astype(np.float64))
    np.testing.assert_array_equal(generic.quantize(x), ref.view(np.uint16))


def test_fp16_overflow_is_reported():
    x = np.array([65519.0, 65520.0, 1.0])            # 65520 is the tie with 2^16: rounds to inf
    with pytest.raises(FP16OverflowError, match="overflowed float16"):
        FP16("raise").fake(x)
    f = FP16("warn")
    with pytest.warns(FP16OverflowWarning):
        y = f.fake(x)
    np.testing.assert_array_equal(y, [65504.0, np.inf, 1.0])
    assert f.overflow_count == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FP16("warn").fake(np.array([65504.0, -1e-9]))


# ------------------------------------------------------------------ half a step
@given(st.data(), st.integers(2, 12), st.booleans(), st.sampled_from([0.5, 0.1, 2.0 ** -5, 3.7]))
def test_affine_error_at_most_half_step_and_saturates(data, bits, symmetric, scale):
    qmax = 2 ** (bits - 1) - 1 if symmetric else 2 ** bits - 1
    zp = 0 if symmetric else data.draw(st.integers(0, qmax))
    a = Affine(bits, scale, zp, symmetric)
    x = data.draw(near_steps(scale, n_steps=qmax + 3, shape=(32,)))
    lo, hi = a.bounds()
    y = a.fake(x)
    inside = (x >= lo) & (x <= hi)
    assert np.all(np.abs(y - x)[inside] <= scale / 2 * (1 + EPS) + EPS)
    np.testing.assert_array_equal(y[x > hi], hi)
    np.testing.assert_array_equal(y[x < lo], lo)
    np.testing.assert_array_equal(a.dequantize(a.quantize(x)), y)


@given(st.data(), st.integers(2, 10), st.integers(-4, 8), st.booleans())
def test_dfp_error_at_most_half_step_and_saturates(data, bits, fl, signed):
    d = DynamicFixedPoint(bits, fl, signed)
    x = data.draw(near_steps(d.step, n_steps=2 ** bits + 2, shape=(32,)))
    lo, hi = d.bounds()
    y = d.fake(x)
    inside = (x >= lo) & (x <= hi)
    assert np.all(np.abs(y - x)[inside] <= d.step / 2)
    np.testing.assert_array_equal(y[x > hi], hi)
    np.testing.assert_array_equal(y[x < lo], lo)
    # a grid point maps to itself, and so do the codes
    codes = np.arange(d.qmin, d.qmax + 1)
    np.testing.assert_array_equal(d.quantize(d.dequantize(codes)), codes)


@given(st.data(), st.sampled_from([(3, 4), (4, 3), (2, 2), (5, 2), (3, 0)]), st.integers(-3, 3))
def test_minifloat_error_at_most_half_step_and_saturates(data, em, emax_shift):
    e, m = em
    f = Minifloat.from_range(2.0 ** emax_shift, e, m)
    mag = data.draw(hnp.arrays(np.float64, 48, elements=st.floats(0, 2 * f.max_value)))
    sign = data.draw(hnp.arrays(np.float64, 48, elements=st.sampled_from([-1.0, 1.0])))
    grid = f.levels()
    x = np.concatenate([sign * mag, grid, (grid[1:] + grid[:-1]) / 2])   # grid points and exact midpoints
    y = f.fake(x)
    inside = np.abs(x) <= f.max_value
    assert np.all(np.abs(y - x)[inside] <= f.step_at(x)[inside] / 2)
    np.testing.assert_array_equal(y[x > f.max_value], f.max_value)
    np.testing.assert_array_equal(y[x < -f.max_value], -f.max_value)
    assert np.all(np.isin(y, grid))
    codes = f.quantize(grid)
    np.testing.assert_array_equal(f.dequantize(codes), grid)
    if m == 0:      # no mantissa bit: a tie goes to the even significand 2, i.e. up in magnitude
        return
    # ties go to the neighbour with an even last mantissa bit
    mids = (grid[1:] + grid[:-1]) / 2
    mant = (f.quantize(f.fake(mids)) & np.uint64(1)).astype(int)
    assert np.all(mant[np.abs(mids) > 0] == 0)


@given(st.data(), st.integers(2, 6), st.integers(-10, 3))
def test_pow2_half_step_in_log_domain(data, bits, top):
    p = PowerOfTwo.from_range(2.0 ** top, bits)
    x = data.draw(hnp.arrays(np.float64, 64, elements=st.floats(-2.0 ** (top + 2), 2.0 ** (top + 2))))
    y = p.fake(x)
    a = np.abs(x)
    keep = (a >= 2.0 ** (p.min_exp - 0.5)) & (a <= 2.0 ** (p.max_exp + 0.5))
    ok = keep & (a > 0)
    assert np.all(np.abs(np.log2(np.abs(y[ok])) - np.log2(a[ok])) <= 0.5 + 1e-12)
    assert np.all(np.sign(y[ok]) == np.sign(x[ok]))
    assert np.all(y[a < 2.0 ** (p.min_exp - 0.5)] == 0)
    np.testing.assert_array_equal(np.abs(y[a > 2.0 ** (p.max_exp + 0.5)]), 2.0 ** p.max_exp)
    assert np.all(np.isin(y, p.levels()))
    assert np.abs(p.quantize(x)).max(initial=0) <= 2 ** (bits - 1) - 1


# ------------------------------------------------------------------ per-channel
@given(hnp.arrays(np.float64, (5, 3, 2, 2), elements=st.floats(-4, 4)), st.booleans(), st.integers(2, 8))
def test_per_channel_equals_per_tensor_on_each_channel(w, symmetric, bits):
    a = Affine.from_tensor(w, bits, symmetric, axis=0)
    y = a.fake(w)
    for c in range(w.shape[0]):
        one = Affine.from_tensor(w[c], bits, symmetric)
        np.testing.assert_array_equal(y[c], one.fake(w[c]))
    with pytest.raises(ValueError, match="channels"):
        a.fake(w[:2])


# ------------------------------------------------------------------ straight-through estimator
@given(hnp.arrays(np.float64, (4, 6), elements=st.floats(-3, 3)),
       st.sampled_from(["int8", "dfp", "minifloat", "pow2", "fp16"]), st.integers(2, 8))
def test_ste_gradient_identity_inside_zero_outside(x, scheme, bits):
    fmt = quant.make_format(scheme, -1.0, 1.0, bits if scheme != "minifloat" else 8, "weight")
    t = ta.tensor(x, requires_grad=True)
    g = np.random.default_rng(0).standard_normal(x.shape)
    y = quant.fake_quant(t, fmt)
    y.backward(g)
    lo, hi = fmt.bounds()
    np.testing.assert_array_equal(t.grad, np.where((x >= lo) & (x <= hi), g, 0.0))
    np.testing.assert_array_equal(y.data, fmt.fake(x))


def test_ste_per_channel_bounds():
    w = np.array([[0.5, -2.0], [3.0, 0.1]])
    fmt = Affine(4, np.array([0.1, 0.5]), 0, True, axis=0)   # channel ranges +-0.7 and +-3.5
    t = ta.tensor(w, requires_grad=True)
    quant.fake_quant(t, fmt).sum().backward()
    np.testing.assert_array_equal(t.grad, [[1.0, 0.0], [1.0, 1.0]])


# ------------------------------------------------------------------ stochastic rounding
@pytest.mark.parametrize("fmt", [DynamicFixedPoint(8, 3), Affine(6, 0.3, 20, symmetric=False),
                                 Minifloat(3, 2, bias=2), PowerOfTwo(-6, 2), FP16("ignore")])
def test_stochastic_rounding_is_unbiased(fmt):
    rng = np.random.default_rng(1234)
    lo, hi = fmt.bounds()
    x = rng.uniform(max(lo, -3.0), min(hi, 3.0), size=8)
    n = 20000
    draws = fmt.fake(np.repeat(x[None], n, axis=0), rounding="stochastic", rng=5)
    # each draw is one of the two neighbours: the variance is at most (gap/2)^2 per draw
    grid_lo, grid_hi = draws.min(axis=0), draws.max(axis=0)
    sd = (grid_hi - grid_lo) / 2 / np.sqrt(n)
    if isinstance(fmt, PowerOfTwo):   # unbiased in log2|x|
        assert np.all(np.abs(np.mean(np.log2(np.abs(draws)), axis=0) - np.log2(np.abs(x)))
                      <= 5 * 0.5 / np.sqrt(n))
    else:
        assert np.all(np.abs(draws.mean(axis=0) - x) <= 5 * sd + 1e-12)
    # every draw is one of the two grid points around x: at most two values, bracketing x
    assert all(len(np.unique(draws[:, j])) <= 2 for j in range(x.size))
    assert np.all((grid_lo <= x) & (x <= grid_hi))
    again = fmt.fake(np.repeat(x[None], 10, axis=0), rounding="stochastic", rng=5)
    np.testing.assert_array_equal(again, draws[:10])


# ------------------------------------------------------------------ observers
def test_observers():
    a, b = np.array([1.0, -2.0, 3.0]), np.array([0.0, 5.0, -1.0])
    mm = quant.MinMaxObserver()
    mm.update(a), mm.update(b)
    assert mm.range() == (-2.0, 5.0)
    ema = quant.MovingAverageMinMaxObserver(momentum=0.5)
    ema.update(a), ema.update(b)
    assert ema.range() == (-1.5, 4.0)
    pct = quant.PercentileObserver(percentile=100)
    pct.update(a), pct.update(b)
    assert pct.range() == (-1.5, 4.0)
    pc = quant.MinMaxObserver(axis=0)
    pc.update(np.array([[1.0, 2.0], [-3.0, 0.5]]))
    np.testing.assert_array_equal(pc.range()[1], [2.0, 0.5])
    with pytest.raises(RuntimeError, match="no values observed"):
        quant.MinMaxObserver().range()


# ------------------------------------------------------------------ transforms and modules
def test_weight_quant_transform_shadow_weights_and_state_round_trip():
    lin = nn.Linear(6, 4, seed=0)
    lin.weight.add_transform(quant.WeightQuant("int8", 4, per_channel=True))
    x = ta.tensor(np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32))
    y = lin(x)
    t = lin.weight.find_transform(quant.WeightQuant)
    np.testing.assert_array_equal(lin.weight.effective().data, t.fmt.fake(lin.weight.data))
    assert len(np.unique(t.codes(lin.weight.data))) <= 15
    y.sum().backward()
    assert lin.weight.grad is not None and lin.weight.data.dtype == np.float32
    state = lin.state_dict()
    other = nn.Linear(6, 4, seed=1)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other(x).data, y.data)
    assert isinstance(other.weight.transforms[0], quant.WeightQuant)


def test_act_quant_observe_freeze_quantize():
    aq = quant.ActQuant("dfp", 4)
    x = ta.tensor(np.array([0.0, 0.3, 1.7, 3.0], dtype=np.float32))
    np.testing.assert_array_equal(aq(x).data, x.data)           # observing passes through
    with pytest.raises(RuntimeError, match="calibrate"):
        quant.ActQuant("int8", 8).freeze()(x)
    aq.freeze()
    assert aq.fmt.frac_length == 2 and not aq.fmt.signed     # IL = ceil(log2 3) = 2, unsigned
    np.testing.assert_array_equal(aq(x).data, [0.0, 0.25, 1.75, 3.0])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="bits"):
        Affine(0, 1.0)
    with pytest.raises(ValueError, match="unknown scheme"):
        quant.make_format("int3", -1, 1)
    with pytest.raises(ValueError, match="per-channel"):
        quant.make_format("dfp", np.zeros(2), np.ones(2), axis=0)
    with pytest.raises(TypeError, match="real array"):
        Affine(8, 1.0).quantize(np.array(["a"]))
    with pytest.raises(ValueError, match="min_exp"):
        PowerOfTwo(3, 1)


@pytest.mark.parametrize("fmt", [Affine(8, 0.1), Affine(4, np.array([0.1, 0.2]), axis=0), DynamicFixedPoint(8, 4),
                                 Minifloat(4, 3), PowerOfTwo(-3, 0)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_formats_without_nan_or_inf_codes_refuse_them(fmt, bad):
    x = np.array([[0.5, bad], [0.25, 0.0]])
    with pytest.raises(ValueError, match=r"(quantize|exponents|fake): expected finite values"):
        fmt.quantize(x)
    with pytest.raises(ValueError, match="expected finite values"):
        fmt.fake(x)


def test_ieee_formats_keep_nan_and_inf():
    x = np.array([np.nan, np.inf, -np.inf, 1.0])
    y = FP16("ignore").fake(x)
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == -np.inf and y[3] == 1.0
    np.testing.assert_array_equal(Minifloat(5, 10, bias=15, saturate=False).fake(x[1:]), x[1:])


@pytest.mark.parametrize("make", [lambda: Affine.from_range(np.nan, 1.0), lambda: Affine.from_range(-1.0, np.inf),
                                  lambda: Affine.from_tensor(np.array([1.0, np.nan])),
                                  lambda: DynamicFixedPoint.from_range(np.inf),
                                  lambda: DynamicFixedPoint.from_tensor(np.array([np.nan])),
                                  lambda: Minifloat.from_range(np.nan), lambda: PowerOfTwo.from_range(np.inf)])
def test_calibration_from_non_finite_range_raises(make):
    with pytest.raises(ValueError, match="finite"):
        make()


@pytest.mark.parametrize("observer", [quant.MinMaxObserver(), quant.MovingAverageMinMaxObserver(),
                                      quant.PercentileObserver(), quant.MinMaxObserver(axis=0)])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_observers_refuse_non_finite_batches(observer, bad):
    observer.reset()
    with pytest.raises(ValueError, match=r"update: expected finite values"):
        observer.update(np.array([[1.0, bad], [0.0, 2.0]]))
    with pytest.raises(RuntimeError, match="no values observed"):
        observer.range()


@pytest.mark.parametrize("observer", [quant.MinMaxObserver(), quant.MovingAverageMinMaxObserver(momentum=0.5),
                                      quant.PercentileObserver(percentile=100)])
def test_per_channel_observers_equal_per_tensor_ones_on_each_channel(observer):
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((4, 3, 5)) for _ in range(3)]
    per_channel = type(observer)(**_observer_options(observer), axis=1)
    for b in batches:
        per_channel.update(b)
    lo, hi = per_channel.range()
    for c in range(3):
        one = type(observer)(**_observer_options(observer))
        for b in batches:
            one.update(b[:, c])
        assert one.range() == pytest.approx((lo[c], hi[c]))


def _observer_options(observer):
    if isinstance(observer, quant.MovingAverageMinMaxObserver):
        return {"momentum": observer.momentum}
    if isinstance(observer, quant.PercentileObserver):
        return {"percentile": observer.percentile}
    return {}


@pytest.mark.parametrize("make", [lambda: Affine(8, np.ones(3), axis=2).quantize(np.ones((3, 3))),
                                  lambda: Affine(8, np.ones(3), axis=-3).fake(np.ones((3, 3))),
                                  lambda: Affine(8, np.ones(3), axis=0.5).quantize(np.ones((3, 3))),
                                  lambda: Affine.from_tensor(np.ones((3, 3)), axis=5),
                                  lambda: quant.MinMaxObserver(axis=2).update(np.ones((3, 3))),
                                  lambda: quant.PercentileObserver(axis=-4).update(np.ones((3, 3)))])
def test_per_channel_axis_out_of_range_raises(make):
    with pytest.raises(ValueError, match="axis"):
        make()


@pytest.mark.parametrize("make", [lambda: Affine(0), lambda: Affine(1), lambda: Affine(33), lambda: Affine(8.0),
                                  lambda: Affine(True), lambda: Affine.from_range(-1, 1, bits=33),
                                  lambda: DynamicFixedPoint(0), lambda: DynamicFixedPoint(33),
                                  lambda: PowerOfTwo.from_range(1.0, bits=1), lambda: PowerOfTwo.from_range(1.0, 33),
                                  lambda: quant.make_format("int8", -1, 1, bits=0),
                                  lambda: quant.make_format("dfp", -1, 1, bits=40)])
def test_bits_out_of_range_raise(make):
    with pytest.raises(ValueError, match=r"bits must be an integer in \[\d+, \d+\], got"):
        make()


def test_one_bit_asymmetric_affine_is_allowed():
    a = Affine(1, 0.5, 0, symmetric=False)
    np.testing.assert_array_equal(a.fake(np.array([-1.0, 0.2, 0.3, 9.0])), [0.0, 0.0, 0.5, 0.5])


@pytest.mark.parametrize("make", [lambda: quant.make_format("minifloat", -1, 1, bits=4, exp_bits=4),
                                  lambda: quant.make_format("minifloat", -1, 1, bits=4, man_bits=3),
                                  lambda: Minifloat(0, 3), lambda: Minifloat(9, 3), lambda: Minifloat(4, -1),
                                  lambda: Minifloat(4, 24), lambda: Minifloat(True, 3),
                                  lambda: Minifloat(4, 3, bias=2000), lambda: Minifloat(8, 23, bias=-1000),
                                  lambda: Minifloat(1, 3, saturate=False)])
def test_impossible_minifloat_split_raises(make):
    with pytest.raises(ValueError, match=r"(split|exp_bits|man_bits|bias)"):
        make()
