"""Pruning: masks through training, criteria and scope, granularities, schedules, report, conversion."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyapprox import Tensor, nn, optim, prune
from tinyapprox import functional as F

pytestmark = pytest.mark.pruning


def _mlp(seed=0):
    return nn.Sequential(nn.Linear(6, 5, seed=seed), nn.ReLU(), nn.Linear(5, 3, seed=seed + 1))


def _convnet(seed=0):
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, seed=seed), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 2 * 2, 3, seed=seed))


def _train_steps(model, opt, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = Tensor(rng.standard_normal((8, 6)).astype(np.float32))
        y = rng.integers(0, 3, 8)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("make_opt", [
    lambda p: optim.SGD(p, lr=0.5, momentum=0.9, weight_decay=1e-3),
    lambda p: optim.Adam(p, lr=0.05),
])
def test_masked_entries_stay_exactly_zero_through_training(make_opt):
    model = _mlp()
    opt = make_opt(model.parameters())
    _train_steps(model, opt, 3)  # build up momentum / Adam moments on every weight first
    masks = prune.magnitude(model, amount=0.6)
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    _train_steps(model, opt, 6, seed=1)
    for name, p in model.named_parameters():
        if name in masks:
            assert np.all(p.data[~masks[name]] == 0)
            assert np.any(p.data[masks[name]] != before[name][masks[name]])  # the rest still trains
    assert prune.sparsity(model) == pytest.approx((round(0.6 * 30) + round(0.6 * 15)) / 45)


def test_gradient_of_pruned_entries_is_zero():
    layer = nn.Linear(3, 2, seed=0)
    mask = np.array([[1, 0, 1], [0, 0, 1]], bool)
    prune.apply_mask(layer.weight, mask)
    F.sum(layer(Tensor(np.ones((4, 3), np.float32)))).backward()
    assert np.all(layer.weight.grad[~mask] == 0) and np.all(layer.weight.grad[mask] != 0)


def test_layer_vs_global_scope_hand_built():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    model[0].weight.data[:] = [[1.0, 2.0], [3.0, 4.0]]
    model[1].weight.data[:] = [[0.1, 0.2], [0.3, 5.0]]
    layer = prune.magnitude(_copy(model), amount=0.5)
    np.testing.assert_array_equal(layer["0.weight"], [[0, 0], [1, 1]])
    np.testing.assert_array_equal(layer["1.weight"], [[0, 0], [1, 1]])
    glob = prune.magnitude(_copy(model), amount=0.5, scope="global")
    np.testing.assert_array_equal(glob["0.weight"], [[0, 1], [1, 1]])  # 4 smallest: 0.1 0.2 0.3 1
    np.testing.assert_array_equal(glob["1.weight"], [[0, 0], [0, 1]])
    thr = prune.magnitude(_copy(model), threshold=2.5)
    np.testing.assert_array_equal(thr["0.weight"], [[0, 0], [1, 1]])
    np.testing.assert_array_equal(thr["1.weight"], [[0, 0], [0, 1]])
    counted = prune.magnitude(_copy(model), amount=3, scope="global")
    assert sum((~m).sum() for m in counted.values()) == 3


def test_global_structured_scores_are_normalised_by_group_size():
    model = nn.Sequential(nn.Linear(4, 2, bias=False), nn.Linear(2, 2, bias=False))
    model[0].weight.data[:] = [[1, 1, 1, 1], [3, 3, 3, 3]]  # row L1 4 and 12 -> mean 1 and 3
    model[1].weight.data[:] = [[2, 2], [4, 4]]              # row L1 4 and 8  -> mean 2 and 4
    masks = prune.magnitude(model, amount=2, scope="global", granularity="filter")
    np.testing.assert_array_equal(masks["0.weight"].any(axis=1), [False, True])
    np.testing.assert_array_equal(masks["1.weight"].any(axis=1), [False, True])


def _copy(model):
    out = nn.Sequential(*[nn.Linear(m.in_features, m.out_features, bias=m.bias is not None) for m in model])
    out.load_state_dict(model.state_dict())
    return out


@pytest.mark.parametrize("granularity,group_axes", [("element", ()), ("vector", (3,)), ("kernel", (2, 3)),
                                                    ("filter", (1, 2, 3))])
@given(amount=st.floats(0, 1), seed=st.integers(0, 1000), norm=st.sampled_from(["l1", "l2"]))
def test_granularity_zeroes_whole_groups_only(granularity, group_axes, amount, seed, norm):
    model = _convnet(seed)
    w0 = model[0].weight.data.copy()
    masks = prune.magnitude(model, amount=amount, granularity=granularity, norm=norm, params=["0.weight"])
    mask, w = masks["0.weight"], model[0].weight.data
    if group_axes:
        full = mask.all(axis=group_axes, keepdims=True)
        none = ~mask.any(axis=group_axes, keepdims=True)
        assert np.all(full | none)  # every group entirely kept or entirely pruned
    n_groups, size = prune.group_shape(w.shape, granularity)
    assert (~mask).sum() == round(amount * n_groups) * size
    np.testing.assert_array_equal(w[mask], w0[mask])  # nothing else touched
    assert np.all(w[~mask] == 0)
    kept = prune.group_scores(w0, granularity, norm)[mask.reshape(n_groups, size)[:, 0]]
    dropped = prune.group_scores(w0, granularity, norm)[~mask.reshape(n_groups, size)[:, 0]]
    if kept.size and dropped.size:
        assert dropped.max() <= kept.min()


def test_linear_granularities_and_filter_bias():
    layer = nn.Sequential(nn.Linear(3, 4, seed=0))
    assert prune.group_shape((4, 3), "kernel") == (12, 1)
    assert prune.group_shape((4, 3), "filter") == (4, 3)
    masks = prune.magnitude(layer, amount=0.5, granularity="filter")
    rows = masks["0.weight"].any(axis=1)
    assert rows.sum() == 2
    np.testing.assert_array_equal(layer[0].bias.effective().data == 0, ~rows)
    with pytest.raises(ValueError, match="granularity in"):
        prune.magnitude(layer, amount=0.5, granularity="channel")


def test_pruning_only_grows_unless_revived():
    model = _mlp()
    first = prune.magnitude(model, amount=0.5)
    second = prune.random(model, amount=0.7, seed=3)
    for n in first:
        assert np.all(~first[n] <= ~second[n])  # old zeros stay zero
    model = _mlp()
    prune.magnitude(model, amount=0.5)
    kept = prune.magnitude(model, amount=0.2)  # a smaller amount cannot shrink the pruned set...
    revived = prune.magnitude(model, amount=0.2, revive=True)  # ...unless the mask is recomputed
    assert set(revived) == {"0.weight", "2.weight"}
    for n in kept:
        assert (~kept[n]).sum() == round(0.5 * kept[n].size)
        assert (~revived[n]).sum() == round(0.2 * revived[n].size)


def test_revivable_mask_lets_weights_return():
    model = nn.Sequential(nn.Linear(2, 1, bias=False))
    model[0].weight.data[:] = [[1.0, 0.1]]
    prune.magnitude(model, amount=1, revive=True)
    assert model[0].weight.data[0, 1] == pytest.approx(0.1)  # latent value kept
    model[0].weight.data[0, 1] = 5.0  # the latent weight grew
    masks = prune.magnitude(model, amount=1, revive=True)
    np.testing.assert_array_equal(masks["0.weight"], [[False, True]])


def test_random_is_seeded_and_default_params_are_weights():
    a, b = prune.random(_convnet(), 0.5, seed=7), prune.random(_convnet(), 0.5, seed=7)
    assert set(a) == {"0.weight", "4.weight"}
    for n in a:
        np.testing.assert_array_equal(a[n], b[n])


def test_state_dict_round_trip_and_remove():
    model = _convnet()
    masks = prune.magnitude(model, amount=0.7, granularity="kernel")
    other = _convnet(seed=5)
    other.load_state_dict(model.state_dict())
    for n, m in prune.get_masks(other).items():
        np.testing.assert_array_equal(m, masks[n])
    x = Tensor(np.random.default_rng(0).random((2, 2, 4, 4), dtype=np.float32))
    np.testing.assert_allclose(other(x).data, model(x).data, rtol=1e-6)
    prune.remove(other)
    assert prune.get_masks(other) == {}
    np.testing.assert_allclose(other(x).data, model(x).data, rtol=1e-6)
    with pytest.raises(KeyError, match="unknown parameter"):
        prune.remove(other, "nope")


def test_counts_and_l0():
    model = nn.Sequential(nn.Linear(2, 2, bias=False))
    model[0].weight.data[:] = [[0.0, 1.0], [2.0, 0.0]]
    assert prune.count_zeros(model)["0.weight"] == {"zeros": 2, "nonzeros": 2, "total": 4, "sparsity": 0.5}
    assert prune.l0(model[0].weight) == 2 and prune.l0(2 * model[0].weight.data) == 2  # not homogeneous
    assert prune.sparsity(model) == 0.5


def test_bad_amounts_raise():
    with pytest.raises(ValueError, match="exactly one of amount and threshold"):
        prune.magnitude(_mlp())
    with pytest.raises(ValueError, match="fraction amount in \\[0, 1\\]"):
        prune.magnitude(_mlp(), amount=1.5)
    with pytest.raises(ValueError, match="scope"):
        prune.magnitude(_mlp(), amount=0.5, scope="model")
    with pytest.raises(ValueError, match="prune 99 groups of 30"):
        prune.magnitude(_mlp(), amount=99)
    with pytest.raises(ValueError, match="prune.magnitude: expected a fraction amount in \\[0, 1\\], got -0.1"):
        prune.magnitude(_mlp(), amount=-0.1)
    with pytest.raises(ValueError, match="prune.random: expected a non-negative count amount, got -1"):
        prune.random(_mlp(), amount=-1)
    with pytest.raises(ValueError, match="prune.magnitude: expected threshold to be a real number .* got nan"):
        prune.magnitude(_mlp(), threshold=float("nan"))
    with pytest.raises(ValueError, match="prune.random: expected granularity in .* got 'row'"):
        prune.random(_mlp(), amount=0.5, granularity="row")


def test_nan_weights_refused_by_magnitude_pruning():
    model = _mlp()
    model[2].weight.data[1, 2] = np.nan
    with pytest.raises(ValueError, match="prune.magnitude: parameter '2.weight': .*expected finite weights.*got 1 NaN"):
        prune.magnitude(model, amount=0.5)
    assert prune.get_masks(model) == {}


def test_corrupt_mask_state_is_refused():
    model = _mlp()
    prune.magnitude(model, amount=0.5)
    state = model.state_dict()
    key = next(k for k in state if k.endswith("PruneMask.mask"))
    state[key] = state[key] * 2
    with pytest.raises(ValueError, match="PruneMask.from_state: expected a mask of 0s and 1s, got dtype uint8"):
        _mlp().load_state_dict(state)
    with pytest.raises(ValueError, match="PruneMask.from_state: expected a 'mask' entry"):
        prune.PruneMask.from_state({"revivable": np.uint8(0)})
    with pytest.raises(ValueError, match="one keep flag per kernel group, shape \\(20,\\), got \\(3,\\)"):
        prune.expand_group_mask(np.ones(3, bool), (4, 5, 2, 2), "kernel")


def test_schedule_and_conversion_arguments_are_checked():
    with pytest.raises(ValueError, match="agp_sparsity: expected final_sparsity in \\[0, 1\\], got 1.5"):
        prune.agp_sparsity(3, 1.5, 0, 10)
    with pytest.raises(ValueError, match="agp_sparsity: expected final_sparsity in \\[0, 1\\], got nan"):
        prune.GradualPruning(float("nan"), 0, 10, frequency=5)
    with pytest.raises(ValueError, match="han_thresholds: expected a quality >= 0, got -1"):
        prune.han_thresholds(_mlp(), -1)
    with pytest.raises(ValueError, match="to_sparse: expected min_sparsity in \\[0, 1\\], got 2"):
        prune.to_sparse(_mlp(), min_sparsity=2)


def test_agp_schedule_matches_formula():
    si, sf, t0, n, dt = 0.1, 0.9, 10, 4, 5
    for t in range(t0, t0 + n * dt + 1):
        expected = sf + (si - sf) * (1 - (t - t0) / (n * dt)) ** 3
        assert prune.agp_sparsity(t, sf, t0, t0 + n * dt, si) == pytest.approx(expected)
    cb = prune.GradualPruning(0.8, start_step=2, end_step=10, frequency=4)
    model = _mlp()
    for step in range(1, 13):
        cb.on_step(model, step)
    assert [s for s, _ in cb.events] == [2, 6, 10]
    assert cb.sparsity_at(7) == pytest.approx(0.8 + (0 - 0.8) * (1 - 4 / 8) ** 3)
    assert cb.events[-1][1] == pytest.approx(0.8, abs=0.03)
    with pytest.raises(ValueError, match="multiple"):
        prune.GradualPruning(0.8, 0, 10, frequency=3)


def test_iterative_rounds_and_accuracy_floor():
    assert prune.round_sparsities(0.75, 2) == pytest.approx([0.5, 0.75])
    model = _mlp()
    accs = iter([0.9, 0.9, 0.9, 0.8, 0.5, 0.5])
    rec = prune.iterative(model, retrain=lambda m, k: None, evaluate=lambda m: next(accs), target=0.9, rounds=3,
                          acc_floor=0.7)
    assert [r["stopped"] for r in rec] == [None, None, "accuracy floor"]
    assert prune.sparsity(model) == pytest.approx(rec[1]["sparsity"])  # restored to round 2


def test_transfer_masks_to_fresh_model():
    src = _mlp()
    masks = prune.magnitude(src, amount=0.8)
    fresh = prune.transfer_masks(src, _mlp(seed=9))
    for n, p in fresh.named_parameters():
        if n in masks:
            assert np.all(p.data[~masks[n]] == 0) and np.any(p.data[masks[n]] != dict(src.named_parameters())[n].data[masks[n]])


def test_report_hand_built():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model[0].weight.data[:] = [[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 0]]
    model[0].bias.data[:] = 0
    model[2].weight.data[:] = [[1, 1, 0], [0, 0, 0]]
    model[2].bias.data[:] = [0, 1]
    x = np.array([[1, 1, 0, 0], [1, -1, 0, 0]], np.float32)  # hidden after ReLU: [1,0,0], [1,1,0]
    rep = prune.report(model, data=x, measure=False)
    l0, l1 = rep.rows
    assert (l0["weights"], l0["flops"], l0["nonzero_weights"]) == (12, 24, 2)
    assert l0["act_pct"] == pytest.approx(100 * 3 / 6)
    assert l0["weights_pct"] == pytest.approx(100 * 2 / 12) and l0["flops_pct"] == pytest.approx(100 * 2 / 12)
    assert l0["flops_act_pct"] == pytest.approx(100 * 2 / 12 * 4 / 8)
    assert l1["act_pct"] == 100.0  # logits [1, 1] and [2, 1]: the last layer's own output
    assert l1["flops_act_pct"] == pytest.approx(100 * 2 / 6 * 3 / 6)
    t = rep.totals
    assert (t["params"], t["nonzero_params"]) == (12 + 3 + 6 + 2, 2 + 2 + 1)
    assert t["compression_count"] == pytest.approx(23 / 5)
    # CSR would take 2*(4+4) + 4*8 = 48 B for layer 0 (dense: 48 B) and 2*8 + 3*8 = 40 B for layer 1
    # (dense: 24 B): neither is smaller, so both stay dense and the byte ratio is 1
    assert t["dense_bytes"] == t["sparse_bytes"] == 23 * 4
    assert t["theoretical_speedup"] == pytest.approx((24 + 12) / (4 + 4))
    assert "one multiply-add = 2 FLOPs" in str(rep)


def test_to_sparse_and_remove_filters_compute_the_same_function():
    model = _convnet(3)
    prune.magnitude(model, amount=0.5, granularity="filter", params=["0.weight"])
    prune.magnitude(model, amount=0.6, params=["4.weight"])
    x = np.random.default_rng(1).random((3, 2, 4, 4), dtype=np.float32)
    ref = model(Tensor(x)).data
    np.testing.assert_allclose(prune.to_sparse(model)(x).data, ref, rtol=1e-5, atol=1e-6)
    small = prune.remove_filters(model, (1, 2, 4, 4))
    assert small[0].out_channels == 2 and small[4].in_features == 2 * 4
    np.testing.assert_allclose(small(Tensor(x)).data, ref, rtol=1e-5, atol=1e-6)


def test_compress_command_quick_end_to_end(tmp_path):
    import argparse
    import json

    from tinyapprox.experiments import compress as experiment

    parser = argparse.ArgumentParser()
    experiment.add_arguments(parser)
    args = parser.parse_args(["--quick", "--out", str(tmp_path), "--repeats", "2"])
    assert experiment.run(args) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["compression_count"] == pytest.approx(12.0, rel=0.01)
    assert result["compression_bytes"] < result["compression_count"]  # indices cost bytes
    assert len(result["comparison"]["sparsity"]) == 2
    for name in ("report.png", "accuracy_vs_sparsity.png", "weight_histograms.png", "inference_time.png",
                 "pruned_lenet-300-100.npz"):
        assert (tmp_path / name).stat().st_size > 0
    with pytest.raises(ValueError, match="--target > 1"):
        experiment.run(parser.parse_args(["--quick", "--out", str(tmp_path), "--target", "0.5"]))
