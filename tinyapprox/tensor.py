"""The graph core: ``Tensor``, ``Function`` and reverse-mode differentiation.

Everything a student needs to see how backpropagation works lives in this file; the
library of differentiable operations is built on top of it in ``functional.py``.

* A ``Tensor`` wraps a NumPy array (``.data``) and, once ``backward`` has run, its
  gradient (``.grad``, an array of the same shape, or ``None``).
* An operation is a ``Function`` subclass with two static methods on plain arrays:
  ``forward(ctx, *arrays, **params) -> array`` and ``backward(ctx, grad) -> grads``
  (one per positional input, ``None`` where no gradient flows).
  ``Function.apply(*inputs, **params)`` runs ``forward`` and, when any input requires a
  gradient, records the node so that ``backward`` can find it.
* ``Tensor.backward`` orders the graph topologically with an explicit stack (no
  recursion, so a chain of 100,000 operations is fine) and walks it once in reverse,
  summing the gradients that reach each node.

Semantics worth knowing:
* Gradients **accumulate** into ``.grad`` of leaf tensors across calls to ``backward``
  (zero them between optimizer steps). ``.grad`` arrays may be shared between tensors
  (``a + b`` hands the same array to both): treat them as read-only.
* A graph is **freed** after ``backward`` (the arrays saved for it are dropped); a second
  ``backward`` through it raises ``RuntimeError`` unless the first passed
  ``retain_graph=True``.
* Inside ``with no_grad():`` no graph is recorded.
"""
from __future__ import annotations

import contextlib
import re

import numpy as np

_grad_enabled = True
_LABELLED = re.compile(r"^[A-Za-z_][\w.]*(\([^)]*\))?: ")


