"""Binarized networks: sign and its STE, stochastic binarization, latent clipping,
threshold folding, and bit-packed inference equal to the float sign path exactly."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyapprox as ta
from tinyapprox import bnn, kernels, nn, optim
from tinyapprox.testing import strategies as tst

pytestmark = pytest.mark.bnn

XNOR_BACKENDS = kernels.backends()


# ------------------------------------------------------------------ sign and the STE
def test_sign_ste_hand_values():
    x = ta.tensor(np.array([-2.0, -1.0, -0.5, -0.0, 0.0, 0.3, 1.0, 3.0], dtype=np.float32), requires_grad=True)
    y = bnn.sign_ste(x)
    np.testing.assert_array_equal(y.data, [-1, -1, -1, 1, 1, 1, 1, 1])
    assert y.dtype == np.float32
    y.backward(np.arange(1, 9, dtype=np.float32))
    np.testing.assert_array_equal(x.grad, [0, 2, 3, 4, 5, 6, 7, 0])


@given(tst.arrays(shape=(3, 7), low=-3, high=3) | tst.near_zero(shape=(21,)) | tst.near_zero(shape=(21,), scale=1.0))
def test_sign_ste_gradient_inside_outside_clip_range(x):
    t = ta.tensor(x, requires_grad=True)
    g = np.random.default_rng(0).standard_normal(x.shape)
    y = bnn.sign_ste(t)
    np.testing.assert_array_equal(y.data, np.where(x >= 0, 1.0, -1.0))
    y.backward(g)
    np.testing.assert_array_equal(t.grad, np.where(np.abs(x) <= 1, g, 0.0))


@given(tst.near_zero(shape=(70,), dtype=np.float32) | tst.arrays(shape=(2, 65), dtype=np.float32))
def test_sign_matches_pack_bits_convention(x):
    x2 = np.atleast_2d(x)
    signs = bnn.sign_ste(x2).data
    np.testing.assert_array_equal(kernels.unpack_bits(kernels.pack_bits(np.ascontiguousarray(x2)), x2.shape[1]), signs)


@given(st.integers(0, 9), st.integers(0, 200), st.integers(0, 2**16))
def test_pack_bool_matches_kernels_pack_bits(m, k, seed):
    bits = np.random.default_rng(seed).random((m, k)) < 0.5
    np.testing.assert_array_equal(bnn.pack_bool(bits), kernels.pack_bits(np.where(bits, 1, -1).astype(np.int8)))


def test_sign_ste_rejects_integer_input():
    with pytest.raises(TypeError, match="sign_ste"):
        bnn.sign_ste(np.array([1, -1]))


def test_binarization_and_packing_refuse_nan():
    x = np.array([0.5, np.nan, -0.5], dtype=np.float32)
    with pytest.raises(ValueError, match="sign_ste: .*1 NaN"):
        bnn.sign_ste(x)
    with pytest.raises(ValueError, match="stochastic_sign: .*1 NaN"):
        bnn.stochastic_sign(x, 0)
    with pytest.raises(ValueError, match="NaN"):
        bnn.xnor_dot(x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="pack_bool: expected a 2-D bool array, got float32"):
        bnn.pack_bool(x[None])


# ------------------------------------------------------------ stochastic binarization
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stochastic_sign_frequencies_match_probabilities(dtype):
    values = np.array([-1.5, -1.0, -0.8, -0.5, 0.0, 0.2, 0.6, 1.0, 2.0], dtype=dtype)
    n = 20000
    x = np.repeat(values[:, None], n, axis=1)
    y = bnn.stochastic_sign(x, np.random.default_rng(123)).data
    freq = (y == 1).mean(axis=1)
    p = bnn.binarize_probability(values)
    np.testing.assert_allclose(p, [0, 0, 0.1, 0.25, 0.5, 0.6, 0.8, 1, 1], atol=1e-7)
    bound = 5 * np.sqrt(p * (1 - p) / n) + 1e-6  # five standard deviations
    assert np.all(np.abs(freq - p) <= bound), (freq, p)
    assert set(np.unique(y)) <= {-1.0, 1.0}


def test_stochastic_sign_is_reproducible_and_has_the_ste():
    x = np.linspace(-2, 2, 41)
    a = bnn.stochastic_sign(x, 7).data
    b = bnn.stochastic_sign(x, np.random.default_rng(7)).data
    np.testing.assert_array_equal(a, b)
    t = ta.tensor(x, requires_grad=True)
    bnn.stochastic_sign(t, 1).sum().backward()
    np.testing.assert_array_equal(t.grad, (np.abs(x) <= 1).astype(float))
    with pytest.raises(TypeError, match="stochastic_sign"):
        bnn.stochastic_sign(x, "seed")


# --------------------------------------------------------- the transform and the layers
def test_latent_weights_are_clipped_after_each_optimizer_step():
    layer = bnn.BinaryLinear(5, 4, binary_input=False, seed=0)
    opt = optim.Adam(layer.parameters(), lr=10.0)
    x = ta.tensor(np.random.default_rng(1).standard_normal((8, 5)).astype(np.float32))
    before = layer.weight.data.copy()
    (layer(x) ** 2).sum().backward()
    assert layer.weight.grad is not None and np.any(layer.weight.grad != 0)
    opt.step()
    w = layer.weight.data
    assert np.all(np.abs(w) <= 1) and np.any(np.abs(w) == 1)
    assert not np.array_equal(w, before)


def test_binary_linear_forward_and_gradients():
    rng = np.random.default_rng(0)
    layer = bnn.BinaryLinear(6, 3, binary_input=True, seed=0)
    x = ta.tensor(rng.uniform(-2, 2, (4, 6)), requires_grad=True)
    layer.weight.data = layer.weight.data.astype(np.float64)
    y = layer(x)
    wb = np.where(layer.weight.data >= 0, 1.0, -1.0)
    xb = np.where(x.data >= 0, 1.0, -1.0)
    np.testing.assert_array_equal(y.data, xb @ wb.T)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    np.testing.assert_allclose(x.grad, (g @ wb) * (np.abs(x.data) <= 1))
    np.testing.assert_allclose(layer.weight.grad, g.T @ xb)


def test_binarize_state_round_trips_and_stochastic_is_deterministic_in_eval():
    m = bnn.bnn_mlp(hidden=(16,), seed=3, stochastic=True)
    sd = m.state_dict()
    assert any(k.endswith("Binarize.stochastic") for k in sd)
    m2 = bnn.bnn_mlp(hidden=(16,), seed=4)
    m2.load_state_dict(sd)
    t = m2[1].weight.find_transform(bnn.Binarize)
    assert t is not None and t.stochastic
    x = ta.tensor(np.random.default_rng(0).random((5, 784)).astype(np.float32))
    m.eval()
    m2.eval()
    np.testing.assert_array_equal(m(x).data, m2(x).data)
    np.testing.assert_array_equal(m(x).data, m(x).data)


def test_stochastic_binarize_follows_train_and_eval_also_after_loading():
    m = bnn.bnn_mlp(hidden=(16,), seed=3, stochastic=True)
    w = m[1].weight
    t = w.find_transform(bnn.Binarize)
    draws = [w.effective().data.copy() for _ in range(3)]
    assert t.training and any(not np.array_equal(draws[0], d) for d in draws[1:])
    m.eval()
    assert not t.training
    np.testing.assert_array_equal(w.effective().data, np.where(w.data >= 0, 1, -1))
    fresh = bnn.bnn_mlp(hidden=(16,), seed=4).eval()
    fresh.load_state_dict(m.state_dict())               # new Binarize objects, built in eval mode
    t2 = fresh[1].weight.find_transform(bnn.Binarize)
    assert t2 is not t and t2.stochastic and not t2.training
    fresh.train()
    assert t2.training


def test_binary_layers_reject_bad_input():
    with pytest.raises(ValueError, match="BinaryLinear"):
        bnn.BinaryLinear(4, 3)(ta.tensor(np.zeros((2, 5), np.float32)))
    with pytest.raises(ValueError, match="BinaryConv2d"):
        bnn.BinaryConv2d(2, 3, 3)(ta.tensor(np.zeros((2, 1, 5, 5), np.float32)))
    with pytest.raises(ValueError, match="out_features"):
        bnn.BinaryLinear(4, 0)
    with pytest.raises(ValueError, match="Binarize"):
        bnn.Binarize(clip=0)


# ------------------------------------------------------------------ threshold folding
def _bn_sign64(d, gamma, beta, mean, var, eps):
    z = gamma * (d[:, None] - mean) / np.sqrt(var + eps) + beta
    return z, z >= 0


def test_fold_threshold_hand_values():
    s, t, tau = bnn.fold_threshold([2.0, -2.0, 0.0, 0.0], [1.0, 1.0, -1.0, 0.5], [3.0] * 4, [3.0] * 4, eps=1.0, k=10)
    np.testing.assert_allclose(tau[:2], [2.0, 4.0])
    np.testing.assert_array_equal(s, [1, -1, 1, 1])
    np.testing.assert_array_equal(t, [2, -4, 11, -11])  # d >= 2; d <= 4; never; always
    d = np.arange(-10, 11)
    bits = bnn.apply_threshold(np.repeat(d[:, None], 4, axis=1), s, t)
    np.testing.assert_array_equal(bits[:, 0], d >= 2)
    np.testing.assert_array_equal(bits[:, 1], d <= 4)
    assert not bits[:, 2].any() and bits[:, 3].all()


@given(tst.bn_params())
def test_folded_threshold_equals_batch_norm_then_sign(params):
    k, gamma, beta, mean, var = params
    eps = 1e-4
    d = np.arange(-k, k + 1, dtype=np.float64)
    z, want = _bn_sign64(d, gamma.astype(np.float64), beta.astype(np.float64), mean.astype(np.float64),
                         var.astype(np.float64), eps)
    s, t, _ = bnn.fold_threshold(gamma, beta, mean, var, eps=eps, k=k)
    got = bnn.apply_threshold(np.repeat(d[:, None], len(gamma), axis=1).astype(np.int64), s, t)
    # exact except where the float64 evaluation of batch norm is itself within rounding of zero
    scale = np.abs(gamma) * (np.abs(d[:, None]) + np.abs(mean)) / np.sqrt(var + eps) + np.abs(beta)
    sure = np.abs(z) > 1e-12 * (scale + 1)
    np.testing.assert_array_equal(got[sure], want[sure])


@given(tst.bn_params())
def test_calibrated_threshold_equals_the_float32_batch_norm_module_exactly(params):
    k, gamma, beta, mean, var = params
    bn = nn.BatchNorm1d(len(gamma), eps=1e-4)
    bn.gamma.data[:], bn.beta.data[:] = gamma, beta
    bn.running_mean[:], bn.running_var[:] = mean, var
    bn.eval()
    s, t = bnn.calibrate_threshold(lambda v: bn(ta.tensor(v)).data, k, len(gamma))
    d = np.repeat(np.arange(-k, k + 1)[:, None], len(gamma), axis=1)
    with ta.no_grad():
        want = bn(ta.tensor(d.astype(np.float32))).data >= 0
    np.testing.assert_array_equal(bnn.apply_threshold(d, s, t), want)
    flips = (gamma < 0) & want.any(axis=0) & ~want.all(axis=0)
    np.testing.assert_array_equal(s[flips], -1)  # negative gamma flips the comparison


def test_calibrate_refuses_a_non_monotone_activation():
    with pytest.raises(RuntimeError, match="not monotone"):
        bnn.calibrate_threshold(lambda v: np.cos(v), 5, 2)


# ------------------------------------------------------------------ packed inference
def _randomize_bn(model, rng, boundary=True):
    """Random BN statistics with negative and zero gammas, zero variances and means on the grid."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.gamma.data[:] = rng.choice([-1.5, -0.3, 0.0, 0.2, 1.0, 2.5], size=c) * rng.uniform(0.5, 1.5, c)
            m.beta.data[:] = rng.normal(0, 1, c)
            m.running_mean[:] = rng.normal(0, 4, c)
            m.running_var[:] = rng.choice([0.0, 1.0, 7.0, 30.0], size=c) * rng.uniform(0.5, 1.5, c)
            if boundary:  # thresholds exactly on integers: batch norm output exactly 0 there
                on = rng.random(c) < 0.5
                m.running_mean[on] = np.round(m.running_mean[on])
                m.beta.data[on] = 0.0


