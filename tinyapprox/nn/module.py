"""``Module``, ``Parameter`` and the one mechanism every approximation plugs into.

A ``Parameter`` is a trainable leaf tensor that may carry a chain of *transforms*
(``ParamTransform``): functions of the parameter applied in the forward pass, while the
optimizer keeps updating the underlying full-precision array. A layer never reads
``self.weight`` directly in ``forward``; it reads ``self.weight.effective()``, which is
``t_n(... t_1(weight))``. Pruning attaches a mask, quantization a fake-quantizer and
binarization a sign with a straight-through estimator, all the same way, so they compose
(prune, then quantize) and none of them patches a layer by hand.

A transform may also act after each optimizer step (``after_step``: re-apply a mask, clip
latent binary weights to [-1, 1]) and carries its own state (a mask, a scale) that
``Module.state_dict`` saves and ``load_state_dict`` restores.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..tensor import Tensor, no_grad

TRANSFORMS: dict = {}


class ParamTransform:
    """Base class of parameter transforms.

    Subclasses implement ``__call__(w: Tensor) -> Tensor`` (differentiable, same shape),
    and optionally ``after_step(param)``, ``state() -> dict[str, ndarray]`` and
    ``from_state(state) -> transform`` (a classmethod) so masks and scales round-trip
    through ``state_dict``. Subclasses are registered by class name for that purpose.

    Class attributes:
        order: where the transform sits in a parameter's chain, which ``Parameter`` keeps
            sorted by it: ``MASK`` (0) transforms decide which entries exist and come
            first, ``QUANTIZE`` (10, the default) transforms decide the values the kept
            entries take and see the masked weight. Prune, then quantize.
        training: follows the mode of the parameter it is attached to, which
            ``Module.train()`` / ``eval()`` set for every parameter of the tree
            (stochastic transforms draw only while training).
    """

    MASK = 0
    QUANTIZE = 10
    order = QUANTIZE
    training = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if isinstance(cls.order, bool) or not isinstance(cls.order, int):
            raise TypeError(f"ParamTransform subclass {cls.__name__}: order must be an int "
                            f"(ParamTransform.MASK or .QUANTIZE), got {cls.order!r}")
        TRANSFORMS[cls.__name__] = cls

    def __call__(self, w: Tensor) -> Tensor:
        raise NotImplementedError

    def after_step(self, param: "Parameter") -> None:
        """Called by optimizers after each update of ``param.data``."""

    def state(self) -> dict:
        """Arrays (or scalars) that define this transform, saved by ``Module.state_dict``."""
        return {}

    @classmethod
    def from_state(cls, state: dict) -> "ParamTransform":
        raise NotImplementedError(f"{cls.__name__} cannot be restored from a state_dict")

    def __repr__(self):
        return f"{type(self).__name__}()"


class Parameter(Tensor):
    """A trainable tensor (float32 unless given a float64 array) with optional transforms.

    The chain is read through ``transforms`` (a tuple) and changed only through
    ``add_transform``, ``remove_transform`` and ``bake``, which keep it ordered by each
    transform's ``order`` (masks before quantizers).
    """

    __slots__ = ("_transforms", "_training")

    def __init__(self, data, requires_grad: bool = True):
        arr = np.asarray(data.data if isinstance(data, Tensor) else data)
        if arr.dtype.kind != "f":
            arr = arr.astype(np.float32)
        super().__init__(np.ascontiguousarray(arr), requires_grad=requires_grad)
        self._transforms = ()
        self._training = True

    @property
    def transforms(self) -> tuple:
        """The attached transforms, in the order ``effective()`` applies them."""
        return self._transforms

    @transforms.setter
    def transforms(self, chain):
        """Replace the whole chain (``load_state_dict`` does); it must already be in order.

        Raises:
            TypeError: an item is not a ``ParamTransform``.
            ValueError: the chain breaks the order rule (e.g. a mask after a quantizer).
        """
        chain = tuple(chain)
        for t in chain:
            _check_transform("Parameter.transforms", t)
        for a, b in zip(chain, chain[1:]):
            if b.order < a.order:
                raise ValueError(f"Parameter.transforms: {type(b).__name__} (order {b.order}) cannot follow "
                                 f"{type(a).__name__} (order {a.order}); transforms are applied in order of "
                                 f"their `order` (masks {ParamTransform.MASK} before quantizers "
                                 f"{ParamTransform.QUANTIZE}) — use add_transform, which places each one")
        self._transforms = chain
        self.train(self._training)

    def effective(self) -> Tensor:
        """The value the forward pass uses: every attached transform applied in order."""
        out = self
        for t in self._transforms:
            out = t(out)
        return out

    def add_transform(self, transform: ParamTransform) -> "Parameter":
        """Attach ``transform`` after every transform of equal or lower ``order``; returns self.

        So a mask added to a quantized weight goes in front of the quantizer, and two
        quantizers apply in the order they were added.
        Raises TypeError for anything but a ``ParamTransform``.
        """
        _check_transform("add_transform", transform)
        chain = list(self._transforms)
        at = sum(1 for t in chain if t.order <= transform.order)
        chain.insert(at, transform)
        self._transforms = tuple(chain)
        transform.training = self._training
        return self

    def remove_transform(self, kind) -> list:
        """Detach, without baking, every transform that is ``kind`` (an instance) or an
        instance of ``kind`` (a class); returns the detached ones (possibly none)."""
        def match(t):
            return t is kind if isinstance(kind, ParamTransform) else isinstance(t, kind)
        removed = [t for t in self._transforms if match(t)]
        self._transforms = tuple(t for t in self._transforms if not match(t))
        return removed

    def find_transform(self, kind):
        """The first attached transform that is an instance of ``kind``, or None."""
        return next((t for t in self._transforms if isinstance(t, kind)), None)

    def bake(self, kind=None) -> "Parameter":
        """Write the effective value into ``data`` and drop the transforms (all, or of ``kind``).

        Transforms before and including the last removed one are folded into ``data``;
        later ones stay attached.
        """
        idx = [i for i, t in enumerate(self._transforms) if kind is None or isinstance(t, kind)]
        if not idx:
            return self
        last = idx[-1]
        with no_grad():
            out = Tensor(self.data)
            for t in self._transforms[:last + 1]:
                out = t(out)
        self.data = np.ascontiguousarray(out.data.astype(self.data.dtype, copy=False))
        self._transforms = self._transforms[last + 1:]
        return self

    def train(self, mode: bool = True) -> "Parameter":
        """Set ``training`` on every attached transform, and on those attached later
        (``Module.train`` / ``eval`` call this for each parameter of the tree)."""
        self._training = bool(mode)
        for t in self._transforms:
            t.training = bool(mode)
        return self

    def after_step(self):
        """Run every transform's ``after_step`` (optimizers call this after updating ``data``)."""
        for t in self._transforms:
            t.after_step(self)

    def __repr__(self):
        extra = f", transforms={list(self._transforms)}" if self._transforms else ""
        return f"Parameter(shape={self.shape}, dtype={self.dtype}{extra})"