@contextlib.contextmanager
def no_grad():
    """Context manager that disables graph recording (inference, optimizer updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    """Whether operations currently record a graph."""
    return _grad_enabled


class Context:
    """Scratch space one ``Function`` call shares between its forward and backward.

    ``save_for_backward(*arrays)`` keeps arrays for the backward pass (readable as
    ``ctx.saved``); any other attribute may be set freely (shapes, flags, constants).
    ``ctx.needs_input_grad`` is a tuple of booleans, one per positional input.
    """

    def save_for_backward(self, *arrays):
        """Keep ``arrays`` for ``backward`` (read back as ``ctx.saved``)."""
        self.saved = arrays


class Function:
    """Base class of every differentiable operation.

    Subclasses define ``forward(ctx, *arrays, **params)`` returning an ndarray, and
    ``backward(ctx, grad)`` returning a tuple with one gradient (or ``None``) per
    positional input; a single-input op may return the gradient alone.
    """

    @staticmethod
    def forward(ctx, *arrays, **params):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        """Run ``forward`` on the inputs' arrays and record the node if needed.

        ``inputs`` may be Tensors, ndarrays or Python numbers; only Tensors with
        ``requires_grad`` receive gradients. Keyword ``params`` are passed to ``forward``
        unchanged (axes, strides, flags).
        """
        ctx = Context()
        arrays, needs, requires = [], [], False
        for x in inputs:
            if isinstance(x, Tensor):
                arrays.append(x.data)
                needs.append(x.requires_grad)
                requires = requires or x.requires_grad
            else:
                arrays.append(x)
                needs.append(False)
        ctx.needs_input_grad = needs
        try:
            data = cls.forward(ctx, *arrays, **params)
        except (ValueError, IndexError) as exc:
            if _LABELLED.match(str(exc)):  # the op already named itself and what it expected
                raise
            shapes = ", ".join(str(np.shape(a)) for a in arrays)
            raise type(exc)(f"{cls.__name__.lower()}: invalid inputs of shapes {shapes}: {exc}") from None
        out = Tensor.__new__(Tensor)
        out.data = data
        out.grad = None
        out._retain = False
        if requires and _grad_enabled:
            out.requires_grad = True
            out._fn = cls
            out._ctx = ctx
            out._inputs = inputs
        else:
            out.requires_grad = False
            out._fn = None
            out._ctx = None
            out._inputs = ()
        return out


def _as_array(data, dtype=None) -> np.ndarray:
    """ndarrays and NumPy scalars keep their dtype; Python floats and lists become float32."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.asarray(data, dtype=dtype)
    if isinstance(data, (np.ndarray, np.generic)):
        return np.asarray(data)
    arr = np.asarray(data)
    return arr.astype(np.float32) if arr.dtype == np.float64 else arr


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    Attributes:
        data: the ndarray (float32 by default; float64 for gradchecks; integer arrays are
            allowed for labels and indices but cannot require gradients).
        grad: ndarray of ``data``'s shape and dtype, or ``None`` before any backward.
        requires_grad: whether gradients should flow to this tensor.

    Raises:
        TypeError: ``requires_grad=True`` on a non-floating dtype.
    """

    __slots__ = ("data", "grad", "requires_grad", "_fn", "_ctx", "_inputs", "_retain", "__weakref__")
    __array_priority__ = 1000

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        arr = _as_array(data, dtype)
        if requires_grad and arr.dtype.kind != "f":
            raise TypeError(f"tensor: requires_grad needs a floating dtype, got {arr.dtype}")
        self.data = arr
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._fn = None
        self._ctx = None
        self._inputs = ()
        self._retain = False

    # ----- inspection -------------------------------------------------------------
    shape = property(lambda self: self.data.shape, doc="Shape of ``data``.")
    dtype = property(lambda self: self.data.dtype, doc="dtype of ``data``.")
    ndim = property(lambda self: self.data.ndim, doc="Number of dimensions.")
    size = property(lambda self: self.data.size, doc="Number of elements.")
    is_leaf = property(lambda self: self._fn is None, doc="True unless produced by a recorded op.")

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = np.array2string(self.data, precision=4, threshold=20, prefix="tensor(")
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self._fn is not None:
            extra = f", grad_fn={self._fn.__name__}"
        return f"tensor({body}{extra})"

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item: expected a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def detach(self) -> "Tensor":
        """A new leaf tensor sharing ``data``, cut from the graph."""
        return Tensor(self.data)

    def retain_grad(self) -> "Tensor":
        """Keep ``.grad`` on this non-leaf tensor after backward (for inspection)."""
        self._retain = True
        return self

    def zero_grad(self):
        """Forget the accumulated gradient (``grad = None``)."""
        self.grad = None

    # ----- backpropagation --------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False):
        """Accumulate d(self)/d(leaf) * grad into ``.grad`` of every leaf that requires it.

        Args:
            grad: upstream gradient with ``self``'s shape; may be omitted for a
                one-element tensor (taken as 1).
            retain_graph: keep the saved arrays so backward can run through this graph
                again; by default the graph is freed.

        Raises:
            RuntimeError: ``self`` does not require grad, or the graph was freed.
            ValueError: ``grad`` is missing for a non-scalar, or has the wrong shape.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph "
                               "(was it computed under no_grad, or from tensors without requires_grad=True?)")
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"backward: an explicit gradient is needed for a non-scalar tensor of shape {self.shape}")
            grad = np.ones(self.data.shape, dtype=self.data.dtype) if self.data.ndim else _one(self.data.dtype)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.data.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward: gradient shape {grad.shape} does not match tensor shape {self.shape}")
        grads = {self: grad}
        tensor_type = Tensor
        for node in _topological_order(self):
            g = grads.pop(node, None)
            if g is None:
                continue
            if node._retain:
                node.grad = g if node.grad is None else node.grad + g
            ctx = node._ctx
            if ctx is None:
                raise RuntimeError(f"backward: the graph through {node._fn.__name__} was already freed; "
                                   "pass retain_graph=True to the first backward to run it twice")
            in_grads = node._fn.backward(ctx, g)
            if type(in_grads) is not tuple:
                in_grads = (in_grads,)
            for x, gx in zip(node._inputs, in_grads):
                if gx is None or not isinstance(x, tensor_type) or not x.requires_grad:
                    continue
                if gx.shape != x.data.shape:
                    raise RuntimeError(f"backward of {node._fn.__name__}: produced a gradient of shape "
                                       f"{gx.shape} for an input of shape {x.data.shape}")
                if x._fn is None:
                    x.grad = gx if x.grad is None else x.grad + gx
                else:
                    prev = grads.get(x)
                    grads[x] = gx if prev is None else prev + gx
            if not retain_graph:
                node._ctx = None
        if self._fn is None:
            self.grad = np.array(grad) if self.grad is None else self.grad + grad

    # ----- operators (implemented in functional.py) ------------------------------
    def __add__(self, other): return _F.add(self, other)
    def __radd__(self, other): return _F.add(other, self)
    def __sub__(self, other): return _F.sub(self, other)
    def __rsub__(self, other): return _F.sub(other, self)
    def __mul__(self, other): return _F.mul(self, other)
    def __rmul__(self, other): return _F.mul(other, self)
    def __truediv__(self, other): return _F.div(self, other)
    def __rtruediv__(self, other): return _F.div(other, self)
    def __pow__(self, other): return _F.pow(self, other)
    def __rpow__(self, other): return _F.pow(other, self)
    def __matmul__(self, other): return _F.matmul(self, other)
    def __rmatmul__(self, other): return _F.matmul(other, self)
    def __neg__(self): return _F.neg(self)
    def __abs__(self): return _F.abs(self)
    def __getitem__(self, index): return _F.getitem(self, index)

    def __lt__(self, other): return Tensor(self.data < _data(other))
    def __le__(self, other): return Tensor(self.data <= _data(other))
    def __gt__(self, other): return Tensor(self.data > _data(other))
    def __ge__(self, other): return Tensor(self.data >= _data(other))

    __hash__ = object.__hash__

    # Methods below mirror the functions of ``functional`` (same shapes and semantics).

    T = property(lambda self: _F.transpose(self), doc="All axes reversed (differentiable).")

    def sum(self, axis=None, keepdims=False): return _F.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _F.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _F.max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return _F.min(self, axis, keepdims)
    def reshape(self, *shape): return _F.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)
    def transpose(self, *axes): return _F.transpose(self, axes or None)
    def permute(self, *axes): return _F.transpose(self, axes)
    def flatten(self, start_dim=0, end_dim=-1): return _F.flatten(self, start_dim, end_dim)
    def exp(self): return _F.exp(self)
    def log(self): return _F.log(self)
    def sqrt(self): return _F.sqrt(self)
    def abs(self): return _F.abs(self)
    def relu(self): return _F.relu(self)
    def sigmoid(self): return _F.sigmoid(self)
    def tanh(self): return _F.tanh(self)
    def clip(self, low, high): return _F.clip(self, low, high)
    def softmax(self, axis=-1): return _F.softmax(self, axis)
    def log_softmax(self, axis=-1): return _F.log_softmax(self, axis)
    def argmax(self, axis=None): return self.data.argmax(axis)