def _check_packed_equals_sign_path(model, x):
    want_scores, want_hidden = bnn.sign_path(model, x)
    for backend in XNOR_BACKENDS:
        packed = bnn.pack(model, backend=backend)
        hidden = packed.hidden(x)
        assert len(hidden) == len(want_hidden)
        for a, b in zip(hidden, want_hidden):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(packed(x).data, want_scores)
    return packed


@given(st.lists(st.integers(1, 130), min_size=1, max_size=3), st.integers(1, 9), st.integers(0, 2**16))
def test_packed_mlp_equals_float_sign_path_exactly(hidden, batch, seed):
    rng = np.random.default_rng(seed)
    model = bnn.bnn_mlp(hidden=tuple(hidden), seed=seed, in_features=20, num_classes=3)
    _randomize_bn(model, rng)
    x = rng.random((batch, 20)).astype(np.float32)
    _check_packed_equals_sign_path(model, x)


@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2**16))
def test_packed_convnet_equals_float_sign_path_exactly(c1, c2, batch, seed):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        bnn.BinaryConv2d(2, c1, 3, binary_input=False, seed=seed), nn.MaxPool2d(2), nn.BatchNorm2d(c1),
        bnn.BinaryConv2d(c1, c2, 3, stride=1, seed=seed + 1), nn.BatchNorm2d(c2),
        bnn.BinaryConv2d(c2, 3, 2, stride=2, seed=seed + 2), nn.MaxPool2d(2), nn.BatchNorm2d(3), nn.Flatten(),
        bnn.BinaryLinear(3, 4, seed=seed + 3), nn.BatchNorm1d(4))
    _randomize_bn(model, rng)
    x = rng.random((batch, 2, 14, 14)).astype(np.float32)
    _check_packed_equals_sign_path(model, x)


