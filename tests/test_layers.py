"""Layers and initializers: gradients, modes, shapes, seeds, and the effective-weight contract."""
import math

import numpy as np
import pytest

import tinyapprox as ta
from tinyapprox import nn
from tinyapprox.nn import init
from tinyapprox.nn.module import ParamTransform
from tinyapprox.testing import gradcheck

pytestmark = pytest.mark.training


class _Substitute(ParamTransform):
    """Replace a parameter's value by a given tensor, so gradcheck can drive layer weights."""

    value = None

    def __call__(self, w):
        return self.value


class _ZeroOut(ParamTransform):
    def __call__(self, w):
        return w * 0.0


def _check_layer(layer, x, name):
    """Gradcheck the layer in float64 with respect to its input and every parameter."""
    params = list(layer._parameters.items())
    subs = []
    for _, p in params:
        t = _Substitute()
        p.add_transform(t)
        subs.append(t)

    def fn(x, *values):
        for t, v in zip(subs, values):
            t.value = v
        return layer(x)

    gradcheck(fn, [x] + [p.data.astype(np.float64) for _, p in params], name=name)


RNG = np.random.default_rng(0)


def test_linear_gradcheck():
    _check_layer(nn.Linear(4, 3, seed=0), RNG.standard_normal((5, 4)), "Linear")
    _check_layer(nn.Linear(4, 3, bias=False, seed=0), RNG.standard_normal((2, 3, 4)), "Linear(no bias, 3-D input)")


@pytest.mark.parametrize("impl", ["im2col", "loop6d"])
def test_conv2d_layer_gradcheck(impl):
    layer = nn.Conv2d(2, 3, (2, 3), stride=(2, 1), padding=1, impl=impl, seed=1)
    _check_layer(layer, RNG.standard_normal((2, 2, 5, 4)), f"Conv2d[{impl}]")


@pytest.mark.parametrize("layer", [nn.MaxPool2d(2), nn.MaxPool2d(3, stride=1, padding=1), nn.AvgPool2d(2, 1),
                                   nn.Flatten(), nn.Flatten(0, 2), nn.ReLU(), nn.Sigmoid(), nn.Tanh(),
                                   nn.Hardtanh(-0.5, 0.7)], ids=repr)
def test_parameter_free_layers_gradcheck(layer):
    x = RNG.standard_normal((2, 3, 4, 5))
    x[np.abs(x) < 0.02] = 0.5            # keep away from the kinks of ReLU
    x[np.abs(np.abs(x) - 0.5) < 0.02] = 0.3
    x[np.abs(x - 0.7) < 0.02] = 0.3
    _check_layer(layer, x, repr(layer))


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradcheck(training):
    bn1 = nn.BatchNorm1d(3).train(training)
    bn1.running_mean[:] = [0.1, -0.2, 0.3]
    bn1.running_var[:] = [0.5, 1.5, 2.0]
    bn1.momentum = 0.0                    # gradcheck calls forward many times; keep the stats fixed
    bn1.gamma.data[:] = [1.5, -0.5, 2.0]
    _check_layer(bn1, RNG.standard_normal((6, 3)), "BatchNorm1d")
    bn2 = nn.BatchNorm2d(2, momentum=0.0).train(training)
    _check_layer(bn2, RNG.standard_normal((3, 2, 3, 2)), "BatchNorm2d")


def test_dropout_gradcheck_with_a_fixed_mask():
    gradcheck(lambda x: nn.Dropout(0.4, seed=7)(x), [RNG.standard_normal((4, 6))], name="Dropout")


# ------------------------------------------------------------------ behaviour
def test_layers_read_weights_through_effective():
    lin = nn.Linear(3, 2, seed=0)
    lin.weight.add_transform(_ZeroOut())
    out = lin(ta.tensor(np.ones((4, 3), dtype=np.float32)))
    np.testing.assert_array_equal(out.data, np.broadcast_to(lin.bias.data, (4, 2)))
    conv = nn.Conv2d(1, 2, 3, seed=0)
    conv.weight.add_transform(_ZeroOut())
    out = conv(ta.tensor(np.ones((1, 1, 4, 4), dtype=np.float32)))
    np.testing.assert_array_equal(out.data, np.broadcast_to(conv.bias.data[None, :, None, None], (1, 2, 2, 2)))


def test_linear_matches_the_lecture_formula():
    lin = nn.Linear(3, 2, seed=0)
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(lin(ta.tensor(x)).data, x @ lin.weight.data.T + lin.bias.data, rtol=1e-6)
    assert lin.weight.shape == (2, 3)


