"""One lowering for all three techniques: prune.to_sparse, quant.convert and bnn.pack give
eval-only Modules that compute what the trained model computes (to float tolerance, bit
for bit, exactly) and that train, summary and cost handle like any model."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tinyapprox as ta
from tinyapprox import bnn, cost, kernels, nn, prune, quant
from tinyapprox.quant import integer as I

BACKENDS = kernels.backends()


def _mlp(widths, rng, relu=True):
    layers = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b, seed=rng)] + ([nn.ReLU()] if relu else [])
    if relu:
        layers.pop()
    return nn.Sequential(*layers)


def _side2(k, stride, padding, side):
    s1 = (side + 2 * padding - k) // stride + 1
    return (s1 // 2 + 2 * padding - k) // stride + 1


def _convnet(c1, c2, k, stride, padding, rng, side):
    s2 = _side2(k, stride, padding, side)
    return nn.Sequential(nn.Conv2d(2, c1, k, stride=stride, padding=padding, seed=rng), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(c1, c2, k, stride=stride, padding=padding, seed=rng), nn.ReLU(), nn.Flatten(),
                         nn.Linear(c2 * s2 * s2, 5, seed=rng))


def _simulate(model, x):
    with ta.no_grad():
        return model.eval()(ta.tensor(x)).data


# ------------------------------------------------------------------ the one im2col, channels-last
@given(st.integers(1, 3), st.integers(1, 5), st.integers(3, 9), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 2), st.sampled_from([np.float32, np.int8, np.uint64]))
def test_im2col_channels_last_gives_the_same_rows_c_contiguous(n, c, side, k, stride, padding, dtype):
    x = np.random.default_rng(side * 7 + k).integers(0, 100, (n, c, side, side)).astype(dtype)
    assume(side + 2 * padding >= k)
    want = ta.conv.im2col(x, k, k, stride, padding)
    got = ta.conv.im2col(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), k, k, stride, padding, channels_last=True)
    assert got.flags.c_contiguous and got.dtype == x.dtype
    np.testing.assert_array_equal(got, want)


@given(st.integers(1, 3), st.integers(1, 6), st.integers(2, 9), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from([np.float32, np.int8]))
def test_channels_last_max_pool_equals_the_engines_pooling(n, c, side, k, stride, dtype):
    assume(k <= side)
    x = np.random.default_rng(side + 10 * k).integers(-100, 100, (n, c, side, side)).astype(dtype)
    want = ta.conv.max_pool2d(x.astype(np.float64), k, stride, 0).data.astype(dtype)
    got = nn.MaxPool2dNHWC(k, stride)(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).data
    np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), want)


# ------------------------------------------------------------------ prune.to_sparse
@given(st.lists(st.integers(1, 40), min_size=2, max_size=4), st.integers(0, 9), st.floats(0.0, 1.0),
       st.integers(0, 2 ** 16))
def test_to_sparse_mlp_equals_dense_to_float_tolerance(widths, batch, amount, seed):
    rng = np.random.default_rng(seed)
    model = _mlp(widths, rng)
    prune.magnitude(model, amount=amount)
    x = rng.normal(size=(batch, widths[0])).astype(np.float32)
    want = _simulate(model, x)
    for backend in BACKENDS:
        lowered = prune.to_sparse(model, backend=backend)
        assert not any(isinstance(m, nn.ReLU) for m in lowered.modules())       # every ReLU fused
        got = lowered(x).data
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@settings(max_examples=15)
@given(st.integers(1, 5), st.integers(1, 6), st.sampled_from([1, 2, 3]), st.integers(1, 2), st.integers(0, 1),
       st.integers(1, 3), st.integers(0, 2 ** 16))
def test_to_sparse_convnet_equals_dense_to_float_tolerance(c1, c2, k, stride, padding, batch, seed):
    rng = np.random.default_rng(seed)
    side = 12
    assume(_side2(k, stride, padding, side) >= 1)
    model = _convnet(c1, c2, k, stride, padding, rng, side)
    prune.magnitude(model, amount=float(rng.uniform(0, 0.95)))
    x = rng.normal(size=(batch, 2, side, side)).astype(np.float32)
    np.testing.assert_allclose(prune.to_sparse(model)(x).data, _simulate(model, x), rtol=1e-5, atol=1e-5)


def test_to_sparse_results_do_not_depend_on_threads():
    rng = np.random.default_rng(0)
    model = _mlp((50, 70, 10), rng)
    prune.magnitude(model, amount=0.8)
    x = rng.normal(size=(33, 50)).astype(np.float32)
    np.testing.assert_array_equal(prune.to_sparse(model, threads=1)(x).data, prune.to_sparse(model, threads=2)(x).data)


# ------------------------------------------------------------------ quant.convert
@settings(max_examples=20)
@given(st.lists(st.integers(1, 30), min_size=2, max_size=4), st.integers(1, 12), st.booleans(),
       st.sampled_from(["int8", "dfp", "pow2"]), st.integers(0, 2 ** 16))
def test_convert_mlp_equals_simulation_bit_for_bit_with_pow2_scales(widths, batch, per_channel, scheme, seed):
    rng = np.random.default_rng(seed)
    model = _mlp(widths, rng)
    x = rng.random((batch, widths[0])).astype(np.float32)
    calib = rng.random((16, widths[0])).astype(np.float32)
    kw = {"pow2_scale": True} if scheme == "int8" else {}
    q = quant.ptq(model, scheme, 4 if scheme == "pow2" else 8, 8, calib, per_channel=per_channel, **kw)
    lowered = quant.convert(q)
    assert all(r["sim_exact"] for r in lowered.check())
    np.testing.assert_array_equal(lowered(x).data, _simulate(q, x))


@settings(max_examples=10)
@given(st.integers(1, 4), st.integers(1, 5), st.sampled_from([1, 2, 3]), st.integers(0, 1), st.booleans(),
       st.integers(0, 2 ** 16))
def test_convert_convnet_equals_simulation_bit_for_bit(c1, c2, k, padding, per_channel, seed):
    rng = np.random.default_rng(seed)
    model = _convnet(c1, c2, k, 1, padding, rng, 10)
    x = rng.random((3, 2, 10, 10)).astype(np.float32)
    q = quant.ptq(model, "int8", 8, 8, x, per_channel=per_channel, pow2_scale=True)
    lowered = quant.convert(q)
    assert [L.kind for L in lowered.weight_layers()] == ["int8"] * 3
    np.testing.assert_array_equal(lowered(x).data, _simulate(q, x))


@settings(max_examples=20)
@given(st.integers(2, 40), st.integers(1, 30), st.booleans(), st.integers(0, 2 ** 16))
def test_convert_with_float_scales_is_within_one_requantization_step(k, m, per_channel, seed):
    """Arbitrary scales: M = s_acc / s_out is rounded to 31 significant bits, so a hidden code
    differs from round(acc * M) (M exact, float64) by at most one step, and only next to a tie."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(k, m, seed=rng), nn.ReLU(), nn.Linear(m, 3, seed=rng))
    x = rng.normal(size=(20, k)).astype(np.float32)
    q = quant.finalize(quant.ptq(model, "int8", 8, 8, x, per_channel=per_channel))
    lowered = quant.convert(q)
    codes_in = lowered[0](x)
    hidden = lowered[1](codes_in).data.astype(np.int64)
    layer = lowered[1]
    acc = codes_in.data.astype(np.int64) @ layer.codes.T + layer.bias
    real = acc * (layer.acc_scale / layer.out[0])
    exact = np.clip(np.rint(real), 0, 127)
    assert np.all(np.abs(hidden - exact) <= 1)
    off_tie = np.abs(np.abs(real - np.floor(real)) - 0.5) > 1e-6 * np.maximum(np.abs(real), 1)
    np.testing.assert_array_equal(hidden[off_tie], exact[off_tie])
    np.testing.assert_allclose(lowered(x).data, _simulate(q, x), atol=0.05 * np.abs(_simulate(q, x)).max() + 1e-6)