def test_trained_mlp_packs_exactly_and_predicts_the_same():
    (tx, ty), (vx, vy) = ta.data.load("fashion-mnist", limit=600)
    model = bnn.bnn_mlp(hidden=(96, 70), seed=0)
    bnn.train_bnn(model, (tx, ty), epochs=1, verbose=False)
    x = (vx[:200] / 255.0).astype(np.float32)[:, None]
    packed = _check_packed_equals_sign_path(model, x)
    assert ta.train.predict(packed, x).argmax(axis=1).tolist() == \
        ta.train.predict(model, vx[:200]).argmax(axis=1).tolist()
    assert ta.train.evaluate(packed, vx[:200], vy[:200])["top1"] == ta.train.evaluate(model, vx[:200], vy[:200])["top1"]
    weight_bits = 784 * 96 + 96 * 70 + 70 * 10
    rows = ta.cost.layer_costs(packed, (1, 1, 28, 28))
    assert sum(r["weights"] for r in rows) == weight_bits
    # 1 bit per weight; float32 batch norm of the first and last block; int32 threshold + flip bit per hidden unit
    assert ta.cost.model_bytes(packed) == (784 * 96 + 7) // 8 + 4 * 2 * 96 + (96 * 70 + 7) // 8 + 4 * 70 + 9 \
        + (70 * 10 + 7) // 8 + 4 * 2 * 10


