"""Optimizers and schedules: hand-computed steps, hooks, validation, bit-exact resume."""
import math

import numpy as np
import pytest

import tinyapprox as ta
from tinyapprox import functional as F
from tinyapprox import nn, optim
from tinyapprox.nn.module import ParamTransform

pytestmark = pytest.mark.training


def _param(values, grad=None):
    p = nn.Parameter(np.array(values, dtype=np.float64))
    p.grad = None if grad is None else np.array(grad, dtype=np.float64)
    return p


def test_sgd_plain_step_and_weight_decay():
    p = _param([1.0, 2.0], [0.5, -1.0])
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [0.95, 2.1], rtol=1e-15)
    q = _param([1.0, 2.0], [0.5, -1.0])
    optim.SGD([q], lr=0.1, weight_decay=0.5).step()       # d = g + 0.5 p = [1.0, 0.0]
    np.testing.assert_allclose(q.data, [0.9, 2.0], rtol=1e-15)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_two_steps(nesterov):
    lr, mu = 0.1, 0.9
    g1, g2 = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    p = _param([0.0, 0.0])
    opt = optim.SGD([p], lr=lr, momentum=mu, nesterov=nesterov)
    p.grad = g1.copy()
    opt.step()
    p.grad = g2.copy()
    opt.step()
    buf1, buf2 = g1, mu * g1 + g2
    if nesterov:
        expected = -lr * (g1 + mu * buf1) - lr * (g2 + mu * buf2)
    else:
        expected = -lr * buf1 - lr * buf2
    np.testing.assert_allclose(p.data, expected, rtol=1e-14)
    np.testing.assert_allclose(opt.state[0]["momentum_buffer"], buf2, rtol=1e-15)


def test_sgd_on_float32_stays_float32_and_in_place():
    p = nn.Parameter(np.ones(3, dtype=np.float32))
    data = p.data
    p.grad = np.full(3, 2.0, dtype=np.float32)
    optim.SGD([p], lr=0.25, momentum=0.5).step()
    assert p.data is data and p.data.dtype == np.float32
    np.testing.assert_array_equal(p.data, [0.5, 0.5, 0.5])


def test_adam_first_step_is_lr_times_sign_and_second_matches_formula():
    lr, (b1, b2), eps = 0.01, (0.9, 0.999), 1e-8
    g1, g2 = np.array([3.0, -0.002, 0.5]), np.array([1.0, 1.0, -0.5])
    p = _param([1.0, 1.0, 1.0], g1)
    opt = optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps)
    opt.step()
    np.testing.assert_allclose(p.data, 1.0 - lr * np.sign(g1), rtol=1e-7)
    p.grad = g2.copy()
    opt.step()
    m = b1 * (1 - b1) * g1 + (1 - b1) * g2
    v = b2 * (1 - b2) * g1 ** 2 + (1 - b2) * g2 ** 2
    step2 = lr * (m / (1 - b1 ** 2)) / (np.sqrt(v / (1 - b2 ** 2)) + eps)
    first = 1.0 - lr * g1 / (np.abs(g1) + eps)
    np.testing.assert_allclose(p.data, first - step2, rtol=1e-12)
    assert opt.state[0]["step"] == 2


def test_adam_weight_decay_enters_the_gradient():
    p = _param([2.0], [0.0])
    optim.Adam([p], lr=0.1, weight_decay=1.0).step()      # d = 0 + 1 * 2 > 0: moves down by lr
    np.testing.assert_allclose(p.data, [1.9], rtol=1e-7)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.Adam(ps, lr=0.1)])
def test_params_without_grad_are_skipped(make):
    a, b = _param([1.0], [1.0]), _param([5.0])
    opt = make([a, b])
    opt.step()
    assert b.data[0] == 5.0 and opt.state[1] == {}
    assert a.data[0] != 1.0


class _ClipHook(ParamTransform):
    """Identity in the forward pass; clips the latent weight after each optimizer step."""

    calls = 0

    def __call__(self, w):
        return w

    def after_step(self, param):
        _ClipHook.calls += 1
        np.clip(param.data, -1.0, 1.0, out=param.data)


