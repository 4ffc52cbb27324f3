"""The shape every lowered model shares: eval-only layers that each make one fused kernel call.

``prune.to_sparse``, ``quant.convert`` and ``bnn.pack`` each turn a trained model into an
``nn.Module`` built from ``InferenceModule`` layers (CSR, int8, bit-packed). They take a
Tensor or an ndarray like any layer and return a Tensor without a graph, so
``train.predict`` / ``train.evaluate``, ``Module.summary`` and the ``cost`` functions run
them like the float model they came from.

What the float layers tell ``cost`` through their ``Parameter`` s, an inference layer tells
through ``inference_cost(x, y)``: given the input and output arrays of one call, a dict

* ``kind``: "linear", "conv", "pool", "activation" or "other";
* ``params``: stored values (weights, biases, scales, thresholds) -- what ``summary`` counts;
* ``weights`` / ``nonzero_weights``: entries of the dense weight it stands for, and the non-zero ones;
* ``macs`` / ``nonzero_macs``: multiply-accumulates of this call, dense and non-zero-only;
* ``bytes``: storage in bytes as the layer keeps it (values, indices, scales, thresholds);
* ``mult_op`` / ``add_op``: the keys of ``cost.ENERGY_PJ_45NM`` one MAC is priced with
  (``None`` for a layer without MACs);
* ``act_bits``: bits per value of the activations it reads and writes.
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

    def inference_cost(self, x, y) -> dict:
        """Counts for one call with input ``x`` and output ``y`` (ndarrays); see the module docstring."""
        return {"kind": "other", "params": 0, "weights": 0, "nonzero_weights": 0, "macs": 0,
                "nonzero_macs": 0, "bytes": 0, "mult_op": None, "add_op": None, "act_bits": 32}