def test_requantize_is_monotone_so_it_commutes_with_relu_and_max_pool():
    rng = np.random.default_rng(0)
    acc = np.sort(rng.integers(-2 ** 20, 2 ** 20, 4000))
    for M in (2.0 ** -9, 0.00123, 0.37):
        q = I.requantize(acc, M, -127, 127)
        assert np.all(np.diff(q) >= 0)
        np.testing.assert_array_equal(I.requantize(np.maximum(acc, 0), M, -127, 127), I.requantize(acc, M, -127, 127,
                                                                                                      relu=True))


def test_convert_results_do_not_depend_on_threads_and_refuse_training():
    rng = np.random.default_rng(1)
    model = _mlp((30, 40, 10), rng)
    x = rng.random((25, 30)).astype(np.float32)
    q = quant.ptq(model, "int8", 8, 8, x, pow2_scale=True)
    np.testing.assert_array_equal(quant.convert(q, threads=1)(x).data, quant.convert(q, threads=2)(x).data)
    lowered = quant.convert(q)
    with pytest.raises(RuntimeError, match="inference only"):
        lowered.train()
    with pytest.raises(TypeError, match="QuantizedLinear: expected int8 codes"):
        lowered[2](x)


def test_convert_refuses_what_it_cannot_run():
    rng = np.random.default_rng(2)
    x = rng.random((6, 2, 8, 8)).astype(np.float32)
    avg = nn.Sequential(nn.Conv2d(2, 3, 3, seed=rng), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(27, 4, seed=rng))
    with pytest.raises(ValueError, match="convert: cannot run AvgPool2d"):
        quant.convert(quant.ptq(avg, "int8", 8, 8, x, pow2_scale=True))
    with pytest.raises(ValueError, match="acc_bits"):
        quant.convert(quant.ptq(avg, "int8", 8, 8, x, pow2_scale=True), acc_bits=1)