def test_after_step_hooks_run_after_each_update():
    p = _param([0.5, -0.5], [-10.0, 10.0])
    p.add_transform(_ClipHook())
    skipped = _param([0.0])
    skipped.add_transform(_ClipHook())
    _ClipHook.calls = 0
    optim.SGD([p, skipped], lr=1.0).step()
    np.testing.assert_array_equal(p.data, [1.0, -1.0])
    assert _ClipHook.calls == 1


@pytest.mark.parametrize("make,match", [
    (lambda ps: optim.SGD(ps, lr=-0.1), r"SGD: lr must be >= 0.0, got -0.1"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=1.0), r"SGD: momentum must be in \[0.0, 1.0\), got 1.0"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=-0.5), r"SGD: momentum must be in"),
    (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), r"SGD: nesterov=True needs momentum > 0"),
    (lambda ps: optim.SGD(ps, lr=0.1, weight_decay=-1), r"SGD: weight_decay must be >= 0.0"),
    (lambda ps: optim.SGD(ps, lr=float("nan")), r"SGD: lr must be >= 0.0, got nan"),
    (lambda ps: optim.Adam(ps, betas=(0.9, 1.0)), r"Adam: beta2 must be in \[0.0, 1.0\)"),
    (lambda ps: optim.Adam(ps, betas=(0.9,)), r"Adam: betas must be a pair"),
    (lambda ps: optim.Adam(ps, eps=-1e-8), r"Adam: eps must be >= 0.0"),
    (lambda ps: optim.SGD([], lr=0.1), r"SGD: got an empty parameter list"),
    (lambda ps: optim.SGD(ps + ps, lr=0.1), r"SGD: a parameter appears more than once"),
])
def test_hyperparameters_are_validated(make, match):
    with pytest.raises(ValueError, match=match):
        make([_param([1.0])])


def test_step_rejects_gradient_of_wrong_shape_and_non_tensors():
    p = _param([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=r"SGD.step: gradient of shape \(1,\) for a parameter of shape \(2,\)"):
        optim.SGD([p], lr=0.1).step()
    with pytest.raises(TypeError, match="SGD: parameter 0 must be a floating-point Tensor, got ndarray"):
        optim.SGD([np.zeros(2)], lr=0.1)


def test_zero_grad():
    p = _param([1.0], [1.0])
    opt = optim.SGD([p], lr=0.1)
    opt.zero_grad()
    assert p.grad is None


# ------------------------------------------------------------------ checkpoint / resume
def _mlp(seed):
    return nn.Sequential(nn.Linear(6, 8, seed=seed), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3, seed=seed + 1))


def _train(model, opt, sched, batches):
    for x, y in batches:
        opt.zero_grad()
        F.cross_entropy(model(ta.tensor(x)), y).backward()
        opt.step()
        sched.step()


@pytest.mark.parametrize("make_opt,make_sched", [
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
     lambda o: optim.StepLR(o, step_size=2, gamma=0.5)),
    (lambda ps: optim.Adam(ps, lr=0.01, weight_decay=1e-4), lambda o: optim.CosineAnnealingLR(o, T_max=5)),
    (lambda ps: optim.SGD(ps, lr=0.05), lambda o: optim.ExponentialLR(o, gamma=0.9)),
])
def test_state_dict_round_trip_resumes_bit_exactly(make_opt, make_sched):
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((10, 6)).astype(np.float32), rng.integers(0, 3, 10)) for _ in range(6)]
    model = _mlp(0)
    opt = make_opt(model.parameters())
    sched = make_sched(opt)
    _train(model, opt, sched, batches[:3])
    saved = (model.state_dict(), opt.state_dict(), sched.state_dict())
    _train(model, opt, sched, batches[3:])

    resumed = _mlp(10).load_state_dict(saved[0])
    opt2 = make_opt(resumed.parameters())
    sched2 = make_sched(opt2)
    opt2.load_state_dict(saved[1])
    sched2.load_state_dict(saved[2])
    _train(resumed, opt2, sched2, batches[3:])
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert opt.lr == opt2.lr


