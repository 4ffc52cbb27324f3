"""Whole-model quantization: PTQ, integer inference equal to the simulation, power-of-two
shift path, accumulator overflow, export, size accounting, weight sharing."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyapprox as ta
from tinyapprox import nn, optim, quant
from tinyapprox import functional as F
from tinyapprox.quant import integer as I
from tinyapprox.quant import compress as C
from tinyapprox.quant.pipeline import act_quants

pytestmark = pytest.mark.quant


def mlp(seed):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 10, seed=rng), nn.ReLU(), nn.Linear(10, 7, seed=rng), nn.ReLU(),
                         nn.Linear(7, 3, seed=rng))


def convnet(seed):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3, seed=rng), nn.MaxPool2d(2), nn.Conv2d(3, 4, 2, padding=1, seed=rng),
                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 6, seed=rng), nn.ReLU(),
                         nn.Linear(6, 3, seed=rng))


def images(seed, n=40, side=6):
    return np.random.default_rng(seed).random((n, 1, side, side)).astype(np.float32)


def simulate(q, x):
    with ta.no_grad():
        return q.eval()(ta.tensor(x)).data.astype(np.float64)


# ------------------------------------------------------------------ integer == simulation
@settings(max_examples=15)
@given(st.integers(0, 10_000), st.booleans(), st.sampled_from(["int8", "dfp", "pow2"]))
def test_integer_mlp_equals_fake_quant_simulation(seed, per_channel, scheme):
    model = mlp(seed)
    x = images(seed + 1)
    kw = {"pow2_scale": True} if scheme == "int8" else {}
    q = quant.ptq(model, scheme, 8 if scheme != "pow2" else 4, 8, x[:20], per_channel=per_channel, **kw)
    im = quant.convert(q)
    assert all(r["safe"] and r["sim_exact"] for r in im.check())
    np.testing.assert_array_equal(im(x).data, simulate(q, x))
    kinds = {L.kind for L in im.weight_layers()}
    assert kinds == ({"shift"} if scheme == "pow2" else {"int8"} if scheme == "int8" else {"int64"})


@settings(max_examples=10)
@given(st.integers(0, 10_000), st.booleans())
def test_integer_convnet_on_int8_kernel_equals_simulation(seed, per_channel):
    model = convnet(seed)
    x = images(seed + 1, n=12, side=9)
    q = quant.ptq(model, "int8", 8, 8, x, per_channel=per_channel, pow2_scale=True)
    im = quant.convert(q)
    np.testing.assert_array_equal(im(x).data, simulate(q, x))


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_integer_backends_agree(backend):
    if backend not in ta.kernels.backends():
        pytest.skip(f"backend {backend} not available")
    model = mlp(3)
    x = images(4)
    q = quant.ptq(model, "int8", 8, 8, x, pow2_scale=True)
    np.testing.assert_array_equal(quant.convert(q, backend=backend)(x).data, simulate(q, x))


def test_integer_model_refuses_what_it_cannot_run():
    q = quant.ptq(mlp(0), "minifloat", 8, 8, images(0))
    with pytest.raises(ValueError, match="integer codes"):
        quant.convert(q)
    with pytest.raises(ValueError, match="ActQuant"):
        quant.convert(quant.prepare(mlp(0), "int8", 8, None))


# ------------------------------------------------------------------ requantization
def test_round_shift_pins_and_matches_rint():
    v = np.array([5, 6, 7, -5, -6, -7, 12, 4])
    np.testing.assert_array_equal(I.round_shift(v, 2), [1, 2, 2, -1, -2, -2, 3, 1])   # 6/4=1.5->2, 5/4->1
    np.testing.assert_array_equal(I.round_shift(v, -1), 2 * v)
    v = np.random.default_rng(0).integers(-2 ** 40, 2 ** 40, 5000)
    for s in (1, 3, 17):
        np.testing.assert_array_equal(I.round_shift(v, s), np.rint(v / 2.0 ** s).astype(np.int64))


@given(hnp.arrays(np.int64, 30, elements=st.integers(-2 ** 24, 2 ** 24)), st.floats(1e-4, 4.0))
def test_requantize_integer_multiplier(acc, M):
    q = I.requantize(acc, M, -127, 127)
    ref = np.clip(np.rint(acc * M), -127, 127)
    assert np.all(np.abs(q - ref) <= 1)             # a 31-bit multiplier: off by at most one step
    p2 = 2.0 ** np.round(np.log2(M))
    np.testing.assert_array_equal(I.requantize(acc, p2, -127, 127), np.clip(np.rint(acc * p2), -127, 127))
    np.testing.assert_array_equal(I.requantize(acc, p2, -127, 127, relu=True),
                                  np.clip(np.rint(np.maximum(acc, 0) * p2), 0, 127))


# ------------------------------------------------------------------ power-of-two shift path
@given(st.integers(0, 10_000), st.integers(1, 5), st.integers(1, 9), st.integers(1, 4), st.integers(2, 5))
def test_pow2_shift_path_equals_float_product(seed, n, k, o, bits):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((o, k)) * 0.5
    w[rng.random((o, k)) < 0.2] = 0.0
    fmt = quant.PowerOfTwo.from_tensor(w, bits)
    sign, e = fmt.exponents(w)
    act = quant.DynamicFixedPoint(8, 5, signed=True)
    x_int = rng.integers(act.qmin, act.qmax + 1, (n, k))
    z = I.pow2_matmul(x_int, sign, e, fmt.min_exp)
    np.testing.assert_array_equal(z, I.pow2_matmul_reference(x_int, sign, e, fmt.min_exp))
    exact = act.dequantize(x_int) @ fmt.fake(w).T           # float64 product of the quantized values
    np.testing.assert_array_equal(np.ldexp(z.astype(np.float64), fmt.min_exp - act.frac_length), exact)


# ------------------------------------------------------------------ accumulator overflow
def test_accumulator_bound_fires_on_constructed_case_and_is_quiet_otherwise():
    assert not I.accumulator_bound(4, 127, 127, acc_bits=16)["safe"]          # 64516 > 32767
    assert I.accumulator_bound(2, 127, 127, acc_bits=16)["safe"]              # 32258 <= 32767
    assert I.accumulator_bound(784, 127, 127, acc_bits=32)["safe"]
    assert not I.accumulator_bound(2 ** 17 + 1, 128, 128, acc_bits=32)["safe"]
    assert I.accumulator_bound(4, 127, 127, acc_bits=16, w_abs_row_sums=[100, 200])["safe"]


def test_sixteen_bit_accumulator_overflows_on_constructed_case():
    lin = nn.Linear(4, 1, bias=False)
    lin.weight.data[:] = 0.99                       # codes 127 with the power-of-two scale 2^-7
    model = nn.Sequential(nn.Flatten(), lin)
    x = np.full((1, 1, 2, 2), 0.99, dtype=np.float32)
    q = quant.ptq(model, "int8", 8, 8, x, pow2_scale=True)
    im32 = quant.convert(q, acc_bits=32)
    im16 = quant.convert(q, acc_bits=16)
    assert im32.check()[0]["safe"] and not im16.check()[0]["safe"]
    good, bad = im32(x).data[0, 0], im16(x).data[0, 0]
    assert good == simulate(q, x)[0, 0] > 0
    assert bad < 0                                  # 4 * 127 * 127 = 64516 wrapped to -1020
    assert bad / good == pytest.approx(I.wrap(64516, 16) / 64516)
    lin.weight.data[:] = [[0.99, 0.1, 0.1, 0.1]]    # codes 127, 13, 13, 13: |acc| <= 127 * 166 < 2^15
    q = quant.ptq(model, "int8", 8, 8, x, pow2_scale=True)
    safe = quant.convert(q, acc_bits=16)
    assert all(r["safe"] for r in safe.check())
    np.testing.assert_array_equal(safe(x).data, simulate(q, x))


# ------------------------------------------------------------------ PTQ, QAT, size and export
def test_ptq_inserts_act_quant_in_front_of_weight_layers():
    q = quant.prepare(convnet(0), "dfp", 6, 8)
    kinds = [type(m).__name__ for m in q]
    assert kinds[0] == "ActQuant" and kinds[kinds.index("Linear") - 1] == "ActQuant"
    assert len(quant.pipeline.act_quants(q)) == 4
    with pytest.raises(TypeError, match="Sequential"):
        quant.prepare(nn.Linear(2, 2), "int8")


@pytest.mark.parametrize("calib, n", [(images(0, n=0), 512), (images(0, n=4), 0)])
def test_calibration_on_no_images_raises(calib, n):
    q = quant.prepare(mlp(0), "int8", 8, 8)
    with pytest.raises(ValueError, match=r"calibrate: expected at least one calibration image, got \d+ image"):
        quant.calibrate(q, calib, n=n)


def test_calibration_on_images_with_nan_names_the_observer():
    q = quant.prepare(mlp(0), "int8", 8, 8)
    x = images(0, n=4)
    x[2, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="Observer.update: expected finite values"):
        quant.calibrate(q, x)


def test_qat_step_updates_shadow_weights_and_keeps_grid():
    model = mlp(1)
    x = images(2)
    q = quant.ptq(model, "dfp", 4, 4, x)
    layer = q[2]
    before = layer.weight.data.copy()
    opt = optim.SGD(q.parameters(), lr=0.1)
    loss = F.cross_entropy(q(ta.tensor(x)), np.arange(len(x)) % 3)
    loss.backward()
    assert np.abs(layer.weight.grad).sum() > 0
    opt.step()
    assert not np.array_equal(layer.weight.data, before)                 # the shadow moved
    eff = layer.weight.effective().data
    fmt = layer.weight.find_transform(quant.WeightQuant).fmt
    np.testing.assert_array_equal(eff, fmt.fake(layer.weight.data))
    assert len(np.unique(eff)) <= 16


def test_model_size_counts_codes_scales_and_biases():
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 4))
    q = quant.ptq(model, "int8", 8, 8, images(0, 5, side=1).repeat(10, axis=2)[:, :, :, :1].reshape(5, 1, 10, 1))
    s = quant.model_size(q)
    # weight: 40 one-byte codes + 4-byte scale; bias: 4 int32 codes + 4-byte scale; input quantizer: 4-byte scale
    assert s["bytes"] == 40 + 4 + 16 + 4 + 4
    assert s["fp32_bytes"] == 4 * 44 and s["compression"] == pytest.approx(176 / 68)
    q4 = quant.ptq(model, "dfp", 4, None)
    assert quant.model_size(q4)["bytes"] == 20 + 1 + 2 + 1


def test_export_keeps_only_integer_codes_and_reloads_exactly(tmp_path):
    model = mlp(5)
    x = images(6)
    for scheme, kw in [("int8", {"per_channel": True}), ("dfp", {}), ("pow2", {}), ("minifloat", {})]:
        q = quant.ptq(model, scheme, 4 if scheme == "pow2" else 8, 8, x, **kw)
        path = tmp_path / f"{scheme}.npz"
        arrays = quant.export_npz(q, path)
        assert not any(k.endswith("weight") for k in arrays)
        assert all(arrays[k].dtype.kind in "iu" for k in arrays if k.endswith(".codes"))
        fresh = quant.prepare(mlp(99), scheme, 4 if scheme == "pow2" else 8, 8, **kw)
        quant.load_npz(path, fresh)
        np.testing.assert_array_equal(simulate(fresh, x), simulate(q, x))


@pytest.mark.parametrize("scheme, kw", [("int8", {"per_channel": True}), ("dfp", {}), ("pow2", {})])
def test_ptq_model_saved_and_loaded_into_a_fresh_prepare_predicts_identically(tmp_path, scheme, kw):
    from tinyapprox import train

    x = images(7)
    bits = 4 if scheme == "pow2" else 8
    q = quant.ptq(mlp(3), scheme, bits, 8, x, **kw)
    assert all(np.isfinite(aq.qrange).all() for _, aq in act_quants(q))
    assert {f"{n}.qrange" for n, _ in act_quants(q)} <= set(q.state_dict())
    train.save_model(q, tmp_path / "q.npz")
    fresh = quant.prepare(mlp(99), scheme, bits, 8, **kw)
    train.load_model(fresh, tmp_path / "q.npz")
    assert [aq.mode for _, aq in act_quants(fresh)] == ["quantize"] * 3
    np.testing.assert_array_equal(train.predict(fresh, x), train.predict(q, x))


def test_reassigned_buffer_stays_a_buffer():
    aq = quant.ActQuant("int8", 8)
    aq.qrange = np.array([-1.0, 2.0])
    aq.mode = "quantize"
    state = aq.state_dict()
    np.testing.assert_array_equal(state["qrange"], [-1.0, 2.0])
    other = quant.ActQuant("int8", 8).load_state_dict(state)
    assert other.mode == "quantize" and other.qrange.tolist() == [-1.0, 2.0]
    with pytest.raises(TypeError, match="ActQuant.qrange is a buffer"):
        aq.qrange = ta.tensor([0.0, 1.0])
    with pytest.raises(TypeError, match="ActQuant.qrange is a buffer: expected a numeric array, got NoneType"):
        aq.qrange = None
    with pytest.raises(ValueError, match="ActQuant: unknown mode 'quantise'"):
        aq.mode = "quantise"


def test_qat_checkpoint_resumes_bit_for_bit(tmp_path):
    x = images(8, n=48)
    y = np.arange(len(x)) % 3

    def prepared():
        q = quant.prepare(mlp(4), "int8", 8, 8, observer="moving_average")
        return q

    def run(q, epochs, ckpt=None, resume=False):
        return quant.finetune(q, x, y, epochs=epochs, lr=0.05, batch_size=16, seed=2, track_acts=True,
                              checkpoint=ckpt, resume=resume)

    ref = quant.calibrate(prepared(), x)
    ref_hist = run(ref, 3)
    ckpt = tmp_path / "qat.npz"
    run(quant.calibrate(prepared(), x), 1, ckpt)
    resumed = prepared()                     # never calibrated: everything comes from the checkpoint
    hist = run(resumed, 3, ckpt, resume=True)
    assert hist["loss"] == ref_hist["loss"]
    for (name, a), (_, b) in zip(ref.state_dict().items(), resumed.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(simulate(resumed, x), simulate(ref, x))


# ------------------------------------------------------------------ Deep Compression pieces
def test_kmeans_huffman_and_relative_indices_by_hand():
    c, a = C.kmeans_1d(np.array([0.0, 0.2, 2.0, 2.2, 4.0]), 3)     # linear init 0, 2, 4
    np.testing.assert_allclose(c, [0.1, 2.1, 4.0])
    np.testing.assert_array_equal(a, [0, 0, 1, 1, 2])
    assert C.huffman_lengths([0, 0, 0, 0, 1, 1, 2, 3]) == {0: 1, 1: 2, 2: 3, 3: 3}
    gaps, filler = C.relative_indices(np.array([0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), diff_bits=2)
    np.testing.assert_array_equal(gaps, [2, 4, 4, 2])               # positions 1, (5), (9), 11
    np.testing.assert_array_equal(filler, [False, True, True, False])


@given(st.integers(0, 1000), st.integers(1, 4))
def test_kmeans_sharing_keeps_zeros_and_uses_at_most_2_to_bits_values(seed, bits):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((6, 9)).astype(np.float32)
    w[rng.random(w.shape) < 0.5] = 0
    p = nn.Parameter(w)
    p.add_transform(C.KMeansQuant(bits))
    eff = p.effective().data
    np.testing.assert_array_equal(eff == 0, w == 0)
    assert len(np.unique(eff[eff != 0])) <= 2 ** bits
    size = C.sparse_size(w, p.transforms[0].codes(w), bits)
    assert size["huffman"] > 0 and size["nnz"] == np.count_nonzero(w)
