"""What a network costs: operation counts, bytes and energy (Horowitz 45 nm table).

Shared by pruning, quantization and binarization, so it counts things, not techniques:

* ``layer_costs(model, input_shape)`` runs one batch of zeros (or given data) through the
  model and lists, per leaf layer, its output shape, parameters, non-zero parameters,
  multiply-accumulates (MACs) and FLOPs, dense and counting non-zero weights only.
* ``model_bytes(model, weight_bits=32, sparse=...)`` is the storage of the parameters,
  with CSR indices counted when a weight is stored sparse.
* ``energy(counts)`` and ``inference_energy(model, input_shape, ...)`` price the counts
  with a per-operation energy table and return the total in picojoules, a breakdown and
  the assumptions as a printable string.

Conventions (the lecture's "metrics ambiguity"): one multiply-add is 1 MAC = 2 FLOPs.
Per layer type, for the batch given by ``input_shape`` (pass batch 1 for per-sample):

* Linear, weight (out, in), input (N, in):      MACs = N * in * out
* Conv2d, weight (O, C, kh, kw), output (N, O, OH, OW):  MACs = N * C * kh * kw * O * OH * OW
  (so FLOPs = 2*C*kh*kw*O*OH*OW per sample)
* "non-zero" MACs replace in*out (or C*kh*kw*O) by the number of non-zero effective
  weights: a pruned weight costs nothing, a kept one 1 MAC per output position.
* Bias additions are not counted (N*out adds, negligible next to the MACs).
* Pooling, activations and batch norm have 0 MACs/FLOPs; their element operations are
  reported separately as ``other_ops``: max/avg pool kh*kw per output element, an
  activation 1 per element, batch norm 2 per element (a scale and a shift, which at
  inference fold into the previous layer). Flatten and Dropout cost nothing.

Layers are recognised by duck typing, so quantized and binary layers defined elsewhere
are counted too: a leaf module with a 2-D ``weight`` parameter is counted like Linear,
one with a 4-D weight like Conv2d (groups and dilation are not supported); otherwise the
class name decides (``*Pool*``, ``*BatchNorm*``, activations).

Lowered models (``prune.to_sparse``, ``quant.convert``, ``bnn.pack``) are made of
``nn.InferenceModule`` layers that hold no Parameters; each reports its own counts
(``inference_cost``: MACs, the operations one MAC costs) and storage (``stored_bytes``),
so the same three functions price them: ``model_bytes`` adds their stored bytes,
``inference_energy`` prices each of their MACs with the layer's own operations and their
weights at their stored size, and the activations they exchange at the width of the
arrays (int8 codes 8 bits, packed +-1 activations 1 bit).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .nn.module import weight_layers
from .nn.tracing import effective_weight, trace_layers  # noqa: F401  (cost.trace_layers keeps working)
from .tensor import Tensor, no_grad

__all__ = ["ENERGY_PJ_45NM", "ENERGY_SOURCE", "BINARY_ENERGIES_PJ", "EnergyReport", "energy", "inference_energy",
           "layer_costs", "model_bytes", "param_bytes", "format_layer_costs",
           "HOROWITZ_45NM", "HOROWITZ_SOURCE", "format_horowitz_table", "FLOP_CONVENTIONS", "flop_counts",
           "format_flop_counts", "data_movement"]

# ------------------------------------------------------------------ energy table
ENERGY_PJ_45NM = {
    "int8_add": 0.03, "int16_add": 0.05, "int32_add": 0.1,
    "float16_add": 0.4, "float32_add": 0.9,
    "int8_mult": 0.2, "int32_mult": 3.1,
    "float16_mult": 1.1, "float32_mult": 3.7,
    "reg32": 1.0, "sram32": 5.0, "dram32": 640.0,
}
ENERGY_SOURCE = ("M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, "
                 "45 nm, 0.9 V; 32-bit rows (int add 0.1, float add 0.9, register file 1, int mult 3.1, "
                 "float mult 3.7, SRAM 5, DRAM 640 pJ) as tabulated by Han et al., 'Learning both weights "
                 "and connections for efficient neural networks', NIPS 2015, Table 1; 8/16-bit rows from "
                 "Horowitz's table. Memory entries are per 32-bit access.")

# 1-bit operations are not in Horowitz's table; priced as 1/8 of an 8-bit add (0.03 pJ).
BINARY_ENERGIES_PJ = {"xnor1": ENERGY_PJ_45NM["int8_add"] / 8, "popcount1": ENERGY_PJ_45NM["int8_add"] / 8}

# The whole table as Dally shows it: (operation, energy pJ, area um^2 or None when not given).
# Keys match ENERGY_PJ_45NM, whose energies must agree (checked by the tests). The table has
# no 16-bit integer multiply and no register-file row; we do not invent them.
HOROWITZ_45NM = {
    "int8_add": ("8-bit int add", 0.03, 36.0),
    "int16_add": ("16-bit int add", 0.05, 67.0),
    "int32_add": ("32-bit int add", 0.1, 137.0),
    "float16_add": ("16-bit float add", 0.4, 1360.0),
    "float32_add": ("32-bit float add", 0.9, 4184.0),
    "int8_mult": ("8-bit int mult", 0.2, 282.0),
    "int32_mult": ("32-bit int mult", 3.1, 3495.0),
    "float16_mult": ("16-bit float mult", 1.1, 1640.0),
    "float32_mult": ("32-bit float mult", 3.7, 7700.0),
    "sram32": ("32-bit SRAM read (8 KB)", 5.0, None),
    "dram32": ("32-bit DRAM read", 640.0, None),
}
HOROWITZ_SOURCE = ("M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, 45 nm, "
                   "0.9 V; energy and area per operation as W. Dally tabulates it in his talks (the 32-bit energy "
                   "rows also in Han et al., NIPS 2015, Table 1). Area is the arithmetic unit's; the memory "
                   "rows have no area.")

_ACTIVATIONS = ("relu", "sigmoid", "tanh", "hardtanh", "sign", "softmax", "leakyrelu", "gelu", "binary")


def _kind(module, weight) -> str:
    if weight is not None and weight.ndim == 2:
        return "linear"
    if weight is not None and weight.ndim == 4:
        return "conv"
    name = type(module).__name__.lower()
    if "pool" in name:
        return "pool"
    if "batchnorm" in name:
        return "batchnorm"
    if any(a in name for a in _ACTIVATIONS):
        return "activation"
    return "other"


def _pool_window(module) -> int:
    k = getattr(module, "kernel_size", None)
    if k is None:
        return 1
    k = (k, k) if np.ndim(k) == 0 else tuple(k)
    return int(np.prod(k))


def layer_costs(model, input_shape=None, data=None) -> list:
    """Per-leaf-layer counts for one forward pass.

    Args:
        model: a ``Module``.
        input_shape: shape of the input batch, e.g. (1, 1, 28, 28) or (1, 784); a batch of
            zeros is run through the model. Counts are for that whole batch.
        data: alternatively a real input batch (ndarray or Tensor); then ``input_shape``
            is ignored.

    Returns:
        list of dicts, one per leaf call: ``name``, ``type`` (class name), ``kind``
        ("linear", "conv", "pool", "batchnorm", "activation", "other"), ``input_shape``,
        ``output_shape``, ``params`` (all parameters of the layer), ``nonzero_params``
        (non-zero entries of the effective parameters), ``weights`` / ``nonzero_weights``
        (the weight tensor only), ``macs``, ``flops`` (= 2*macs), ``nonzero_macs``,
        ``nonzero_flops``, ``other_ops``; and ``lowered`` (True for an ``nn.InferenceModule``,
        whose row also has ``executed_macs``, ``mult_op``, ``add_op``, ``bytes`` and the
        activation bits it reads and writes, ``act_in_bits`` / ``act_out_bits``).

    Raises:
        ValueError: neither input_shape nor data given.
    """
    if data is None:
        if input_shape is None:
            raise ValueError("layer_costs: expected input_shape (e.g. (1, 784)) or a data batch, got neither")
        data = np.zeros(tuple(input_shape), dtype=np.float32)
    rows = []
    for name, mod, x, y in trace_layers(model, data):
        if hasattr(mod, "inference_cost"):
            rows.append(_lowered_row(name, mod, x, y))
            continue
        w = effective_weight(mod)
        kind = _kind(mod, w)
        params = [p for p in mod._parameters.values()]
        n_params = int(sum(p.size for p in params))
        nz_params = 0
        with no_grad():
            for p in params:
                eff = p.effective() if hasattr(p, "effective") else p
                nz_params += int(np.count_nonzero(eff.data))
        macs = nz_macs = other = 0
        if kind == "linear":
            batch = int(np.prod(y.shape[:-1]))
            macs, nz_macs = batch * w.size, batch * int(np.count_nonzero(w))
        elif kind == "conv":
            positions = int(y.shape[0] * y.shape[2] * y.shape[3])
            macs, nz_macs = positions * w.size, positions * int(np.count_nonzero(w))
        elif kind == "pool":
            other = int(y.size) * _pool_window(mod)
        elif kind == "batchnorm":
            other = 2 * int(y.size)
        elif kind == "activation":
            other = int(y.size)
        rows.append({
            "name": name, "type": type(mod).__name__, "kind": kind,
            "input_shape": None if x is None else tuple(x.shape), "output_shape": tuple(y.shape),
            "params": n_params, "nonzero_params": nz_params,
            "weights": 0 if w is None else int(w.size),
            "nonzero_weights": 0 if w is None else int(np.count_nonzero(w)),
            "macs": int(macs), "flops": 2 * int(macs), "nonzero_macs": int(nz_macs),
            "nonzero_flops": 2 * int(nz_macs), "other_ops": int(other), "lowered": False,
        })
    return rows


def _lowered_row(name, mod, x, y) -> dict:
    """The ``layer_costs`` row of an ``nn.InferenceModule`` call, from its own ``inference_cost``."""
    c = mod.inference_cost(x, y)
    params = mod.num_parameters()
    other = int(y.size) * _pool_window(mod) if c["kind"] == "pool" else 0
    return {"name": name, "type": type(mod).__name__, "kind": c["kind"],
            "input_shape": None if x is None else tuple(x.shape), "output_shape": tuple(y.shape),
            "params": params, "nonzero_params": params, "weights": c["weights"],
            "nonzero_weights": c["nonzero_weights"], "macs": int(c["macs"]), "flops": 2 * int(c["macs"]),
            "nonzero_macs": int(c["nonzero_macs"]), "nonzero_flops": 2 * int(c["nonzero_macs"]),
            "other_ops": other, "lowered": True, "executed_macs": int(c["executed_macs"]),
            "mult_op": c["mult_op"], "add_op": c["add_op"], "bytes": int(mod.stored_bytes()),
            "act_in_bits": 0 if x is None else 8 * int(x.nbytes), "act_out_bits": 8 * int(y.nbytes)}


def format_layer_costs(rows) -> str:
    """A fixed-width text table of ``layer_costs`` rows, with the FLOP convention in the header."""
    lines = ["FLOPs: one multiply-add = 2 FLOPs; Linear 2*in*out per sample, Conv2d 2*C*kh*kw*O*OH*OW",
             f"{'layer':<14}{'type':<13}{'output':<20}{'params':>10}{'nonzero':>10}{'MACs':>13}{'FLOPs':>13}"
             f"{'nz FLOPs':>13}"]
    for r in rows:
        lines.append(f"{r['name']:<14}{r['type']:<13}{str(r['output_shape']):<20}{r['params']:>10,}"
                     f"{r['nonzero_params']:>10,}{r['macs']:>13,}{r['flops']:>13,}{r['nonzero_flops']:>13,}")
    tot = {k: sum(r[k] for r in rows) for k in ("params", "nonzero_params", "macs", "flops", "nonzero_flops")}
    lines.append(f"{'total':<47}{tot['params']:>10,}{tot['nonzero_params']:>10,}{tot['macs']:>13,}"
                 f"{tot['flops']:>13,}{tot['nonzero_flops']:>13,}")
    return "\n".join(lines)


FLOP_CONVENTIONS = {
    "macs": "multiply-accumulates, every layer (1 MAC = 1 multiply + 1 add)",
    "flops": "FLOPs = 2 x MACs, every layer (this project's convention)",
    "conv_flops": "FLOPs of the convolutions only (fully connected layers left out)",
    "nonzero_flops": "FLOPs skipping zero weights (sparse-aware: 2 per non-zero weight per position)",
    "all_ops": "FLOPs plus pooling, activation and batch-norm element operations",
}


def flop_counts(model, input_shape=None, data=None) -> dict:
    """One forward pass counted the ways papers count it, side by side.

    The same network can be quoted as X MACs, 2X FLOPs, only its convolutions, or only its
    non-zero weights (the lecture's AlexNet at 724 M MACs, 1.5 GFLOPs, ...); the numbers
    differ by factors of 2 or more while describing one computation. Keys and meanings are
    in ``FLOP_CONVENTIONS``; every count comes from ``layer_costs`` (same arguments: an
    ``input_shape`` such as (1, 1, 28, 28), counts for that whole batch, or ``data``).

    Returns ``{"macs", "flops", "conv_flops", "nonzero_flops", "all_ops"}`` (ints).
    Raises ValueError like ``layer_costs`` when neither input_shape nor data is given.
    """
    rows = layer_costs(model, input_shape, data)
    macs = sum(r["macs"] for r in rows)
    return {
        "macs": macs,
        "flops": 2 * macs,
        "conv_flops": sum(r["flops"] for r in rows if r["kind"] == "conv"),
        "nonzero_flops": sum(r["nonzero_flops"] for r in rows),
        "all_ops": 2 * macs + sum(r["other_ops"] for r in rows),
    }


def format_flop_counts(counts: dict, label: str = "model") -> str:
    """A text table of ``flop_counts`` results: one row per convention, millions and ratio to MACs."""
    lines = [f"{label}: one forward pass counted five ways"]
    for key, what in FLOP_CONVENTIONS.items():
        v = counts[key]
        ratio = v / counts["macs"] if counts["macs"] else float("nan")
        lines.append(f"  {key:<14}{v / 1e6:>10.3f} M  ({ratio:5.2f} x MACs)  {what}")
    return "\n".join(lines)


# ------------------------------------------------------------------ bytes
def _weight_names(model) -> set:
    """Dotted names of the weights of ``nn.weight_layers(model)`` (the one weight-layer rule)."""
    return {f"{name}.weight" if name else "weight" for name, _ in weight_layers(model)}


def _check_bits(op: str, **widths) -> None:
    """Raise ValueError unless every given bit width is an int >= 1 (None is skipped)."""
    for name, v in widths.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise ValueError(f"{op}: expected {name} to be an int >= 1, got {v!r}")


def param_bytes(model, weight_bits: int = 32, other_bits: int = 32, sparse="auto", index_bits: int = 32,
                indptr_bits: int = 64) -> dict:
    """Storage of each parameter in bytes: ``{name: {"bytes", "format", "nnz", "size"}}``.

    Weights (of the weight layers, ``nn.weight_layers``) take ``weight_bits`` per value;
    every other parameter (biases, batch-norm scales) ``other_bits``. A weight stored
    sparse is CSR of its (rows, rest) reshape: nnz * (weight_bits + index_bits) bits plus
    (rows + 1) * indptr_bits bits (int32 column indices and int64 row pointers by
    default, as in ``sparse.CSR``). ``sparse``: False (all dense), True (every weight
    CSR) or "auto" (CSR when that is smaller than dense). Values use the *effective*
    weight, so masks count. Bit totals are rounded up to whole bytes per tensor.

    A lowered model's ``nn.InferenceModule`` layers add one entry each, named after the
    layer, with the bytes they store (``format`` "lowered"; the bit-width arguments do not
    apply to them: they store what their format needs).

    Raises ValueError for a bad ``sparse`` or a bit width that is not an int >= 1.
    """
    if sparse not in (True, False, "auto"):
        raise ValueError(f"param_bytes: expected sparse True, False or 'auto', got {sparse!r}")
    _check_bits("param_bytes", weight_bits=weight_bits, other_bits=other_bits, index_bits=index_bits,
                indptr_bits=indptr_bits)
    out, weights = {}, _weight_names(model)
    for name, p in model.named_parameters():
        with no_grad():
            eff = p.effective() if hasattr(p, "effective") else p
        arr = np.asarray(eff.data)
        nnz = int(np.count_nonzero(arr))
        if name in weights:
            dense_bits = arr.size * weight_bits
            csr_bits = nnz * (weight_bits + index_bits) + (arr.shape[0] + 1) * indptr_bits
            use_csr = sparse is True or (sparse == "auto" and csr_bits < dense_bits)
            bits, fmt = (csr_bits, "csr") if use_csr else (dense_bits, "dense")
        else:
            bits, fmt = arr.size * other_bits, "dense"
        out[name] = {"bytes": math.ceil(bits / 8), "format": fmt, "nnz": nnz, "size": int(arr.size)}
    for name, m in model.named_modules():
        if hasattr(m, "stored_bytes") and m.stored_values():
            n = int(m.stored_values())
            out[name] = {"bytes": int(m.stored_bytes()), "format": "lowered", "nnz": n, "size": n}
    return out


def model_bytes(model, weight_bits: int = 32, other_bits: int = 32, sparse=False, index_bits: int = 32,
                indptr_bits: int = 64) -> int:
    """Total parameter storage in bytes (see ``param_bytes`` for the counting rules).

    ``model_bytes(m)`` is the dense float32 size; ``model_bytes(m, sparse="auto")`` the size
    with pruned weights in CSR; ``model_bytes(m, weight_bits=8)`` an 8-bit model (add
    per-tensor scales yourself if your format stores them). For a lowered model
    (``prune.to_sparse``, ``quant.convert``, ``bnn.pack``) it is what the model stores:
    ``model_bytes(quant.convert(q))``, no arguments needed.
    """
    table = param_bytes(model, weight_bits, other_bits, sparse, index_bits, indptr_bits)
    return int(sum(v["bytes"] for v in table.values()))


# ------------------------------------------------------------------ energy
@dataclass
class EnergyReport:
    """Total energy in picojoules, its breakdown by operation, the counts and assumptions."""

    total_pj: float
    breakdown_pj: dict
    counts: dict
    assumptions: str = ""
    energies_pj: dict = field(default_factory=dict)

    @property
    def total_uj(self) -> float:
        return self.total_pj * 1e-6

    def __str__(self):
        lines = [f"energy: {self.total_pj:,.1f} pJ ({self.total_uj:.4f} uJ)"]
        for key, pj in sorted(self.breakdown_pj.items(), key=lambda kv: -kv[1]):
            share = pj / self.total_pj if self.total_pj else 0.0
            lines.append(f"  {key:<14}{self.counts[key]:>16,.1f} x {self.energies_pj[key]:>8} pJ = "
                         f"{pj:>16,.1f} pJ ({share:6.1%})")
        if self.assumptions:
            lines.append(self.assumptions)
        return "\n".join(lines)


def energy(counts: dict, energies: dict | None = None, assumptions: str = "") -> EnergyReport:
    """Price operation counts: sum over keys of ``counts[key] * energies[key]``.

    Args:
        counts: ``{op: count}``, keys from ``ENERGY_PJ_45NM`` (e.g. ``"float32_mult"``,
            ``"dram32"`` = one 32-bit DRAM access) or your own.
        energies: pJ per operation that extend or override the Horowitz table, e.g.
            ``{"xnor1": 0.005, "popcount1": 0.01}`` for binary networks.

    Raises:
        ValueError: a count key with no energy, or a negative or NaN count.
    """
    table = dict(ENERGY_PJ_45NM)
    table.update(energies or {})
    missing = sorted(k for k in counts if k not in table)
    if missing:
        raise ValueError(f"energy: no energy known for {missing}; known operations {sorted(table)}; "
                         "pass energies={op: pJ} for custom operations")
    bad = {k: v for k, v in counts.items() if not v >= 0}
    if bad:
        raise ValueError(f"energy: expected non-negative counts (not NaN), got {bad}")
    breakdown = {k: float(v) * table[k] for k, v in counts.items()}
    return EnergyReport(float(sum(breakdown.values())), breakdown, dict(counts), assumptions,
                        {k: table[k] for k in counts})


def inference_energy(model, input_shape, weight_bits: int = 32, act_bits: int = 32, arithmetic: str = "float",
                     weight_memory: str = "DRAM", act_memory: str = "SRAM", sparse: bool = True,
                     index_bits: int = 32, acc_bits: int | None = None, mult_op: str | None = None,
                     add_op: str | None = None, energies: dict | None = None) -> EnergyReport:
    """Estimated energy of one forward pass of a ``input_shape`` batch.

    Model (printed with the result):
      * arithmetic: one multiply and one add per MAC; with ``sparse`` only non-zero
        weights are multiplied. The multiply is ``"{arithmetic}{max(weight_bits,
        act_bits)}_mult"``, the add ``"{arithmetic}{acc_bits}_add"`` (``acc_bits`` defaults
        to 32 for int, to the multiply width for float) - or the keys you pass as
        ``mult_op`` / ``add_op`` (binary nets: ``mult_op="xnor1", add_op="popcount1"``
        with their pJ in ``energies``). Pooling/activation/bias ops are not priced.
      * memory: every parameter is fetched once per forward from ``weight_memory``
        (weights at ``weight_bits``, plus ``index_bits`` per kept weight when stored sparse,
        i.e. when ``sparse`` and the weight has zeros; other parameters at 32 bits);
        every layer input is read once and every output written once in ``act_memory``
        at ``act_bits``. Memory energy scales linearly with bits (table rows are per
        32-bit access). Register-file traffic is not counted.

    Returns an ``EnergyReport`` (``.total_pj``, ``.breakdown_pj``, ``.assumptions``).
    Raises ValueError for an unknown memory or arithmetic, a bit width that is not an
    int >= 1, or operations missing from the table (pass them in ``energies``).
    """
    mems = {"dram": "dram32", "sram": "sram32", "reg": "reg32"}
    if weight_memory.lower() not in mems or act_memory.lower() not in mems:
        raise ValueError(f"inference_energy: expected memories among {sorted(mems)} (any case), "
                         f"got weight_memory={weight_memory!r}, act_memory={act_memory!r}")
    if arithmetic not in ("float", "int") and (mult_op is None or add_op is None):
        raise ValueError(f"inference_energy: expected arithmetic 'float' or 'int' (or explicit mult_op and "
                         f"add_op), got {arithmetic!r}")
    _check_bits("inference_energy", weight_bits=weight_bits, act_bits=act_bits, index_bits=index_bits,
                acc_bits=acc_bits)
    mult_bits = max(weight_bits, act_bits)
    if acc_bits is None:
        acc_bits = 32 if arithmetic == "int" else mult_bits
    mult_op = mult_op or f"{arithmetic}{mult_bits}_mult"
    add_op = add_op or f"{arithmetic}{acc_bits}_add"
    rows = layer_costs(model, input_shape)
    float_rows = [r for r in rows if not r["lowered"]]
    low_rows = [r for r in rows if r["lowered"]]
    macs = sum(r["nonzero_macs"] if sparse else r["macs"] for r in float_rows)
    wkey, akey = mems[weight_memory.lower()], mems[act_memory.lower()]
    weight_words, weights = 0.0, _weight_names(model)
    for name, info in param_bytes(model, sparse=False).items():
        arr_is_weight = name in weights
        if info["format"] == "lowered":
            weight_words += info["bytes"] * 8 / 32
        elif arr_is_weight and sparse and info["nnz"] < info["size"]:
            weight_words += info["nnz"] * (weight_bits + index_bits) / 32
        elif arr_is_weight:
            weight_words += info["size"] * weight_bits / 32
        else:
            weight_words += info["size"]
    act_words = sum((0 if r["input_shape"] is None else int(np.prod(r["input_shape"]))) + int(np.prod(r["output_shape"]))
                    for r in float_rows if r["kind"] in ("linear", "conv")) * act_bits / 32
    act_words += sum(r["act_in_bits"] + r["act_out_bits"] for r in low_rows if r["kind"] in ("linear", "conv")) / 32
    counts = {}
    if float_rows and macs:
        counts = {mult_op: macs, add_op: macs}
    low_macs = 0
    for r in low_rows:
        for op in (r["mult_op"], r["add_op"]):
            if op is not None and r["executed_macs"]:
                counts[op] = counts.get(op, 0) + r["executed_macs"]
        low_macs += r["executed_macs"]
    counts[wkey] = counts.get(wkey, 0) + weight_words
    counts[akey] = counts.get(akey, 0) + act_words
    lowered = ""
    if low_rows:
        ops = sorted({f"{r['type']}: {r['mult_op'] or '-'} + {r['add_op']}" for r in low_rows if r["executed_macs"]})
        lowered = (f" Lowered layers: {low_macs:,} executed MACs priced with each layer's own operations "
                   f"({'; '.join(ops)}), weights at their stored size, activations at the width they are "
                   f"exchanged in (int8 codes 8 bits, packed +-1 activations 1 bit); xnor1/popcount1 = 1/8 of an "
                   f"int8 add (not in the table).")
    if any(r["kind"] in ("linear", "conv") for r in float_rows) or not low_rows:
        arith = (f"{macs:,} MACs ({'non-zero weights only' if sparse else 'dense'}), each = 1 {mult_op} + 1 "
                 f"{add_op}; parameters fetched once from {weight_memory.upper()} ({weight_bits}-bit weights"
                 f"{f' + {index_bits}-bit indices when sparse' if sparse else ''}); layer inputs read and outputs "
                 f"written once in {act_memory.upper()} at {act_bits} bits; ")
    else:
        arith = (f"parameters fetched once from {weight_memory.upper()}, layer inputs read and outputs written "
                 f"once in {act_memory.upper()}; ")
    assumptions = (f"assumptions: input {tuple(input_shape)}; {arith}memory energy linear in bits; registers, "
                   f"pooling, activations and bias adds not counted.{lowered}\nsource: {ENERGY_SOURCE}")
    table = dict(BINARY_ENERGIES_PJ)
    table.update(energies or {})
    return energy(counts, table, assumptions)


def format_horowitz_table() -> str:
    """Dally's cost-of-operations table, printed whole: energy (pJ), area (um^2) and each
    operation's energy relative to a 32-bit float multiply-add, with the source."""
    fma = HOROWITZ_45NM["float32_mult"][1] + HOROWITZ_45NM["float32_add"][1]
    lines = [f"{'operation':<26}{'energy pJ':>10}{'area um^2':>11}{'x fp32 MAC':>12}"]
    for label, pj, area in HOROWITZ_45NM.values():
        a = "n/a" if area is None else f"{area:,.0f}"
        lines.append(f"{label:<26}{pj:>10g}{a:>11}{pj / fma:>12.3f}")
    lines.append(f"source: {HOROWITZ_SOURCE}")
    return "\n".join(lines)