# ------------------------------------------------------------------ bnn.pack
@settings(max_examples=20)
@given(st.lists(st.integers(1, 140), min_size=1, max_size=3), st.integers(1, 7), st.integers(0, 2 ** 16))
def test_pack_mlp_equals_float_sign_path_exactly(hidden, batch, seed):
    rng = np.random.default_rng(seed)
    model = bnn.bnn_mlp(hidden=tuple(hidden), seed=seed, in_features=30, num_classes=4)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            c = m.num_features
            m.gamma.data[:] = rng.choice([-1.0, 0.0, 0.5, 2.0], size=c)
            m.beta.data[:] = rng.normal(0, 1, c)
            m.running_mean[:] = np.round(rng.normal(0, 5, c))
            m.running_var[:] = rng.uniform(0.0, 20.0, c)
    x = rng.random((batch, 30)).astype(np.float32)
    scores, hidden_signs = bnn.sign_path(model, x)
    packed = bnn.pack(model)
    np.testing.assert_array_equal(packed(x).data, scores)
    for a, b in zip(packed.hidden(x), hidden_signs):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=15)
@given(st.integers(1, 140), st.integers(1, 70), st.integers(1, 9), st.integers(0, 2 ** 16))
def test_pack_int8_first_layer_equals_exact_integer_sums(h1, h2, batch, seed):
    """first_layer="int8": the first block is the sign of batch norm at float32(D / 255) for the
    exact integer dot product D of the 8-bit pixels; the rest equals the float sign path."""
    rng = np.random.default_rng(seed)
    model = bnn.bnn_mlp(hidden=(h1, h2), seed=seed, in_features=50, num_classes=3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            c = m.num_features
            m.gamma.data[:] = rng.choice([-1.0, 0.0, 0.5, 2.0], size=c)
            m.beta.data[:] = rng.normal(0, 1, c)
            m.running_mean[:] = rng.normal(0, 30, c)
            m.running_var[:] = rng.uniform(0.0, 50.0, c)
    pixels = rng.integers(0, 256, (batch, 50))
    x = (pixels / np.float32(255)).astype(np.float32)
    packed = bnn.pack(model, first_layer="int8")
    first, bn1 = model[1], model[2].eval()
    d = pixels @ np.where(first.weight.data >= 0, 1, -1).T
    with ta.no_grad():
        h = bn1(ta.tensor((d / 255.0).astype(np.float32))).data >= 0
    hidden = packed.hidden(x)
    np.testing.assert_array_equal(hidden[0], np.where(h, 1, -1))
    with ta.no_grad():
        rest = nn.Sequential(*list(model)[3:]).eval()(ta.tensor(hidden[0].astype(np.float32))).data
    np.testing.assert_array_equal(packed(x).data, rest)
    with pytest.raises(ValueError, match="first_layer"):
        bnn.pack(model, first_layer="int4")


@settings(max_examples=20)
@given(st.integers(-3, 3), st.floats(0.01, 30.0), st.floats(-3, 3), st.floats(-50, 50))
def test_float_thresholds_reproduce_batch_norm_sign_on_every_float(gamma, var, beta, mean):
    bn = nn.BatchNorm1d(1, eps=1e-4).eval()
    bn.gamma.data[:], bn.beta.data[:] = gamma, beta
    bn.running_mean[:], bn.running_var[:] = mean, var
    s, t = bnn.float_thresholds(lambda v: bn(ta.tensor(v)).data, 1)
    y = np.concatenate([np.random.default_rng(0).normal(mean, 60, 2000).astype(np.float32),
                        np.nextafter(np.float32(t[0]) if np.isfinite(t[0]) else np.float32(0),
                                     np.float32([-np.inf, np.inf]))]).astype(np.float32)
    if np.isfinite(t[0]):
        y = np.append(y, t)
    with ta.no_grad():
        want = bn(ta.tensor(y[:, None])).data[:, 0] >= 0
    np.testing.assert_array_equal(y * s[0] >= s[0] * t[0], want)


# ------------------------------------------------------------------ one shape: train, summary, cost
def _three_lowered():
    rng = np.random.default_rng(3)
    (tx, ty), (vx, vy) = ta.data.load("fashion-mnist", limit=300)
    dense = ta.models.get("lenet-300-100", seed=0)
    pruned = ta.models.get("lenet-300-100", seed=0)
    prune.magnitude(pruned, amount=0.9)
    x = (tx[:64] / np.float32(255))[:, None]
    q = quant.ptq(dense, "int8", 8, 8, x, pow2_scale=True)
    b = bnn.bnn_mlp(hidden=(64, 64), seed=0)
    b.eval()
    return (vx[:200], vy[:200]), [(pruned, prune.to_sparse(pruned)), (q, quant.convert(q)), (b, bnn.pack(b))], rng


def test_every_lowered_model_runs_through_train_summary_and_cost():
    (vx, vy), pairs, _ = _three_lowered()
    for model, lowered in pairs:
        want = ta.train.evaluate(model, vx, vy)
        got = ta.train.evaluate(lowered, vx, vy)
        assert got["top1"] == pytest.approx(want["top1"], abs=1e-12) and got["n"] == want["n"]
        rows = lowered.summary((1, 1, 28, 28), print_fn=lambda *_: None)
        assert sum(r["parameters"] for r in rows) == lowered.num_parameters() > 0
        dense_rows = [r for r in cost.layer_costs(model, (2, 1, 28, 28)) if r["kind"] in ("linear", "conv")]
        low_rows = [r for r in cost.layer_costs(lowered, (2, 1, 28, 28)) if r["kind"] in ("linear", "conv")]
        assert [r["macs"] for r in low_rows] == [r["macs"] for r in dense_rows]
        assert [r["nonzero_weights"] for r in low_rows] == [r["nonzero_weights"] for r in dense_rows]
        assert all(r["lowered"] for r in low_rows)
        nbytes = cost.model_bytes(lowered)
        assert 0 < nbytes < cost.model_bytes(model, sparse=False)
        e = cost.inference_energy(lowered, (1, 1, 28, 28))
        assert 0 < e.total_pj < cost.inference_energy(model, (1, 1, 28, 28), sparse=False).total_pj
        assert "Lowered layers" in e.assumptions


def test_lowered_bytes_are_what_the_layers_store():
    _, pairs, _ = _three_lowered()
    (pruned, sparse_model), (q, int_model), (b, packed) = pairs
    csr = sum(m.weight.nbytes + 4 * m.bias.size for m in sparse_model.modules() if hasattr(m, "weight"))
    assert cost.model_bytes(sparse_model) == csr
    # int8 codes + int32 bias + float32 scale + (m0, shift) per hidden output, + the input scale
    widths = [(784, 300), (300, 100), (100, 10)]
    want = 4 + sum(k * m + 4 * m + 4 * m + (8 * m if i < 2 else 0) for i, (k, m) in enumerate(widths))
    assert cost.model_bytes(int_model) == want
    assert cost.model_bytes(packed) * 8 >= 784 * 64 + 64 * 64 + 64 * 10


# ------------------------------------------------------------------ the benchmark command
def test_bench_inference_quick_reports_every_row(tmp_path, capsys):
    import argparse
    import json

    from tinyapprox.experiments import bench_inference

    parser = bench_inference.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--model", "lenet-300-100", "--quick", "--no-torch", "--no-profile", "--repeat", "1",
                              "--batch1-images", "5", "--out", str(tmp_path)])
    assert bench_inference.run(args) == 0
    result = json.loads((tmp_path / "results_lenet-300-100.json").read_text())
    rows = {r["row"]: r for r in result["rows"]}
    assert list(rows) == ["fp32", "12x pruned, CSR", "filter-pruned, dense", "int8 (quant.convert)"]
    assert rows["fp32"]["speedup"] == 1.0
    assert rows["12x pruned, CSR"]["bytes"] < rows["filter-pruned, dense"]["bytes"] < rows["fp32"]["bytes"]
    assert all(0 < r["ms_per_10k"] and 0 <= r["top1"] <= 1 and r["energy_uj"] > 0 for r in rows.values())
    assert "QUICK MODE" in capsys.readouterr().out