def test_conv_layer_matches_functional():
    layer = nn.Conv2d(2, 4, 3, stride=2, padding=1, seed=3)
    x = RNG.standard_normal((2, 2, 7, 6)).astype(np.float32)
    expected = ta.conv.conv2d(x, layer.weight.data, layer.bias.data, stride=2, padding=1).data
    out = layer(ta.tensor(x))
    assert out.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(out.data, expected)


def test_batchnorm_running_statistics_and_eval():
    bn = nn.BatchNorm1d(2, momentum=0.1)
    x = np.array([[1.0, 10.0], [3.0, 20.0], [5.0, 60.0]], dtype=np.float32)
    y = bn(ta.tensor(x)).data
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(y.var(axis=0), 1, rtol=1e-3)              # biased variance in training
    np.testing.assert_allclose(bn.running_mean, 0.1 * np.array([3.0, 30.0]), rtol=1e-6)
    unbiased = x.var(axis=0, ddof=1)                                      # [4, 700]
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * unbiased, rtol=1e-6)

    bn.eval()
    one = np.array([[2.0, 7.0]], dtype=np.float32)
    expected = (one - bn.running_mean) / np.sqrt(bn.running_var + bn.eps)
    np.testing.assert_allclose(bn(ta.tensor(one)).data, expected, rtol=1e-5)
    before = bn.running_mean.copy()
    both = bn(ta.tensor(np.concatenate([one, x]))).data
    np.testing.assert_allclose(both[:1], expected, rtol=1e-5)              # independent of the batch
    np.testing.assert_array_equal(bn.running_mean, before)                 # eval does not update


def test_batchnorm2d_normalises_per_channel_and_saves_buffers():
    bn = nn.BatchNorm2d(3)
    x = RNG.standard_normal((4, 3, 5, 5)).astype(np.float32) * np.array([1, 5, 20], np.float32)[:, None, None] + 7
    y = bn(ta.tensor(x)).data
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1, rtol=1e-3)
    state = bn.state_dict()
    assert set(state) == {"gamma", "beta", "running_mean", "running_var"}
    fresh = nn.BatchNorm2d(3).load_state_dict(state)
    np.testing.assert_array_equal(fresh.running_var, bn.running_var)


def test_reassigned_buffer_is_saved_and_a_parameter_can_replace_it():
    bn = nn.BatchNorm1d(2)
    bn.running_mean = np.array([3.0, -1.0], np.float32)
    state = bn.state_dict()
    np.testing.assert_array_equal(state["running_mean"], [3.0, -1.0])
    np.testing.assert_array_equal(nn.BatchNorm1d(2).load_state_dict(state).running_mean, [3.0, -1.0])
    bn.running_mean = nn.Parameter(np.zeros(2))
    assert "running_mean" in dict(bn.named_parameters()) and "running_mean" not in bn._buffers


def test_dropout_determinism_and_eval():
    x = ta.tensor(np.ones((50, 40), dtype=np.float32))
    a, b = nn.Dropout(0.3, seed=5), nn.Dropout(0.3, seed=5)
    first, second = a(x).data, a(x).data
    np.testing.assert_array_equal(first, b(x).data)
    np.testing.assert_array_equal(second, b(x).data)
    assert not np.array_equal(first, second)                     # a new mask each call
    assert set(np.unique(first)) == {0.0, np.float32(1 / 0.7)}
    assert abs((first == 0).mean() - 0.3) < 0.05
    assert a.eval()(x).data is x.data                            # identity in eval


def test_default_init_bounds_and_seeds():
    lin = nn.Linear(100, 50, seed=0)
    bound = 1 / math.sqrt(100)
    assert lin.weight.dtype == np.float32 and np.abs(lin.weight.data).max() <= bound
    assert np.abs(lin.weight.data).max() > 0.9 * bound
    assert np.abs(lin.bias.data).max() <= bound
    np.testing.assert_array_equal(lin.weight.data, nn.Linear(100, 50, seed=0).weight.data)
    assert not np.array_equal(lin.weight.data, nn.Linear(100, 50, seed=1).weight.data)
    conv = nn.Conv2d(4, 8, 3, seed=np.random.default_rng(0))
    assert np.abs(conv.weight.data).max() <= 1 / math.sqrt(4 * 9)


