"""Cost model: op counts per layer type, bytes, and the energy table arithmetic."""
import numpy as np
import pytest

from tinyapprox import cost, nn

pytestmark = pytest.mark.pruning


def _net():
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, seed=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(2 * 2 * 2, 3, seed=0))


def test_layer_costs_hand_computed():
    rows = cost.layer_costs(_net(), (5, 1, 4, 4))
    conv, relu, pool, flat, fc = rows
    assert [r["name"] for r in rows] == ["0", "1", "2", "3", "4"]
    # conv: 2 filters of 1x3x3 at 4x4 positions, 5 images
    assert conv["macs"] == 5 * 1 * 3 * 3 * 2 * 4 * 4
    assert conv["flops"] == 2 * conv["macs"]
    assert conv["output_shape"] == (5, 2, 4, 4) and conv["params"] == 2 * 9 + 2
    assert relu["macs"] == 0 and relu["other_ops"] == 5 * 2 * 16
    assert pool["other_ops"] == 5 * 2 * 2 * 2 * 4
    assert flat["other_ops"] == 0
    assert fc["macs"] == 5 * 8 * 3 and fc["kind"] == "linear" and fc["weights"] == 24


def test_nonzero_counts_follow_effective_weight():
    net = _net()
    fc = net[4]
    fc.weight.data[:] = 0
    fc.weight.data[0, :3] = 1.0
    conv = net[0]
    conv.weight.data[1] = 0
    rows = cost.layer_costs(net, (1, 1, 4, 4))
    assert rows[4]["nonzero_macs"] == 3 and rows[4]["nonzero_flops"] == 6
    assert rows[0]["nonzero_macs"] == 9 * 16
    assert rows[4]["nonzero_weights"] == 3


def test_model_bytes_dense_and_csr():
    net = nn.Sequential(nn.Linear(10, 4, seed=0))
    assert cost.model_bytes(net) == (40 + 4) * 4
    net[0].weight.data[:] = 0
    net[0].weight.data[0, 0] = 1.0
    # CSR: 1 value + 1 int32 index + 5 int64 row pointers; bias dense
    assert cost.model_bytes(net, sparse="auto") == 4 + 4 + 5 * 8 + 16
    assert cost.model_bytes(net, sparse=True) == 4 + 4 + 5 * 8 + 16
    assert cost.model_bytes(net, weight_bits=8) == 40 + 16
    with pytest.raises(ValueError, match="param_bytes: expected sparse"):
        cost.model_bytes(net, sparse="yes")


def test_energy_table_and_custom_ops():
    t = cost.ENERGY_PJ_45NM
    assert (t["int32_add"], t["float32_add"], t["reg32"], t["int32_mult"], t["float32_mult"], t["sram32"],
            t["dram32"]) == (0.1, 0.9, 1.0, 3.1, 3.7, 5.0, 640.0)
    assert (t["int8_add"], t["int8_mult"], t["float16_add"], t["float16_mult"]) == (0.03, 0.2, 0.4, 1.1)
    assert "Horowitz" in cost.ENERGY_SOURCE
    rep = cost.energy({"float32_mult": 10, "dram32": 2})
    assert rep.total_pj == pytest.approx(37 + 1280)
    assert rep.breakdown_pj["dram32"] == pytest.approx(1280)
    rep = cost.energy({"xnor1": 100}, energies={"xnor1": 0.01})
    assert rep.total_pj == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no energy known for \\['xnor1'\\]"):
        cost.energy({"xnor1": 1})


def test_inference_energy_hand_computed():
    net = nn.Sequential(nn.Linear(4, 2, seed=0))
    rep = cost.inference_energy(net, (1, 4))
    # 8 MACs: 8 float mults + 8 float adds; 10 params from DRAM; 4 + 2 activations in SRAM
    expected = 8 * 3.7 + 8 * 0.9 + 10 * 640 + 6 * 5
    assert rep.total_pj == pytest.approx(expected)
    assert "assumptions" in str(rep)
    rep8 = cost.inference_energy(net, (1, 4), weight_bits=8, act_bits=8, arithmetic="int")
    expected8 = 8 * 0.2 + 8 * 0.1 + (8 * 8 / 32 + 2) * 640 + 6 * 8 / 32 * 5
    assert rep8.total_pj == pytest.approx(expected8)
    net[0].weight.data[0] = 0  # prune a row: 4 MACs, 4 kept weights with 32-bit indices
    rep_sp = cost.inference_energy(net, (1, 4))
    assert rep_sp.total_pj == pytest.approx(4 * 3.7 + 4 * 0.9 + (4 * 2 + 2) * 640 + 6 * 5)
    with pytest.raises(ValueError, match="memories"):
        cost.inference_energy(net, (1, 4), weight_memory="tape")


def test_bad_bit_widths_and_counts_raise():
    net = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ValueError, match="param_bytes: expected weight_bits to be an int >= 1, got 0"):
        cost.model_bytes(net, weight_bits=0)
    with pytest.raises(ValueError, match="param_bytes: expected index_bits to be an int >= 1, got -1"):
        cost.param_bytes(net, sparse=True, index_bits=-1)
    with pytest.raises(ValueError, match="inference_energy: expected act_bits to be an int >= 1, got 2.5"):
        cost.inference_energy(net, (1, 4), act_bits=2.5)
    with pytest.raises(ValueError, match="energy: expected non-negative counts \\(not NaN\\)"):
        cost.energy({"float32_add": float("nan")})


def test_weight_layers_are_decided_in_one_place():
    from tinyapprox import prune
    from tinyapprox.quant import pipeline

    class Scale(nn.Module):                      # a 1-D "weight": a scale, not a weight layer
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(np.ones(4, np.float32))

        def forward(self, x):
            return x * self.weight.effective()

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 4), Scale())
    names = [n for n, _ in nn.weight_layers(model)]
    assert names == ["0", "3"] and [nn.is_weight_layer(m) for m in model] == [True, False, False, True, False]
    assert list(prune.prunable(model)) == ["0.weight", "3.weight"]
    assert [n for n, _ in pipeline.weight_layers(model)] == names
    table = cost.param_bytes(model, weight_bits=8, sparse=False)
    assert table["3.weight"]["bytes"] == 32 and table["4.weight"]["bytes"] == 16   # 8-bit weights, 32-bit scale
