"""Saliency criteria (first-order Taylor, Optimal Brain Damage) against closed forms."""
import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyapprox import nn, prune
from tinyapprox import functional as F

pytestmark = pytest.mark.pruning


def _softmax_grads(W, b, x, y):
    """Per-sample dL/dW of softmax cross-entropy for logits = x W^T + b: (N, out, in)."""
    z = x @ W.T + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p[:, :, None] * x[:, None, :]


@st.composite
def _problems(draw):
    n_in, n_out, n = draw(st.integers(1, 6)), draw(st.integers(2, 5)), draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in)).astype(np.float32)
    y = rng.integers(0, n_out, n)
    return nn.Linear(n_in, n_out, seed=seed), x, y


@given(_problems())
def test_obd_is_half_fisher_diagonal_times_w_squared(problem):
    layer, x, y = problem
    model = nn.Sequential(layer)
    W, b = layer.weight.data.astype(np.float64), layer.bias.data.astype(np.float64)
    g = _softmax_grads(W, b, x.astype(np.float64), y)
    expected = 0.5 * (g ** 2).mean(axis=0) * W ** 2
    got = prune.saliency_scores(model, x, y, F.cross_entropy, kind="obd")["0.weight"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-9)


@given(_problems())
def test_taylor_is_minus_w_times_mean_gradient(problem):
    layer, x, y = problem
    model = nn.Sequential(layer)
    W, b = layer.weight.data.astype(np.float64), layer.bias.data.astype(np.float64)
    g = _softmax_grads(W, b, x.astype(np.float64), y).mean(axis=0)
    got = prune.saliency_scores(model, x, y, F.cross_entropy, kind="taylor")["0.weight"]
    np.testing.assert_allclose(got, -W * g, rtol=1e-4, atol=1e-9)


@given(_problems(), st.sampled_from(["taylor", "obd"]), st.floats(0.0, 1.0))
def test_saliency_prunes_the_lowest_scores_and_leaves_grads_alone(problem, kind, amount):
    layer, x, y = problem
    model = nn.Sequential(layer)
    scores = prune.saliency_scores(model, x, y, F.cross_entropy, kind=kind)["0.weight"]
    scores = np.abs(scores) if kind == "taylor" else scores
    masks = prune.saliency(model, x, y, F.cross_entropy, amount=amount, kind=kind)
    mask = masks["0.weight"]
    assert np.count_nonzero(~mask) == int(round(amount * mask.size))
    if 0 < np.count_nonzero(~mask) < mask.size:
        assert scores[~mask].max() <= scores[mask].min()
    assert all(p.grad is None for p in model.parameters())


def test_obd_keeps_the_weights_the_decision_depends_on():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = nn.Sequential(nn.Linear(6, 2, seed=0))
    model[0].weight.data[:] = 0.01 * rng.standard_normal((2, 6))
    model[0].weight.data[0, 0], model[0].weight.data[1, 0] = -2.0, 2.0
    pruned = copy.deepcopy(model)
    prune.saliency(pruned, x, y, F.cross_entropy, amount=10, kind="obd")
    assert pruned[0].weight.effective().data[:, 0].tolist() == [-2.0, 2.0]


@pytest.mark.parametrize("bad, match", [
    (dict(kind="hessian"), "kind"),
    (dict(samples=0), "samples"),
])
def test_saliency_refuses_bad_settings(bad, match):
    model = nn.Sequential(nn.Linear(3, 2, seed=0))
    x, y = np.zeros((4, 3), np.float32), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=match):
        prune.saliency(model, x, y, F.cross_entropy, amount=0.5, **bad)


def test_saliency_refuses_mismatched_data():
    model = nn.Sequential(nn.Linear(3, 2, seed=0))
    with pytest.raises(ValueError, match="same non-zero length"):
        prune.saliency_scores(model, np.zeros((4, 3), np.float32), np.zeros(3, np.int64), F.cross_entropy)


def test_saliency_refuses_non_finite_inputs():
    model = nn.Sequential(nn.Linear(3, 2, seed=0))
    x, y = np.zeros((4, 3), np.float32), np.zeros(4, np.int64)
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="prune.saliency_scores: expected finite inputs"):
        prune.saliency_scores(model, x, y, F.cross_entropy)
    with pytest.raises(ValueError, match="prune.saliency: expected finite inputs"):
        prune.saliency(model, x, y, F.cross_entropy, amount=0.5)
    prune.saliency_scores(model, x, y, F.cross_entropy, samples=2)   # the NaN row is not used