def test_extra_repr():
    assert repr(nn.Linear(3, 2, bias=False, seed=0)) == "Linear(in_features=3, out_features=2, bias=False)"
    assert repr(nn.Conv2d(1, 20, 5, seed=0)) == "Conv2d(1, 20, kernel_size=(5, 5), stride=(1, 1))"
    assert repr(nn.Conv2d(1, 2, 3, padding=1, impl="loop6d", seed=0)) == \
        "Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), impl='loop6d')"
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=(2, 2), stride=(2, 2))"
    assert repr(nn.BatchNorm1d(4)) == "BatchNorm1d(4, eps=1e-05, momentum=0.1)"
    assert repr(nn.Dropout(0.25, seed=0)) == "Dropout(p=0.25)"
    assert repr(nn.Hardtanh()) == "Hardtanh(min=-1.0, max=1.0)"
    assert repr(nn.Flatten()) == "Flatten(start_dim=1, end_dim=-1)"


@pytest.mark.parametrize("layer,x_shape,match", [
    (nn.Linear(4, 3, seed=0), (2, 5), r"Linear\(4, 3\): expected input of shape \(\.\.\., 4\), got \(2, 5\)"),
    (nn.Conv2d(3, 2, 3, seed=0), (1, 1, 5, 5),
     r"Conv2d\(3, 2\): expected input of shape \(N, 3, H, W\), got \(1, 1, 5, 5\)"),
    (nn.Conv2d(3, 2, 3, seed=0), (3, 5, 5), r"Conv2d\(3, 2\): expected input of shape \(N, 3, H, W\), got \(3, 5, 5\)"),
    (nn.MaxPool2d(2), (4, 4), r"MaxPool2d: expected input of shape \(N, C, H, W\), got \(4, 4\)"),
    (nn.BatchNorm1d(3), (4, 2), r"BatchNorm1d\(3\): expected input of shape \(N, 3\) or \(N, 3, \*\), got \(4, 2\)"),
    (nn.BatchNorm2d(3), (4, 3), r"BatchNorm2d\(3\): expected input of shape \(N, 3, \*, \*\), got \(4, 3\)"),
    (nn.Flatten(2), (4, 3), r"Flatten: dims \(2, -1\) out of range for input shape \(4, 3\)"),
])
def test_layers_reject_bad_input_shapes(layer, x_shape, match):
    with pytest.raises(ValueError, match=match):
        layer(ta.tensor(np.zeros(x_shape, dtype=np.float32)))


@pytest.mark.parametrize("make,match", [
    (lambda: nn.Linear(0, 3), r"Linear: in_features must be a positive int, got 0"),
    (lambda: nn.Conv2d(1, 2, 3, stride=0), r"Conv2d: stride must be >= 1, got 0"),
    (lambda: nn.Conv2d(1, 2, 3, impl="winograd"), r"Conv2d: impl must be one of"),
    (lambda: nn.MaxPool2d(2, padding=2), r"MaxPool2d: padding must be at most half"),
    (lambda: nn.BatchNorm1d(2, eps=0), r"BatchNorm1d: eps must be > 0"),
    (lambda: nn.Dropout(1.0), r"Dropout: expected 0 <= p < 1, got 1.0"),
    (lambda: nn.Hardtanh(1, -1), r"Hardtanh: expected min <= max"),
])
def test_layer_constructors_validate(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_small_convnet_trains_one_step():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, seed=0), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Dropout(0.1, seed=0), nn.Linear(4 * 4 * 4, 3, seed=1))
    x = ta.tensor(RNG.standard_normal((6, 1, 8, 8)).astype(np.float32))
    out = model(x)
    assert out.shape == (6, 3) and out.dtype == np.float32
    out.sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


# ------------------------------------------------------------------ initializers
@pytest.mark.parametrize("shape,expected", [((5,), (5, 5)), ((3, 7), (7, 3)), ((20, 6, 5, 5), (150, 500))])
def test_fans(shape, expected):
    assert init.fans(shape) == expected


def test_initializer_scales_and_dtype():
    shape = (400, 300)
    for fn, std in [(init.kaiming_uniform, math.sqrt(2 / 300)), (init.kaiming_normal, math.sqrt(2 / 300)),
                    (init.xavier_uniform, math.sqrt(2 / 700)), (init.xavier_normal, math.sqrt(2 / 700))]:
        w = fn(shape, rng=0)
        assert w.dtype == np.float32 and w.shape == shape
        assert abs(w.std() / std - 1) < 0.02, fn.__name__
        np.testing.assert_array_equal(w, fn(shape, rng=np.random.default_rng(0)))
    assert np.abs(init.kaiming_uniform(shape, rng=0)).max() <= math.sqrt(2) * math.sqrt(3 / 300)
    assert np.abs(init.xavier_uniform(shape, rng=0)).max() <= math.sqrt(6 / 700)
    assert np.abs(init.kaiming_uniform((8, 3, 5, 5), fan_in=10, gain=1, rng=1)).max() <= math.sqrt(3 / 10)
    u = init.uniform((1000,), 2.0, 3.0, rng=3)
    assert u.min() >= 2.0 and u.max() <= 3.0
    assert init.zeros((2, 3)).dtype == np.float32 and init.ones(4).sum() == 4


