"""The library pieces behind lecture 6 (costs and claims): FLOP conventions side by side,
Dally's table and the data-movement summary, the dense-to-pruned interpolation path, and
the dense MLP of a given size."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyapprox import cost, models, nn, prune, train
from tinyapprox import functional as F

pytestmark = pytest.mark.pruning


@st.composite
def small_nets(draw):
    """A small conv + fc net or an MLP, with a random input batch size and random masks."""
    seed = draw(st.integers(0, 2**16))
    if draw(st.booleans()):
        c, k = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        size = draw(st.integers(k, 7))
        out = size - k + 1
        net = nn.Sequential(nn.Conv2d(1, c, k, seed=seed), nn.ReLU(), nn.Flatten(),
                            nn.Linear(c * out * out, draw(st.integers(1, 4)), seed=seed))
        shape = (draw(st.integers(1, 3)), 1, size, size)
    else:
        hidden = draw(st.lists(st.integers(1, 6), max_size=2))
        d = draw(st.integers(1, 8))
        net = models.mlp(hidden, seed=seed, num_classes=draw(st.integers(1, 4)), in_features=d)
        shape = (draw(st.integers(1, 3)), d)
    amount = draw(st.floats(0.0, 1.0))
    if amount > 0:
        prune.random(net, amount=amount, seed=seed)
    return net, shape


@given(small_nets())
def test_flop_counts_relations(case):
    net, shape = case
    c = cost.flop_counts(net, shape)
    rows = cost.layer_costs(net, shape)
    assert set(c) == set(cost.FLOP_CONVENTIONS)
    assert c["flops"] == 2 * c["macs"]
    assert 0 <= c["conv_flops"] <= c["flops"] and 0 <= c["nonzero_flops"] <= c["flops"]
    assert c["all_ops"] >= c["flops"]
    assert c["nonzero_flops"] == 2 * sum(r["nonzero_weights"] * r["macs"] // max(r["weights"], 1) for r in rows)
    if not any(isinstance(m, nn.Conv2d) for m in net.modules()):
        assert c["conv_flops"] == 0


@given(small_nets(), st.integers(2, 4))
def test_flop_counts_scale_with_the_batch(case, k):
    net, shape = case
    one, many = cost.flop_counts(net, (1,) + shape[1:]), cost.flop_counts(net, (k,) + shape[1:])
    assert all(many[key] == k * one[key] for key in one)


def test_flop_counts_of_lenet5_by_hand():
    c = cost.flop_counts(models.lenet5(), (1, 1, 28, 28))
    conv = 20 * 25 * 24 * 24 + 50 * 20 * 25 * 8 * 8
    assert c["conv_flops"] == 2 * conv
    assert c["macs"] == conv + 800 * 500 + 500 * 10
    text = cost.format_flop_counts(c, "LeNet-5")
    assert all(key in text for key in cost.FLOP_CONVENTIONS)


def test_flop_counts_refuses_no_input():
    with pytest.raises(ValueError, match="input_shape"):
        cost.flop_counts(models.lenet5())


def test_horowitz_table_agrees_with_the_energy_table():
    for key, (label, pj, area) in cost.HOROWITZ_45NM.items():
        assert cost.ENERGY_PJ_45NM[key] == pj
        assert area is None or area > 0
        assert isinstance(label, str) and label
    # the memory rows have no area; arithmetic rows all do
    assert cost.HOROWITZ_45NM["dram32"][2] is None and cost.HOROWITZ_45NM["float32_mult"][2] is not None
    text = cost.format_horowitz_table()
    assert all(label in text for label, _, _ in cost.HOROWITZ_45NM.values()) and "Horowitz" in text


def test_horowitz_table_orders_as_the_lecture_says():
    e = {k: v[1] for k, v in cost.HOROWITZ_45NM.items()}
    a = {k: v[2] for k, v in cost.HOROWITZ_45NM.items()}
    for bits in ("8", "32"):
        assert e[f"int{bits}_add"] < e[f"int{bits}_mult"] and a[f"int{bits}_add"] < a[f"int{bits}_mult"]
    assert e["int32_mult"] < e["float32_mult"] and a["int32_add"] < a["float32_add"]
    assert e["dram32"] > 100 * e["sram32"]  # DRAM two orders of magnitude above SRAM


@given(small_nets(), st.integers(1, 3), st.booleans())
def test_data_movement_prices_bytes_and_macs(case, k, sparse):
    net, shape = case
    shape = (k,) + shape[1:]
    d = cost.data_movement(net, shape, sparse=sparse)
    nbytes = cost.model_bytes(net, sparse=sparse)
    rows = cost.layer_costs(net, shape)
    macs = sum(r["nonzero_macs"] if sparse else r["macs"] for r in rows)
    assert d["weight_bytes"] == nbytes and d["macs"] == macs
    np.testing.assert_allclose(d["dram_pj"], cost.ENERGY_PJ_45NM["dram32"] * nbytes / 4)
    np.testing.assert_allclose(d["sram_pj"], cost.ENERGY_PJ_45NM["sram32"] * nbytes / 4)
    per_mac = cost.ENERGY_PJ_45NM["float32_mult"] + cost.ENERGY_PJ_45NM["float32_add"]
    np.testing.assert_allclose(d["mac_pj"], per_mac * macs)
    if macs:
        np.testing.assert_allclose(d["dram_over_mac"], d["dram_pj"] / d["mac_pj"])


@given(small_nets())
def test_data_movement_weights_are_fetched_once_per_batch(case):
    net, shape = case
    one, four = cost.data_movement(net, (1,) + shape[1:]), cost.data_movement(net, (4,) + shape[1:])
    assert four["dram_pj"] == one["dram_pj"] and four["macs"] == 4 * one["macs"]


def test_data_movement_conv_reuses_weights_more_than_fc():
    fc = cost.data_movement(models.lenet_300_100(), (1, 1, 28, 28))
    conv = cost.data_movement(models.lenet5(), (1, 1, 28, 28))
    assert fc["macs_per_param"] < 1 < conv["macs_per_param"]
    assert conv["dram_over_mac"] < fc["dram_over_mac"]


def test_data_movement_refuses_bad_bits():
    with pytest.raises(ValueError, match="weight_bits"):
        cost.data_movement(models.lenet_300_100(), (1, 784), weight_bits=0)


# ------------------------------------------------------------------ interpolation path
def _toy_data(seed=0, n=64):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


@given(st.floats(0.0, 1.0), st.integers(2, 6), st.integers(0, 100))
def test_interpolation_path_endpoints_and_distance(amount, steps, seed):
    x, y = _toy_data(seed)
    dense = models.mlp((12,), seed=seed)
    pruned = models.mlp((12,), seed=seed).load_state_dict(dense.state_dict())
    prune.magnitude(pruned, amount=amount)
    path = prune.interpolation_path(dense, pruned, x, y, steps=steps)
    start, end = train.evaluate(dense, x, y), train.evaluate(pruned, x, y)
    np.testing.assert_allclose(path["alpha"], np.linspace(0, 1, steps))
    np.testing.assert_allclose(path["loss"][[0, -1]], [start["loss"], end["loss"]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(path["top1"][[0, -1]], [start["top1"], end["top1"]])
    # the pruned weights differ from the dense ones exactly in the removed entries
    removed = np.sqrt(sum(float(np.sum((p.data.astype(np.float64) * (1 - m)) ** 2))
                          for p, m in ((dict(dense.named_parameters())[n], mask)
                                       for n, mask in prune.get_masks(pruned).items())))
    np.testing.assert_allclose(path["total_distance"], removed, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(path["distance"], path["alpha"] * path["total_distance"])
    assert 0 <= path["relative_distance"] <= 1 + 1e-9  # pruning only removes entries
    # the dense model is left as it was
    np.testing.assert_allclose(train.evaluate(dense, x, y)["loss"], start["loss"])


def test_interpolation_path_between_identical_models_is_flat():
    x, y = _toy_data()
    a = models.mlp((8,), seed=1)
    path = prune.interpolation_path(a, a, x, y, steps=3)
    assert path["total_distance"] == 0
    np.testing.assert_allclose(path["loss"], path["loss"][0], rtol=1e-6)


def test_interpolation_path_uses_the_given_loss():
    x, y = _toy_data()
    a, b = models.mlp((8,), seed=1), models.mlp((8,), seed=2)
    path = prune.interpolation_path(a, b, x, y, loss_fn=lambda z, t: F.sum(z * 0.0), steps=2)
    np.testing.assert_allclose(path["loss"], 0.0)


def test_interpolation_path_refuses_bad_input():
    x, y = _toy_data()
    with pytest.raises(ValueError, match="interpolation_path.*same parameters"):
        prune.interpolation_path(models.mlp((8,)), models.mlp((9,)), x, y)
    with pytest.raises(ValueError, match="interpolation_path.*steps"):
        prune.interpolation_path(models.mlp((8,)), models.mlp((8,)), x, y, steps=1)


# ------------------------------------------------------------------ dense MLPs of a given size
@given(st.integers(0, 1_500_000), st.integers(1, 4))
def test_mlp_of_size_is_the_closest(n, ratio):
    smallest = models.mlp_param_count((ratio, 1))
    if n < smallest:
        with pytest.raises(ValueError, match="mlp_of_size"):
            models.mlp_of_size(n, ratio=ratio)
        return
    net = models.mlp_of_size(n, ratio=ratio)
    h = net[3].weight.shape[0]
    assert net[1].weight.shape[0] == ratio * h
    got = sum(p.size for p in net.parameters())
    assert got == models.mlp_param_count((ratio * h, h))
    neighbours = [models.mlp_param_count((ratio * g, g)) for g in (h - 1, h + 1) if g >= 1]
    assert all(abs(got - n) <= abs(m - n) for m in neighbours)


def test_mlp_is_lenet_300_100_with_its_widths():
    a, b = models.mlp((300, 100), seed=3), models.lenet_300_100(seed=3)
    assert models.mlp_param_count((300, 100)) == 266_610
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and np.array_equal(pa.data, pb.data)
    assert sum(p.size for p in models.mlp_of_size(266_610).parameters()) == 266_610


def test_mlp_refuses_bad_widths():
    with pytest.raises(ValueError, match="models.mlp"):
        models.mlp((10, 0))
    with pytest.raises(ValueError, match="ratio"):
        models.mlp_of_size(10_000, ratio=0)