_ONES = {}


def _one(dtype) -> np.ndarray:
    """A shared read-only 0-d array holding 1 (the seed gradient of a scalar loss)."""
    one = _ONES.get(dtype)
    if one is None:
        one = _ONES[dtype] = np.ones((), dtype=dtype)
        one.flags.writeable = False
    return one


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _topological_order(root: Tensor) -> list:
    """The recorded (non-leaf) nodes reachable from ``root``, each before all of its inputs.

    Iterative depth-first search: a node is emitted after all its inputs; the list is
    then reversed so the walk can start at the root. Leaves are not listed: their
    gradients are accumulated as they arrive.
    """
    if root._fn is None:
        return []
    order, visited = [], {root}
    stack = [(root, 0)]
    while stack:
        node, i = stack.pop()
        inputs = node._inputs
        while i < len(inputs):
            x = inputs[i]
            i += 1
            if isinstance(x, Tensor) and x._fn is not None and x not in visited:
                visited.add(x)
                stack.append((node, i))
                stack.append((x, 0))
                break
        else:
            order.append(node)
    order.reverse()
    return order


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Make a tensor. Python floats and lists become float32; ndarrays keep their dtype."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(shape, requires_grad: bool = False, dtype=np.float32) -> Tensor:
    """A tensor of zeros of ``shape`` (float32 by default)."""
    return Tensor(np.zeros(shape, dtype=dtype), requires_grad=requires_grad)


def ones(shape, requires_grad: bool = False, dtype=np.float32) -> Tensor:
    """A tensor of ones of ``shape`` (float32 by default)."""
    return Tensor(np.ones(shape, dtype=dtype), requires_grad=requires_grad)


from . import functional as _F  # noqa: E402  (ops are built on the core above)