def test_as_rng_and_initializer_errors():
    g = np.random.default_rng(0)
    assert init.as_rng(g) is g
    assert init.as_rng(3).random() == np.random.default_rng(3).random()
    with pytest.raises(TypeError, match="as_rng: expected an int seed"):
        init.as_rng(1.5)
    with pytest.raises(ValueError, match="as_rng: expected a seed >= 0, got -1"):
        init.as_rng(-1)
    with pytest.raises(ValueError, match=r"fans: expected a weight shape with at least one dimension"):
        init.fans(())
    with pytest.raises(ValueError, match="uniform: expected low <= high"):
        init.uniform((3,), 1.0, 0.0, rng=0)
    with pytest.raises(ValueError, match="kaiming_uniform: fan_in must be positive"):
        init.kaiming_uniform((3, 0), rng=0)


# ------------------------------------------------------------------ the transform chain
class _Mask(ParamTransform):
    order = ParamTransform.MASK

    def __call__(self, w):
        return w * 0.5


class _Quant(ParamTransform):
    def __call__(self, w):
        return w + 1.0


def test_add_transform_keeps_masks_before_quantizers():
    p = nn.Parameter(np.array([2.0, -4.0], np.float32))
    q1, m, q2 = _Quant(), _Mask(), _Quant()
    p.add_transform(q1).add_transform(m).add_transform(q2)
    assert p.transforms == (m, q1, q2)
    np.testing.assert_array_equal(p.effective().data, [3.0, 0.0])          # (w * 0.5) + 1 + 1
    assert p.remove_transform(q1) == [q1] and p.transforms == (m, q2)
    assert p.remove_transform(_Quant) == [q2] and p.transforms == (m,)
    assert p.remove_transform(_Quant) == []


def test_transform_chain_is_changed_only_through_parameter_methods():
    p = nn.Parameter(np.ones(3, np.float32)).add_transform(_Quant())
    with pytest.raises(AttributeError):
        p.transforms.append(_Mask())
    with pytest.raises(ValueError, match=r"Parameter.transforms: _Mask \(order 0\) cannot follow _Quant \(order 10\)"):
        p.transforms = [_Quant(), _Mask()]
    with pytest.raises(TypeError, match="add_transform: expected a ParamTransform, got function"):
        p.add_transform(lambda w: w)
    p.transforms = [_Mask(), _Quant()]
    assert [type(t) for t in p.transforms] == [_Mask, _Quant]


def test_transform_order_must_be_an_int():
    with pytest.raises(TypeError, match="ParamTransform subclass _Bad: order must be an int"):
        class _Bad(ParamTransform):
            order = "first"


def test_load_state_dict_refuses_a_chain_out_of_order():
    from tinyapprox import prune, quant

    lin = nn.Linear(3, 2, seed=0)
    prune.apply_mask(lin.weight, np.ones((2, 3)))
    lin.weight.add_transform(quant.WeightQuant("int8", 8))
    state = lin.state_dict()
    swapped = {k.replace("transform0", "transformX").replace("transform1", "transform0").replace("transformX", "transform1"): v
               for k, v in state.items()}
    with pytest.raises(ValueError, match="load_state_dict: weight: Parameter.transforms: PruneMask"):
        nn.Linear(3, 2, seed=1).load_state_dict(swapped)
    assert [type(t).__name__ for t in nn.Linear(3, 2).load_state_dict(state).weight.transforms] == \
        ["PruneMask", "WeightQuant"]


def test_transforms_follow_the_module_mode():
    lin = nn.Linear(3, 2, seed=0)
    first = _Quant()
    lin.weight.add_transform(first)
    seq = nn.Sequential(lin).eval()
    late = _Mask()
    lin.weight.add_transform(late)
    assert first.training is False and late.training is False
    seq.train()
    assert first.training and late.training
    assert lin.weight.find_transform(_Mask) is late
