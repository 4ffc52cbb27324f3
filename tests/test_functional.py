"""Every op of functional.py: forward against NumPy, backward by finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyapprox as ta
from tinyapprox import functional as F
from tinyapprox.testing import gradcheck
from tinyapprox.testing import strategies as tst

pytestmark = pytest.mark.autograd

BINARY = {
    "add": (F.add, np.add, (-3, 3)),
    "sub": (F.sub, np.subtract, (-3, 3)),
    "mul": (F.mul, np.multiply, (-3, 3)),
    "div": (F.div, np.divide, (0.5, 3)),
    "pow": (F.pow, np.power, (0.5, 2)),
    "maximum": (F.maximum, np.maximum, (-3, 3)),
    "minimum": (F.minimum, np.minimum, (-3, 3)),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
def test_binary_ops_broadcast_and_gradcheck(name, data):
    op, ref, (lo, hi) = BINARY[name]
    sa, sb = data.draw(tst.broadcastable_shapes())
    a = data.draw(tst.arrays(shape=sa, low=lo, high=hi))
    b = data.draw(tst.arrays(shape=sb, low=lo, high=hi))
    np.testing.assert_allclose(op(ta.tensor(a), ta.tensor(b)).data, ref(a, b))
    if name in ("maximum", "minimum") and np.abs(np.subtract(a, b)).min(initial=1.0) < 1e-3:
        return  # a tie: not differentiable there (tie rule tested below)
    gradcheck(op, [a, b], name=name)


def test_maximum_splits_ties_and_takes_the_larger_elsewhere():
    a = ta.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = ta.tensor(np.array([2.0, 2.0, 1.0]), requires_grad=True)
    F.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(b.grad, [1.0, 0.5, 0.0])


UNARY = {
    "neg": (F.neg, np.negative, (-3, 3)),
    "exp": (F.exp, np.exp, (-3, 3)),
    "log": (F.log, np.log, (0.2, 3)),
    "sqrt": (F.sqrt, np.sqrt, (0.2, 3)),
    "abs": (F.abs, np.abs, (0.1, 3)),
    "relu": (F.relu, lambda x: np.maximum(x, 0), (0.1, 3)),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x)), (-3, 3)),
    "tanh": (F.tanh, np.tanh, (-3, 3)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary_ops_gradcheck(name, data):
    op, ref, (lo, hi) = UNARY[name]
    x = data.draw(tst.arrays(low=lo, high=hi))
    if name in ("abs", "relu"):
        x = x * data.draw(st.sampled_from([1.0, -1.0]))
    np.testing.assert_allclose(op(ta.tensor(x)).data, ref(x), rtol=1e-12)
    gradcheck(op, [x], name=name)


def test_relu_and_abs_at_zero_have_zero_gradient():
    x = ta.tensor(np.array([0.0, 1.0, -1.0]), requires_grad=True)
    (F.relu(x) + F.abs(x)).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 2.0, -1.0])


@given(tst.arrays(low=-3, high=3))
def test_clip_and_hardtanh(x):
    x = np.where(np.abs(np.abs(x) - 1) < 1e-3, 0.5, x)
    gradcheck(lambda t: F.hardtanh(t), [x], name="hardtanh")
    gradcheck(lambda t: F.clip(t, -0.5, None), [np.where(np.abs(x + 0.5) < 1e-3, 0.0, x)], name="clip")
    np.testing.assert_array_equal(F.hardtanh(ta.tensor(x)).data, np.clip(x, -1, 1))


def test_clip_rejects_inverted_bounds():
    with pytest.raises(ValueError, match="clip: expected low <= high, got low=1, high=0"):
        F.clip(ta.tensor(np.ones(2)), 1, 0)


MATMUL_SHAPES = [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)),
                 ((2, 3), (5, 3, 4)), ((5, 1, 2, 3), (4, 3, 2)), ((0, 3), (3, 2)), ((1, 3), (3, 1))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_shapes_gradcheck(sa, sb):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    np.testing.assert_allclose(F.matmul(ta.tensor(a), ta.tensor(b)).data, a @ b)
    gradcheck(F.matmul, [a, b], name="matmul")


def test_matmul_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"matmul: inner dimensions differ.*\(2, 3\) @ \(4, 5\)"):
        ta.tensor(np.ones((2, 3))) @ ta.tensor(np.ones((4, 5)))


def test_broadcast_mismatch_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"add: invalid inputs of shapes \(2, 3\), \(4,\)"):
        ta.tensor(np.ones((2, 3))) + ta.tensor(np.ones(4))


@st.composite
def array_and_axis(draw, min_side=1):
    x = draw(tst.arrays(shape=draw(tst.shapes(min_dims=1, max_dims=3, min_side=min_side, max_side=4))))
    axis = draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1),
                          st.lists(st.integers(0, x.ndim - 1), min_size=1, max_size=x.ndim, unique=True).map(tuple)))
    return x, axis, draw(st.booleans())


@given(array_and_axis(min_side=0))
def test_sum_and_mean(case):
    x, axis, keep = case
    np.testing.assert_allclose(F.sum(ta.tensor(x), axis, keep).data, np.sum(x, axis=axis, keepdims=keep))
    gradcheck(lambda t: F.sum(t, axis, keep), [x], name="sum")
    if x.size:
        gradcheck(lambda t: F.mean(t, axis, keep), [x], name="mean")


@given(array_and_axis())
def test_max_and_min(case):
    x, axis, keep = case
    x = x + np.arange(x.size).reshape(x.shape) * 1e-3  # distinct values: differentiable
    np.testing.assert_array_equal(F.max(ta.tensor(x), axis, keep).data, np.max(x, axis=axis, keepdims=keep))
    gradcheck(lambda t: F.max(t, axis, keep), [x], name="max")
    gradcheck(lambda t: F.min(t, axis, keep), [x], name="min")


def test_max_shares_gradient_among_ties():
    x = ta.tensor(np.array([[1.0, 3.0, 3.0], [0.0, -1.0, -2.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 0.5, 0.5], [1, 0, 0]])


@given(data=st.data())
def test_reshape_transpose_flatten(data):
    x = data.draw(tst.arrays(shape=data.draw(tst.shapes(min_dims=1, max_dims=4, max_side=3))))
    perm = data.draw(st.permutations(range(x.ndim)))
    gradcheck(lambda t: F.transpose(t, perm), [x], name="transpose")
    gradcheck(lambda t: F.reshape(t, (-1,)), [x], name="reshape")
    gradcheck(lambda t: F.flatten(t, 0, -1), [x], name="flatten")
    np.testing.assert_array_equal(ta.tensor(x).permute(*perm).data, np.transpose(x, perm))
    np.testing.assert_array_equal(ta.tensor(x).T.data, x.T)


def test_flatten_like_torch():
    x = ta.tensor(np.zeros((2, 3, 4, 5)))
    assert x.flatten(1).shape == (2, 60)
    assert x.flatten(1, 2).shape == (2, 12, 5)


GETITEM_CASES = [
    (slice(1, None),), (Ellipsis, 0), (slice(None, None, 2), slice(None, None, -1)),
    (np.array([0, 2, 0]),), (np.array([True, False, True]),), (np.array([1, 1]), np.array([0, 3])), (None, 1),
]


@pytest.mark.parametrize("index", GETITEM_CASES, ids=[str(i) for i in range(len(GETITEM_CASES))])
def test_getitem(index):
    x = np.random.default_rng(1).standard_normal((3, 4))
    np.testing.assert_array_equal(ta.tensor(x)[index].data, x[index])
    gradcheck(lambda t: t[index], [x], name="getitem")


def test_getitem_repeated_indices_accumulate():
    x = ta.tensor(np.zeros(3), requires_grad=True)
    x[np.array([0, 0, 2])].sum().backward()
    np.testing.assert_array_equal(x.grad, [2, 0, 1])


@given(data=st.data())
def test_concatenate_stack_where_pad(data):
    shape = data.draw(tst.shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))
    a, b = data.draw(tst.arrays(shape=shape)), data.draw(tst.arrays(shape=shape))
    axis = data.draw(st.integers(0, len(shape) - 1))
    gradcheck(lambda s, t: F.concatenate([s, t, s], axis=axis), [a, b], name="concatenate")
    gradcheck(lambda s, t: F.stack([s, t], axis=axis), [a, b], name="stack")
    cond = a > 0
    gradcheck(lambda s, t: F.where(cond, s, t), [a, b], name="where")
    widths = [(data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in shape]
    np.testing.assert_array_equal(F.pad(ta.tensor(a), widths).data, np.pad(a, widths))
    gradcheck(lambda s: F.pad(s, widths), [a], name="pad")


@given(tst.arrays(shape=(3, 5)), st.sampled_from([0, 1, -1]))
def test_softmax_and_log_softmax(x, axis):
    gradcheck(lambda t: F.softmax(t, axis), [x], name="softmax")
    gradcheck(lambda t: F.log_softmax(t, axis), [x], name="log_softmax")
    np.testing.assert_allclose(F.softmax(ta.tensor(x), axis).data.sum(axis=axis), 1.0)


def test_softmax_stable_at_1e4():
    x = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype=np.float32)
    s = F.softmax(ta.tensor(x)).data
    ls = F.log_softmax(ta.tensor(x)).data
    assert np.isfinite(s).all() and np.isfinite(ls).all()
    np.testing.assert_allclose(s[0], [1, 0, 0])
    np.testing.assert_allclose(ls[1], np.log(1 / 3) * np.ones(3), rtol=1e-6)
    np.testing.assert_allclose(ls[0, 0], 0.0)


def test_sign_and_round_forward():
    np.testing.assert_array_equal(F.sign(ta.tensor(np.array([-0.5, 0.0, 2.0]))).data, [-1, 1, 1])
    np.testing.assert_array_equal(F.round(ta.tensor(np.array([0.5, 1.5, -2.5]))).data, [0, 2, -2])


# ---------------------------------------------------------------- layer ops and losses
def test_linear_is_w_transpose_a():
    w = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # (out=3, in=2)
    a = np.array([[1.0, -1.0]])
    np.testing.assert_array_equal(F.linear(ta.tensor(a), ta.tensor(w), ta.tensor(np.ones(3))).data, [[0.0, 0.0, 0.0]])
    rng = np.random.default_rng(2)
    gradcheck(F.linear, [rng.standard_normal((4, 2)), w, rng.standard_normal(3)], name="linear")
    with pytest.raises(ValueError, match=r"linear: expected input with last dimension 2"):
        F.linear(ta.tensor(np.ones((1, 3))), ta.tensor(w))


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 2, 2)])
def test_batch_norm_train_and_eval(shape):
    rng = np.random.default_rng(3)
    x, g, b = rng.standard_normal(shape), rng.standard_normal(3), rng.standard_normal(3)
    gradcheck(lambda *t: F.batch_norm(*t, training=True), [x, g, b], name="batch_norm")
    rm, rv = np.zeros(3), np.ones(3)
    y = F.batch_norm(ta.tensor(x), ta.tensor(np.ones(3)), ta.tensor(np.zeros(3)), rm, rv, training=True, momentum=1.0)
    axes = tuple(i for i in range(len(shape)) if i != 1)
    np.testing.assert_allclose(y.data.mean(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose(rm, x.mean(axis=axes))
    n = x.size // 3
    np.testing.assert_allclose(rv, x.var(axis=axes) * n / (n - 1))
    gradcheck(lambda *t: F.batch_norm(*t, running_mean=rm, running_var=rv, training=False), [x, g, b])


def test_dropout_scales_and_is_identity_in_eval():
    x = ta.tensor(np.ones((1000,)))
    y = F.dropout(x, 0.25, training=True, rng=0).data
    assert set(np.unique(y)) <= {0.0, 1 / 0.75} and abs(y.mean() - 1) < 0.1
    assert F.dropout(x, 0.25, training=False) is x
    with pytest.raises(ValueError, match="dropout: expected 0 <= p < 1"):
        F.dropout(x, 1.0)


LABELS = np.array([0, 2, 1, 2])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_reference(reduction):
    z = np.random.default_rng(4).standard_normal((4, 3))
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    per = -logp[np.arange(4), LABELS]
    expected = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(F.cross_entropy(ta.tensor(z), LABELS, reduction).data, expected)
    gradcheck(lambda t: F.cross_entropy(t, LABELS, reduction), [z], name="cross_entropy")


def test_cross_entropy_stable_and_validated():
    z = ta.tensor(np.array([[1e4, -1e4, 0.0]], dtype=np.float32))
    assert np.isfinite(F.cross_entropy(z, np.array([1])).data)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        F.cross_entropy(z, np.array([3]))
    with pytest.raises(ValueError, match=r"expected integer labels of shape \(1,\)"):
        F.cross_entropy(z, np.array([0.0]))
    with pytest.raises(ValueError, match="reduction must be"):
        F.cross_entropy(z, np.array([0]), reduction="avg")


def test_square_log_hinge_losses():
    rng = np.random.default_rng(5)
    p, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    np.testing.assert_allclose(F.mse_loss(ta.tensor(p), t).data, ((p - t) ** 2).mean())
    gradcheck(F.mse_loss, [p, t], name="mse_loss")
    prob, target = rng.uniform(0.1, 0.9, (4, 3)), rng.integers(0, 2, (4, 3)).astype(float)
    ref = -(target * np.log(prob) + (1 - target) * np.log(1 - prob)).mean()
    np.testing.assert_allclose(F.binary_cross_entropy(ta.tensor(prob), target).data, ref)
    gradcheck(F.binary_cross_entropy, [prob, target], name="binary_cross_entropy")
    z = rng.standard_normal((4, 3)) * 3
    np.testing.assert_allclose(F.binary_cross_entropy_with_logits(ta.tensor(z), target).data,
                               F.binary_cross_entropy(F.sigmoid(ta.tensor(z)), target).data, rtol=1e-6)
    gradcheck(F.binary_cross_entropy_with_logits, [z, target], name="bce_with_logits")
    s = np.array([[0.5, -2.0, 0.2]])
    # true class 0: max(0, 1 - 0.5) + max(0, 1 - 2) + max(0, 1 + 0.2) = 0.5 + 0 + 1.2
    assert F.hinge_loss(ta.tensor(s), np.array([0])).item() == pytest.approx(1.7)
    assert F.hinge_loss(ta.tensor(s), np.array([0]), squared=True).item() == pytest.approx(0.25 + 1.44)
    gradcheck(lambda x: F.hinge_loss(x, LABELS, squared=True), [rng.standard_normal((4, 3)) * 0.4], name="sq_hinge")


def test_zero_one_loss():
    z = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    assert F.zero_one_loss(z, np.array([0, 1, 1])) == pytest.approx(1 / 3)


def test_zero_one_loss_counts_ties_as_wrong_like_metrics():
    from tinyapprox import metrics

    tied = np.array([[1.0, 1.0, 0.0], [3.0, 0.0, 0.0]])
    y = np.array([0, 0])
    assert F.zero_one_loss(tied, y) == metrics.zero_one_loss(tied, y) == 0.5
    assert F.topk_correct(tied, y, 2).tolist() == [True, True]
    with pytest.raises(ValueError, match="topk_correct: the scores contain NaN"):
        F.topk_correct(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="topk_correct: expected k to be an int >= 1, got 0"):
        F.topk_correct(tied, y, 0)


def _topk_correct_loop(s, y, k):
    """Plain reference of the tie rule: count the other classes scoring >= the true class."""
    out = []
    for row, label in zip(s, y):
        others = sum(1 for c, v in enumerate(row) if c != label and v >= row[label])
        out.append(others < k)
    return np.array(out, dtype=bool)


@given(st.integers(1, 6).flatmap(lambda c: st.tuples(
    hnp.arrays(np.float32, st.tuples(st.integers(0, 7), st.just(c)), elements=st.integers(-2, 2).map(float)),
    st.integers(1, c))), st.data())
def test_topk_correct_matches_a_loop_and_metrics_on_tie_heavy_scores(case, data):
    from tinyapprox import metrics

    s, k = case
    y = data.draw(hnp.arrays(np.int64, len(s), elements=st.integers(0, s.shape[1] - 1)))
    got = F.topk_correct(ta.tensor(s), y, k)
    np.testing.assert_array_equal(got, _topk_correct_loop(s, y, k))
    if len(s):
        assert metrics.topk_accuracy(s, y, k) == float(np.mean(got))
        assert F.zero_one_loss(s, y) == metrics.zero_one_loss(s, y)


def test_same_shape_losses_name_both_shapes():
    with pytest.raises(ValueError, match=r"mse_loss: expected prediction and target of the same shape, got \(2,\) and \(3,\)"):
        F.mse_loss(ta.tensor(np.ones(2)), np.ones(3))


@settings(max_examples=10)
@given(tst.arrays(shape=(2, 3), dtype=np.float32))
def test_float32_stays_float32(x):
    t = ta.tensor(np.ascontiguousarray(x), requires_grad=True)
    y = F.log_softmax(F.relu(t) * 2.0 + 1.0).sum()
    y.backward()
    assert y.dtype == np.float32 and t.grad.dtype == np.float32


def _op_classes():
    """(file, class node) for every Function subclass defined in the package."""
    import ast
    import pathlib

    import tinyapprox

    for path in sorted(pathlib.Path(tinyapprox.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "Function" for b in node.bases):
                yield path.name, node


def test_every_op_says_what_it_computes_and_has_static_forward_and_backward():
    import ast

    found = list(_op_classes())
    assert len(found) > 30
    for fname, node in found:
        assert ast.get_docstring(node), f"{fname}: op {node.name} has no docstring"
        methods = {f.name: f for f in node.body if isinstance(f, ast.FunctionDef)}
        for name in ("forward", "backward"):
            assert name in methods, f"{fname}: op {node.name} does not define {name}"
            decorators = [getattr(d, "id", None) for d in methods[name].decorator_list]
            assert decorators == ["staticmethod"], f"{fname}: {node.name}.{name} is not a staticmethod"


def test_functional_never_calls_its_own_builtin_shadowing_names_unqualified():
    import ast
    import inspect

    shadowing = {"sum", "max", "min", "abs", "round", "pow"}
    tree = ast.parse(inspect.getsource(F))
    calls = [(n.func.id, n.lineno) for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in shadowing]
    assert calls == []