def test_bnn_conv_model_packs():
    model = bnn.bnn_conv(channels=(4, 6), fc=12, seed=1)
    _randomize_bn(model, np.random.default_rng(0))
    x = np.random.default_rng(1).random((3, 1, 28, 28)).astype(np.float32)
    _check_packed_equals_sign_path(model, x)


def test_pack_refuses_what_it_cannot_run_exactly():
    padded = nn.Sequential(bnn.BinaryConv2d(1, 2, 3, binary_input=False), nn.BatchNorm2d(2),
                           bnn.BinaryConv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2))
    with pytest.raises(ValueError, match="padding"):
        bnn.pack(padded)
    relu = nn.Sequential(bnn.BinaryLinear(4, 3, binary_input=False), nn.ReLU(), bnn.BinaryLinear(3, 2))
    with pytest.raises(ValueError, match="ReLU"):
        bnn.pack(relu)
    real_hidden = nn.Sequential(bnn.BinaryLinear(4, 3, binary_input=False), bnn.BinaryLinear(3, 2, binary_input=False))
    with pytest.raises(ValueError, match="real-valued"):
        bnn.pack(real_hidden)


def test_packed_forward_refuses_wrong_shapes_and_nan():
    mlp = bnn.pack(bnn.bnn_mlp(hidden=(4,), in_features=6))
    assert mlp(np.zeros((2, 2, 3), np.float32)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"PackedBinaryLinear: expected pixels of shape \(N, 6\), got \(2, 5\)"):
        mlp(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="PackedBinaryLinear: expected pixels without NaN, got 1 NaN"):
        mlp(np.array([[0, 1, 2, 3, 4, np.nan]], np.float32))
    with pytest.raises(ValueError, match=r"PackedBinaryLinear: expected packed bits uint64 \(N, 1\)"):
        mlp[2](np.zeros((2, 4), np.float32))
    with pytest.raises(RuntimeError, match="inference only"):
        mlp.train()
    conv = bnn.pack(bnn.bnn_conv(channels=(2, 2), fc=4))
    with pytest.raises(ValueError, match=r"expected pixels of shape \(N, 1, H, W\), got \(1, 28, 28\)"):
        conv(np.zeros((1, 28, 28), np.float32))


def test_xnor_dot_worked_example():
    a = np.array([1, -1, 1, 1, -1])
    b = np.array([1, 1, -1, 1, -1])
    # agree at 0, 3, 4; disagree at 1, 2: 3 - 2 = 1 = 5 - 2 * popcount(a XOR b) = 5 - 2 * 2
    assert bnn.xnor_dot(a, b) == 1 == int(a @ b)
    rng = np.random.default_rng(0)
    for k in (1, 63, 64, 65, 200):
        a, b = rng.choice([-1, 1], k), rng.choice([-1, 1], k)
        assert bnn.xnor_dot(a, b) == int(a @ b)


@pytest.mark.parametrize("args, match", [
    (([1.0, 2.0], [0.0], [0.0, 0.0], [1.0, 1.0]), "1-D per-channel arrays of one length"),
    (([[1.0]], [[0.0]], [[0.0]], [[1.0]]), "1-D per-channel arrays of one length"),
    (([1.0, np.nan], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]), r"finite values.*gamma"),
    (([1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [1.0, -1.0]), "var \\+ eps > 0"),
])
def test_fold_threshold_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=f"fold_threshold: expected {match}"):
        bnn.fold_threshold(*args)