def test_state_dict_is_a_copy_and_load_validates():
    p = _param([1.0], [1.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    state = opt.state_dict()
    state["state"][0]["momentum_buffer"][0] = 123.0
    assert opt.state[0]["momentum_buffer"][0] == 1.0
    with pytest.raises(ValueError, match="SGD.load_state_dict: expected a SGD state, got 'Adam'"):
        opt.load_state_dict(optim.Adam([_param([1.0])]).state_dict())
    with pytest.raises(ValueError, match="expected state for 1 parameters, got 2"):
        opt.load_state_dict(optim.SGD([_param([1.0]), _param([2.0])], lr=0.1).state_dict())
    bad = opt.state_dict()
    bad["state"][0]["momentum_buffer"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"buffer 'momentum_buffer' of parameter 0 has shape \(3,\), expected \(1,\)"):
        opt.load_state_dict(bad)


# ------------------------------------------------------------------ schedules
def _opt(lr=0.5):
    return optim.SGD([_param([1.0])], lr=lr)


def test_schedules_follow_their_formulas():
    o1, o2, o3 = _opt(), _opt(), _opt()
    step, expo, cos = optim.StepLR(o1, 3, 0.1), optim.ExponentialLR(o2, 0.8), optim.CosineAnnealingLR(o3, 4, 0.01)
    for e in range(1, 10):
        assert step.step() == pytest.approx(0.5 * 0.1 ** (e // 3), rel=1e-15)
        assert expo.step() == pytest.approx(0.5 * 0.8 ** e, rel=1e-15)
        assert cos.step() == pytest.approx(0.01 + 0.49 * (1 + math.cos(math.pi * e / 4)) / 2, rel=1e-15)
    assert o1.lr == step.get_last_lr()


def test_schedule_pins():
    o = _opt(1.0)
    s = optim.CosineAnnealingLR(o, T_max=2)
    assert [s.step(), s.step()] == [pytest.approx(0.5), pytest.approx(0.0, abs=1e-16)]
    o = _opt(1.0)
    s = optim.StepLR(o, step_size=2, gamma=0.5)
    assert [s.step() for _ in range(4)] == [1.0, 0.5, 0.5, 0.25]


def test_schedule_state_dict_round_trip():
    o = _opt()
    s = optim.StepLR(o, 2, 0.5)
    for _ in range(3):
        s.step()
    o2 = _opt()
    s2 = optim.StepLR(o2, 7, 0.9).load_state_dict(s.state_dict())
    assert (s2.step_size, s2.gamma, s2.last_epoch, o2.lr) == (2, 0.5, 3, o.lr)
    assert s2.step() == s.step()
    with pytest.raises(ValueError, match="ExponentialLR.load_state_dict: expected a ExponentialLR state"):
        optim.ExponentialLR(_opt(), 0.9).load_state_dict(s.state_dict())


@pytest.mark.parametrize("make,match", [
    (lambda o: optim.StepLR(o, 0), r"StepLR: step_size must be a positive int, got 0"),
    (lambda o: optim.StepLR(o, 2, gamma=0), r"StepLR: gamma must be > 0, got 0"),
    (lambda o: optim.ExponentialLR(o, -0.5), r"ExponentialLR: gamma must be > 0, got -0.5"),
    (lambda o: optim.CosineAnnealingLR(o, 0), r"CosineAnnealingLR: T_max must be a positive int"),
    (lambda o: optim.CosineAnnealingLR(o, 5, eta_min=-1), r"CosineAnnealingLR: eta_min must be >= 0.0"),
])
def test_schedules_validate(make, match):
    with pytest.raises(ValueError, match=match):
        make(_opt())


def test_schedules_accept_numpy_scalars():
    s = optim.StepLR(_opt(1.0), np.int64(2), gamma=np.float32(0.5))
    assert [s.step() for _ in range(2)] == [1.0, 0.5] and type(s.step_size) is int
    assert optim.ExponentialLR(_opt(1.0), np.float32(0.5)).step() == 0.5
    assert optim.CosineAnnealingLR(_opt(1.0), np.int64(2)).step() == pytest.approx(0.5)
