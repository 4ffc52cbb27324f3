"""The graph core: backward semantics, deep chains, reuse, freeing, errors."""
import numpy as np
import pytest
from hypothesis import given

import tinyapprox as ta
from tinyapprox import functional as F
from tinyapprox.testing import GradcheckError, gradcheck
from tinyapprox.testing import strategies as tst

pytestmark = pytest.mark.autograd


def test_scalar_backward_implicit_one_and_values():
    x = ta.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])
    assert y.item() == 14.0


def test_explicit_gradient_for_non_scalar():
    x = ta.tensor(np.arange(4.0), requires_grad=True)
    y = x * 3.0
    y.backward(np.array([1.0, 0.0, 2.0, 0.5]))
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 6.0, 1.5])


def test_non_scalar_without_gradient_is_refused():
    x = ta.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match=r"explicit gradient.*\(3,\)"):
        (x * 2).backward()


def test_wrong_gradient_shape_is_refused():
    x = ta.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match=r"gradient shape \(2,\) does not match tensor shape \(3,\)"):
        (x * 2).backward(np.ones(2))


def test_deep_chain_does_not_recurse():
    x = ta.tensor(np.array([1.0, -2.0]), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])


def test_reused_tensor_accumulates_gradient():
    x = ta.tensor(np.array([2.0, 3.0]), requires_grad=True)
    y = x * x + x * 4.0 + x  # d/dx = 2x + 5
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [9.0, 11.0])


def test_diamond_graph_counts_each_path_once():
    x = ta.tensor(np.array(1.5), requires_grad=True)
    a = x * 2.0
    b = a * a
    c = a + b  # dc/dx = 2 + 2a*2 = 2 + 8x
    c.backward()
    assert x.grad == pytest.approx(2 + 8 * 1.5)


def test_second_backward_raises_unless_retained():
    x = ta.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="already freed"):
        y.backward()


def test_retain_graph_accumulates_across_calls():
    x = ta.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad, [4.0, 8.0])


def test_no_grad_records_nothing():
    x = ta.tensor(np.ones(2), requires_grad=True)
    with ta.no_grad():
        y = (x * 2).sum()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="requires_grad needs a floating dtype, got int64"):
        ta.tensor(np.arange(3), requires_grad=True)


def test_non_differentiable_use_raises_clearly():
    x = ta.tensor(np.array([0.3, -1.2]), requires_grad=True)
    y = F.round(x * 3).sum()
    with pytest.raises(RuntimeError, match="round is not differentiable"):
        y.backward()


def test_constants_get_no_gradient_and_detach_cuts():
    x = ta.tensor(np.ones(2), requires_grad=True)
    c = ta.tensor(np.ones(2))
    (x.detach() * x + c).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])
    assert c.grad is None


def test_retain_grad_on_intermediate():
    x = ta.tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = (x * 3.0).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_array_equal(h.grad, [6.0, 12.0])


def test_tensor_api_surface():
    t = ta.tensor(np.arange(6.0).reshape(2, 3))
    assert t.shape == (2, 3) and t.T.shape == (3, 2) and t.ndim == 2 and t.size == 6
    assert t.numpy() is t.data
    with pytest.raises(ValueError, match="one element"):
        t.item()
    assert "tensor(" in repr(t)


def test_python_floats_default_to_float32_and_float64_arrays_are_kept():
    assert ta.tensor(1.5).dtype == np.float32
    assert ta.tensor(np.ones(2)).dtype == np.float64
    assert (ta.tensor(np.ones(2, np.float32)) * 2.5).dtype == np.float32


@given(tst.expression_graphs())
def test_random_expression_graphs_gradcheck(graph):
    fn, inputs, description = graph
    gradcheck(fn, inputs, name=description)


def test_gradcheck_failure_names_input_index_and_values():
    class BadSquare(ta.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            return g * 3 * ctx.saved[0]

    with pytest.raises(GradcheckError, match=r"gradcheck of badsquare: input 0 \(shape \(3,\)\) at index \(0,\): numeric .* vs analytic"):
        gradcheck(BadSquare.apply, [np.array([1.0, 2.0, 3.0])], name="badsquare")


def test_gradcheck_refuses_non_finite_input():
    with pytest.raises(ValueError, match="input 0 .* NaN or infinity"):
        gradcheck(lambda x: x * 2, [np.array([1.0, np.nan])])


def test_out_of_range_index_names_the_op():
    with pytest.raises(IndexError, match=r"getitem: invalid inputs of shapes \(3,\): index 5 is out of bounds"):
        ta.tensor(np.zeros(3))[np.array([5])]


def test_an_op_that_names_itself_is_not_prefixed_twice():
    with pytest.raises(ValueError, match=r"^batch_norm: training needs more than one value per channel"):
        F.batch_norm(ta.tensor(np.zeros((1, 3))), ta.tensor(np.ones(3)), ta.tensor(np.zeros(3)))
