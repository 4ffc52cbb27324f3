"""The shape every lowered model shares: eval-only layers that each make one fused kernel call.

``prune.to_sparse``, ``quant.convert`` and ``bnn.pack`` each turn a trained model into an
``nn.Module`` built from ``InferenceModule`` layers (CSR, int8, bit-packed). They take a
Tensor or an ndarray like any layer and return a Tensor without a graph, so
``train.predict`` / ``train.evaluate``, ``Module.summary`` and the ``cost`` functions run
them like the float model they came from.

What the float layers tell ``summary`` and ``cost`` through their ``Parameter`` s, an
inference layer tells through two methods: ``stored_values()``, the number of values it
keeps (weights, biases, scales, thresholds; counted by ``Module.num_parameters``), and
``inference_cost(x, y)``: given the input and output arrays of one call, a dict

* ``kind``: "linear", "conv", "pool", "activation" or "other";
* ``weights`` / ``nonzero_weights``: entries of the dense weight it stands for, and the non-zero ones;
* ``macs`` / ``nonzero_macs``: multiply-accumulates of this call, dense and non-zero-only;
* ``executed_macs``: the ones the kernel actually performs (non-zero only for CSR, all for
  a dense int8 or binary product);
* ``mult_op`` / ``add_op``: the keys of ``cost.ENERGY_PJ_45NM`` (or of the extra energies
  ``cost.inference_energy`` knows, such as ``"xnor1"``) one executed MAC is priced with;
  ``None`` for no such operation.

and ``stored_bytes()``, its storage as it keeps it (values, indices, scales, thresholds).
The activations' traffic is read off the arrays themselves: int8 codes are 8 bits, packed
+-1 activations 1 bit per value (64 per uint64 word), floats 32.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .module import Module

__all__ = ["InferenceModule", "as_array"]


def as_array(x) -> np.ndarray:
    """The ndarray behind a Tensor, or ``np.asarray(x)`` (dtype kept)."""
    return x.data if isinstance(x, Tensor) else np.asarray(x)


class InferenceModule(Module):
    """Base of eval-only lowered layers (see the module docstring for ``inference_cost``).

    Subclasses keep their arrays as plain attributes (no ``Parameter`` s: nothing here is
    trained) and implement ``forward`` and ``inference_cost``.
    """

    def __init__(self):
        super().__init__()
        self.training = False

    def stored_values(self) -> int:
        """Number of values this layer stores (what ``Module.num_parameters`` counts for it)."""
        return 0

    def stored_bytes(self) -> int:
        """Bytes this layer stores (values, indices, scales, thresholds)."""
        return 0

    def inference_cost(self, x, y) -> dict:
        """Counts for one call with input ``x`` and output ``y`` (ndarrays); see the module docstring."""
        return {"kind": "other", "weights": 0, "nonzero_weights": 0, "macs": 0, "nonzero_macs": 0,
                "executed_macs": 0, "mult_op": None, "add_op": None}
