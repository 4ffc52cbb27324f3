"""Low-precision activations and gradients: rounding, the straight-through plumbing, loss scaling."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinyapprox import Tensor, nn
from tinyapprox import functional as F
from tinyapprox.quant import DynamicFixedPoint, LossScaler, LowPrecisionTensors, TensorRounding, round_tensors

pytestmark = pytest.mark.hogwild

_values = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                     elements=st.floats(-1e4, 1e4, width=32))


@given(_values)
def test_fp16_nearest_is_the_float16_cast(v):
    r = TensorRounding("fp16").round(v)
    np.testing.assert_array_equal(r, v.astype(np.float16).astype(np.float32))


@given(_values, st.sampled_from(["nearest", "stochastic"]))
def test_fixed8_lands_on_a_neighbouring_grid_point(v, rounding):
    peak = float(np.abs(v).max())
    r = TensorRounding("fixed8", rounding, seed=1).round(v)
    if peak == 0:
        np.testing.assert_array_equal(r, v)
        return
    fmt = DynamicFixedPoint.from_range(peak, 8, True)
    step, (lo, hi) = fmt.step, fmt.bounds()
    err = np.abs(r.astype(np.float64) - np.clip(v.astype(np.float64), lo, hi))   # saturation, then rounding
    bound = step / 2 if rounding == "nearest" else step
    assert np.all(err <= bound * (1 + 1e-6) + 1e-30)
    assert np.all((r >= lo) & (r <= hi))
    np.testing.assert_allclose(r / step, np.rint(r / step), atol=1e-6)


def test_stochastic_rounding_is_unbiased_where_nearest_is_not():
    v = np.full(20000, 0.3, dtype=np.float32)
    v[0] = 127.0                                   # the range: step 1, so 0.3 sits between 0 and 1
    near = TensorRounding("fixed8", "nearest").round(v)[1:]
    sr = TensorRounding("fixed8", "stochastic", seed=0).round(v)[1:]
    assert near.mean() == 0.0
    assert abs(sr.mean() - 0.3) < 0.02


def test_rounding_counts_underflow_and_subnormals():
    r = TensorRounding("fp16")
    out = r.round(np.array([1e-9, 1e-6, 1.0, 0.0], dtype=np.float32))
    assert out[0] == 0 and r.zeroed == 1 and r.subnormal == 1 and r.seen == 4


@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 1000))
def test_round_tensors_rounds_forward_and_backward_and_shares_parameters(n, k, seed):
    rng = np.random.default_rng(seed)
    base = nn.Sequential(nn.Linear(k, 3, seed=seed), nn.ReLU(), nn.Linear(3, 2, seed=seed + 1))
    model, rounders = round_tensors(base, "fp16")
    assert [id(p) for p in model.parameters()] == [id(p) for p in base.parameters()]
    assert len(rounders) == 2 * len(base)
    x = Tensor(rng.standard_normal((n, k)).astype(np.float32), requires_grad=True)
    y = model(x)
    np.testing.assert_array_equal(y.data, y.data.astype(np.float16).astype(np.float32))
    y.sum().backward()
    x_ref = Tensor(x.data.copy(), requires_grad=True)
    base(x_ref).sum().backward()
    np.testing.assert_allclose(x.grad, x_ref.grad, rtol=2e-3, atol=1e-3)


def test_round_backward_rounds_only_the_gradient():
    g = TensorRounding("fixed8")
    layer = LowPrecisionTensors(act=None, grad=g)
    x = Tensor(np.array([0.123456, -1.0], dtype=np.float32), requires_grad=True)
    y = layer(x)
    np.testing.assert_array_equal(y.data, x.data)
    (y * Tensor(np.array([0.3, 127.0], dtype=np.float32))).sum().backward()
    np.testing.assert_array_equal(x.grad, np.array([0.0, 127.0], dtype=np.float32))


def test_round_tensors_needs_a_sequential():
    with pytest.raises(TypeError, match="Sequential"):
        round_tensors(nn.Linear(2, 2), "fp16")


@pytest.mark.parametrize("bad", [dict(fmt="int4"), dict(fmt="fp16", rounding="down")])
def test_tensor_rounding_refuses_unknown_settings(bad):
    with pytest.raises(ValueError):
        TensorRounding(**bad)


@given(st.integers(0, 20), st.integers(0, 1000))
def test_power_of_two_loss_scale_leaves_float32_gradients_unchanged(e, seed):
    rng = np.random.default_rng(seed)
    x = Tensor(rng.standard_normal((4, 3)).astype(np.float32))
    y = rng.integers(0, 2, 4)
    ref = nn.Sequential(nn.Linear(3, 2, seed=seed))
    F.cross_entropy(ref(x), y).backward()
    model = nn.Sequential(nn.Linear(3, 2, seed=seed))
    scaler = LossScaler(2.0 ** e)
    scaler.scale(F.cross_entropy(model(x), y)).backward()
    assert scaler.unscale(model.parameters())
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-6, atol=1e-12)


def test_dynamic_scaler_skips_an_overflowing_step_and_halves_then_grows():
    p = nn.Linear(1, 1, seed=0).weight
    s = LossScaler(8.0, dynamic=True, interval=2)
    p.grad = np.array([[np.inf]], dtype=np.float32)
    assert not s.unscale([p]) and p.grad is None
    s.update()
    assert s.scale_value == 4.0 and s.skipped == 1
    for _ in range(2):
        p.grad = np.ones((1, 1), np.float32)
        assert s.unscale([p])
        s.update()
    assert s.scale_value == 8.0


@pytest.mark.parametrize("bad", [dict(scale=0), dict(scale=float("nan")), dict(interval=0)])
def test_loss_scaler_refuses_bad_settings(bad):
    with pytest.raises(ValueError):
        LossScaler(**bad)


@pytest.mark.parametrize("w, delta, u, match", [
    (np.zeros(3), np.zeros(2), np.zeros(3), "an update broadcastable"),
    (np.zeros(3), np.zeros(3), np.array([0.1, 1.0, 0.2]), r"uniform draws u in \[0, 1\)"),
    (np.zeros(3), np.zeros(3), np.array([0.1, np.nan, 0.2]), r"uniform draws u in \[0, 1\)"),
    (np.zeros(3), np.zeros(3), np.zeros(2), "draws u broadcastable"),
])
def test_stochastic_stored_step_refuses_bad_input(w, delta, u, match):
    from tinyapprox.optim.stored import stochastic_stored_step
    with pytest.raises(ValueError, match=f"stochastic_stored_step: expected {match}"):
        stochastic_stored_step(w, delta, 4, u)