def test_torch_twin_computes_what_our_model_computes():
    torch = pytest.importorskip("torch")
    from tinyapprox.experiments.bench_inference import _torch_twin

    rng = np.random.default_rng(5)
    x = rng.random((7, 1, 28, 28)).astype(np.float32)
    for model in (ta.models.get("lenet5", seed=1), bnn.float_mlp((30, 20), seed=1)):
        model.eval()
        twin = _torch_twin(model)
        with torch.no_grad():
            got = twin(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, _simulate(model, x), rtol=1e-4, atol=1e-4)


@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 4))
def test_nchw_columns_to_nhwc_matches_a_transpose_of_the_image(out, c, hw):
    from tinyapprox.nn.inference import nchw_columns_to_nhwc
    w = np.arange(out * c * hw * hw, dtype=np.float32).reshape(out, c * hw * hw)
    x = np.random.default_rng(0).standard_normal((c, hw, hw)).astype(np.float32)
    got = nchw_columns_to_nhwc(w, c) @ x.transpose(1, 2, 0).reshape(-1)
    np.testing.assert_allclose(got, w @ x.reshape(-1), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("w, channels", [(np.zeros(6), 2), (np.zeros((2, 6)), 4), (np.zeros((2, 6)), 0)])
def test_nchw_columns_to_nhwc_refuses_bad_input(w, channels):
    from tinyapprox.nn.inference import nchw_columns_to_nhwc
    with pytest.raises(ValueError, match="nchw_columns_to_nhwc: expected"):
        nchw_columns_to_nhwc(w, channels)


def test_trace_layers_records_every_leaf_and_puts_back_an_instance_forward():
    from tinyapprox.nn.tracing import trace_layers
    model = nn.Sequential(nn.Linear(3, 4, seed=0), nn.ReLU(), nn.Linear(4, 2, seed=1))
    relu = model[1]
    own = lambda x: ta.Tensor(np.maximum(x.data, 0.0) * 2.0)  # noqa: E731
    object.__setattr__(relu, "forward", own)
    x = np.ones((5, 3), np.float32)
    records = trace_layers(model, x)
    assert [r[0] for r in records] == ["0", "1", "2"]
    np.testing.assert_array_equal(records[1][3], 2.0 * np.maximum(records[1][2], 0.0))
    assert relu.__dict__["forward"] is own
    assert "forward" not in model[0].__dict__