def _check_transform(op, t):
    if not isinstance(t, ParamTransform):
        raise TypeError(f"{op}: expected a ParamTransform, got {type(t).__name__}")


class Module:
    """Base class of layers and models.

    Assigning a ``Parameter`` or a ``Module`` to an attribute registers it; arrays
    registered with ``register_buffer`` (batch-norm statistics) are saved in the
    ``state_dict`` but not trained. Subclasses implement ``forward``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if isinstance(value, (Parameter, Module)):
            for table in (self._parameters, self._modules, self._buffers):
                table.pop(name, None)
            (self._parameters if isinstance(value, Parameter) else self._modules)[name] = value
        elif name in self._buffers:
            value = self._buffer_value(name, value)
        else:
            self._parameters.pop(name, None)
            self._modules.pop(name, None)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array: np.ndarray):
        """Register state that is saved but not trained (e.g. running means, a calibrated range).

        Assigning to ``name`` later (``self.qrange = new_range``) keeps it a buffer, so the
        new value is what ``state_dict`` saves.
        """
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"register_buffer: expected a non-empty name without dots, got {name!r}")
        for table in (self._parameters, self._modules):
            table.pop(name, None)
        self._buffers[name] = True
        object.__setattr__(self, name, self._buffer_value(name, array))

    def _buffer_value(self, name, value):
        if isinstance(value, Tensor):
            raise TypeError(f"{type(self).__name__}.{name} is a buffer: expected an array, got a "
                            f"{type(value).__name__} (buffers are saved, not trained)")
        arr = np.asarray(value) if value is not None else None
        if arr is None or arr.dtype.kind not in "biufcU":
            raise TypeError(f"{type(self).__name__}.{name} is a buffer: expected a numeric array, got "
                            f"{type(value).__name__}{'' if arr is None else f' of dtype {arr.dtype}'}")
        return arr

    # ----- calling ------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ----- traversal ----------------------------------------------------------------
    def named_children(self):
        """(name, module) for the direct sub-modules, in registration order."""
        return iter(self._modules.items())

    def children(self):
        """The direct sub-modules."""
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module (name ``prefix``) and every descendant, depth first."""
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        """This module and every descendant."""
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) for every parameter of the tree, e.g. ``'1.weight'``."""
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self):
        """List of every Parameter of the tree (what optimizers take)."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        """(dotted name, owning module, attribute) for every registered buffer."""
        for mname, m in self.named_modules():
            for bname in m._buffers:
                yield (f"{mname}.{bname}" if mname else bname), m, bname

    # ----- modes and gradients --------------------------------------------------------
    def train(self, mode: bool = True):
        """Set training mode on the tree: batch norm uses batch statistics, dropout is active,
        and parameter transforms (a stochastic ``Binarize``) train too."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
            for p in m._parameters.values():
                p.train(mode)
        return self

    def eval(self):
        """Set evaluation mode on the tree (running statistics, no dropout)."""
        return self.train(False)

    def zero_grad(self):
        """Forget every parameter's gradient (``grad = None``)."""
        for p in self.parameters():
            p.grad = None

    # ----- persistence --------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Flat name -> array mapping: parameters, buffers and transform states.

        A transform's state is stored under ``<param>.transform<i>.<ClassName>.<key>``
        so ``load_state_dict`` can rebuild it on a model that does not have it yet.
        """
        out = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = p.data.copy()
            for i, t in enumerate(p.transforms):
                for key, val in t.state().items():
                    out[f"{name}.transform{i}.{type(t).__name__}.{key}"] = np.array(val, copy=True)
        for name, m, bname in self.named_buffers():
            out[name] = np.array(getattr(m, bname), copy=True)
        return out

    def load_state_dict(self, state, strict: bool = True):
        """Copy arrays from ``state`` into this model (shapes must match).

        Everything is checked before anything is assigned, so a failed load leaves the
        model exactly as it was. Parameters take floating-point arrays only (float16/32/64,
        cast to the parameter's dtype); a buffer takes an array of its own kind (float for
        float, integer for integer, bool for bool). Transforms found in ``state`` replace
        the ones attached to each parameter.

        Raises:
            KeyError: with ``strict``, missing or unexpected keys.
            ValueError: a shape mismatch, a non-float weight, a buffer of another kind, or a
                transform that cannot be rebuilt; the message names the key.
        """
        self._apply_load(self._check_load(state, strict))
        return self

    def _check_load(self, state, strict: bool = True) -> list:
        """Validate ``state`` against this model; return the assignments ``_apply_load`` makes."""
        if not hasattr(state, "items"):
            raise TypeError(f"load_state_dict: expected a mapping of names to arrays, got {type(state).__name__}")
        state = dict(state)
        params = dict(self.named_parameters())
        buffers = {name: (m, b) for name, m, b in self.named_buffers()}
        transform_keys = {k for k in state if ".transform" in k and k.split(".transform")[0] in params}
        expected = set(params) | set(buffers)
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected - transform_keys)
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        plan = []
        for name, p in params.items():
            if name not in state:
                continue
            arr = np.asarray(state[name])
            if arr.dtype.kind != "f":
                raise ValueError(f"load_state_dict: {name} expected a floating-point array, got dtype {arr.dtype}")
            if arr.shape != p.data.shape:
                raise ValueError(f"load_state_dict: {name} expected shape {p.data.shape}, got {arr.shape}")
            probe = Parameter(np.ascontiguousarray(arr.astype(p.data.dtype)), requires_grad=False)
            try:
                probe.transforms = _rebuild_transforms(name, state)
            except ValueError as exc:
                raise ValueError(f"load_state_dict: {name}: {exc}") from None
            except (KeyError, TypeError, IndexError, AttributeError) as exc:
                raise ValueError(f"load_state_dict: the transforms of {name} cannot be rebuilt: "
                                 f"{type(exc).__name__}: {exc}") from None
            _check_transforms_fit(name, probe)
            plan.append((p, probe.data, probe.transforms))
        for name, (m, bname) in buffers.items():
            if name not in state:
                continue
            old = np.asarray(getattr(m, bname))
            arr = np.asarray(state[name])
            if arr.shape != old.shape:
                raise ValueError(f"load_state_dict: {name} expected shape {old.shape}, got {arr.shape}")
            kinds = {"f": "f", "i": "iu", "u": "iu", "b": "b"}.get(old.dtype.kind, old.dtype.kind)
            if arr.dtype.kind not in kinds:
                raise ValueError(f"load_state_dict: buffer {name} expected dtype {old.dtype} (or of its kind), "
                                 f"got {arr.dtype}")
            plan.append((m, bname, arr.astype(old.dtype).copy()))
        return plan

    @staticmethod
    def _apply_load(plan) -> None:
        for item in plan:
            if len(item) == 3 and isinstance(item[0], Parameter):
                p, data, transforms = item
                p.data, p.transforms = data, transforms
            else:
                m, bname, arr = item
                object.__setattr__(m, bname, arr)

    # ----- introspection ------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        if len(lines) == 1:
            return lines[0] + ")"
        return "\n".join(lines) + "\n)"

    def num_parameters(self) -> int:
        """Total number of parameter entries (masked entries included), plus the values an
        inference layer stores instead of Parameters (``InferenceModule.stored_values``)."""
        stored = sum(m.stored_values() for m in self.modules() if hasattr(m, "stored_values"))
        return int(sum(p.size for p in self.parameters()) + stored)

    def summary(self, input_shape, print_fn=print) -> list:
        """Run a zero batch of ``input_shape`` through the model and tabulate each leaf layer.

        Returns a list of dicts (layer, type, output shape, parameters) and prints a table.
        """
        from .tracing import trace_layers

        rows = []
        for name, m, _, out in trace_layers(self, np.zeros(input_shape, dtype=np.float32)):
            nparams = m.num_parameters()
            rows.append({"layer": name, "type": type(m).__name__,
                         "output_shape": tuple(out.shape), "parameters": nparams})
        width = max([len(r["layer"]) for r in rows] + [5])
        print_fn(f"{'layer':<{width}}  {'type':<16} {'output shape':<20} {'params':>10}")
        for r in rows:
            print_fn(f"{r['layer']:<{width}}  {r['type']:<16} {str(r['output_shape']):<20} {r['parameters']:>10,}")
        print_fn(f"total parameters: {self.num_parameters():,}")
        return rows


def is_weight_layer(module) -> bool:
    """True for a leaf module (no sub-modules) whose ``weight`` Parameter is 2-D (a linear
    layer, (out, in)) or 4-D (a convolution, (out, in, kh, kw)): the layers that pruning,
    quantization and the cost model act on. Batch-norm scales (1-D) are not weight layers."""
    w = module._parameters.get("weight") if isinstance(module, Module) else None
    return w is not None and not module._modules and w.ndim in (2, 4)


def weight_layers(model) -> list:
    """[(dotted name, module)] of every weight layer of ``model`` (``is_weight_layer``),
    in registration order -- the one place that decides which layers carry weights."""
    return [(name, m) for name, m in model.named_modules() if is_weight_layer(m)]


def _check_transforms_fit(name: str, p: "Parameter") -> None:
    """Raise unless ``p``'s transforms map its array to one of the same shape (a loaded mask
    of the wrong shape would otherwise fail only at the first forward pass)."""
    if not p.transforms:
        return
    try:
        with no_grad():
            shape = p.effective().shape
    except (ValueError, IndexError, TypeError) as exc:
        raise ValueError(f"load_state_dict: the transforms of {name} do not fit its shape {p.shape}: {exc}") from None
    if shape != p.shape:
        raise ValueError(f"load_state_dict: the transforms of {name} turn shape {p.shape} into {shape}")


def _rebuild_transforms(name: str, state: dict) -> list:
    found = {}
    prefix = f"{name}.transform"
    for key, val in state.items():
        if not key.startswith(prefix):
            continue
        parts = key[len(prefix):].split(".", 2)
        if len(parts) != 3 or not parts[0].isdigit():
            raise ValueError(f"load_state_dict: {key!r} is not a transform key (<param>.transform<i>.<Class>.<field>)")
        index, cls_name, field = parts
        found.setdefault(int(index), (cls_name, {}))[1][field] = val
    out = []
    for i in sorted(found):
        cls_name, fields = found[i]
        if cls_name not in TRANSFORMS:
            raise ValueError(f"load_state_dict: {name} carries an unknown transform {cls_name!r}; "
                             "import the technique that defines it (e.g. tinyapprox.prune, tinyapprox.quant "
                             "or tinyapprox.bnn) before loading: defining a ParamTransform registers it")
        out.append(TRANSFORMS[cls_name].from_state(fields))
    return out


class Sequential(Module):
    """Layers applied in order; indexable and iterable."""

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: item {i} must be a Module, got {type(layer).__name__}")
            setattr(self, str(i), layer)

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