def data_movement(model, input_shape, weight_bits: int = 32, sparse=False, mult_op: str = "float32_mult",
                  add_op: str = "float32_add") -> dict:
    """Han's data-movement point for one network: fetching the weights from DRAM against the MACs.

    Every parameter is read once per forward pass of an ``input_shape`` batch, in 32-bit
    DRAM words: its bytes (``param_bytes(model, weight_bits, sparse=sparse)``, so CSR
    indices count when ``sparse``) / 4 reads at ``dram32`` pJ each, or ``sram32`` pJ if the
    model fitted on chip. The arithmetic is one ``mult_op`` + one ``add_op`` per MAC
    (non-zero weights only when ``sparse``). Activations are not counted here.

    Returns ``{"params", "weight_bytes", "dram_reads", "macs", "macs_per_param",
    "dram_pj", "sram_pj", "mac_pj", "dram_over_mac"}``: ``macs_per_param`` is the weight
    reuse (about the batch size for an MLP, hundreds of positions for a convolution), and
    ``dram_over_mac`` how many times more energy the weight fetch costs than the arithmetic.
    Raises ValueError for a bad bit width or ``sparse``, or an unknown operation.
    """
    table = param_bytes(model, weight_bits=weight_bits, sparse=sparse)
    weight_bytes = sum(v["bytes"] for v in table.values())
    params = sum(v["size"] for v in table.values())
    rows = layer_costs(model, input_shape)
    macs = sum(r["nonzero_macs"] if sparse else r["macs"] for r in rows)
    reads = weight_bytes / 4
    dram = energy({"dram32": reads}).total_pj
    sram = energy({"sram32": reads}).total_pj
    mac = energy({mult_op: macs, add_op: macs}).total_pj
    return {"params": int(params), "weight_bytes": int(weight_bytes), "dram_reads": reads, "macs": int(macs),
            "macs_per_param": macs / params if params else float("nan"), "dram_pj": dram, "sram_pj": sram,
            "mac_pj": mac, "dram_over_mac": dram / mac if mac else float("inf")}
