"""Quantizing a whole model: post-training quantization (PTQ), fine-tuning / QAT, bit-width
search, per-layer sensitivity, export and honest size accounting.

The pieces, in the order a quantization experiment uses them:

* ``prepare(model, scheme, weight_bits, act_bits)`` copies the model, attaches a
  ``WeightQuant`` transform to each weight (and a quantizer to each bias) and inserts an
  ``ActQuant`` module *in front of* every weight layer, so every Linear / Conv2d reads
  quantized inputs (the first one: the quantized image).
* ``calibrate(qmodel, images)`` runs a few hundred images through the model to record the
  activation ranges, freezes them, and sets the biases' int32 grids (``finalize``).
* ``ptq(...)`` is the two together. ``finetune(...)`` / ``qat(...)`` train the quantized
  model: the optimizer updates the full-precision shadow weights, the forward pass sees
  quantized ones, gradients pass the quantizers straight through.
* ``search_bitwidths`` is Ristretto's search (conv weights, fc weights, activations
  separately: 16 -> 8 -> 4 -> 2 -> 1 bits, keep the smallest within the margin);
  ``sensitivity`` quantizes one layer at a time.
* ``model_size`` counts bytes (codes packed at their bit width, plus scales, zero points
  and exponents); ``export_npz`` writes only the integer codes and their formats.

Bias formats: for ``int8``/``affine`` and ``pow2`` the bias is an int32 on the
accumulator's grid (``input_scale * weight_scale``), as integer hardware adds it; for
``dfp``, ``minifloat`` and ``fp16`` it uses the weights' format and bit width with its
own range (Ristretto's choice).
"""
from __future__ import annotations

import copy
import json
import math

import numpy as np

from .. import nn
from ..cost import model_bytes
from ..data import images_to_float  # noqa: F401  (re-exported: quant.pipeline.images_to_float)
from ..nn import weight_layers  # noqa: F401  (re-exported: quant.weight_layers)
from ..tensor import Tensor, no_grad
from .fake import SCHEMES, AccumulatorBias, ActQuant, WeightQuant
from .formats import Affine, DynamicFixedPoint

__all__ = ["weight_layers", "prepare", "calibrate", "finalize", "ptq", "finetune", "qat", "act_quants",
           "layer_pairs", "evaluate", "search_bitwidths", "sensitivity", "model_size", "export_npz", "load_npz",
           "images_to_float"]

_ACC_BIAS = ("int8", "affine", "pow2")


def act_quants(model):
    """[(name, ActQuant)] in model order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ActQuant)]


def _leaves(model):
    return [m for _, m in model.named_modules() if not m._modules]


def layer_pairs(model):
    """[(ActQuant or None, weight layer)]: each weight layer with the quantizer just in front of it."""
    leaves = _leaves(model)
    pairs = []
    for i, m in enumerate(leaves):
        if nn.is_weight_layer(m):
            prev = leaves[i - 1] if i > 0 else None
            pairs.append((prev if isinstance(prev, ActQuant) else None, m))
    return pairs


def _bits_for(spec, name, module):
    if spec is None or isinstance(spec, (int, np.integer)):
        return spec
    if callable(spec):
        return spec(name, module)
    return spec.get(name)


def _insert(seq, targets, make):
    """A copy of Sequential ``seq`` with ``make(layer)`` inserted before each layer in ``targets``."""
    layers = []
    for child in seq:
        if isinstance(child, nn.Sequential):
            child = _insert(child, targets, make)
        if id(child) in targets:
            layers.append(make(child))
        layers.append(child)
    return nn.Sequential(*layers)


def prepare(model, scheme="int8", weight_bits=8, act_bits=8, per_channel=False, observer="minmax", rounding="nearest",
            seed=None, quantize_bias=True, act_layers=None, weight_options=None, act_options=None, **options):
    """A copy of ``model`` with fake quantizers attached (ready for ``calibrate``).

    Args:
        model: an ``nn.Sequential`` (possibly nested); it is not modified.
        scheme: ``"fp16" | "int8" | "affine" | "dfp" | "minifloat" | "pow2"``.
        weight_bits: int for every weight layer, ``None`` to leave weights in float, or a
            dict ``{layer_name: bits}`` / a function ``(name, module) -> bits or None``
            (layers mapped to None stay float).
        act_bits: bits of the activations in front of each weight layer (same forms;
            ``None`` = float activations). ``act_layers`` restricts activation quantizers
            to those layer names.
        per_channel: one weight range per output channel (int8/affine).
        observer: activation range observer (``"minmax" | "moving_average" | "percentile"``).
        rounding, seed: rounding of weights and activations (``"nearest"`` or ``"stochastic"``).
        weight_options, act_options, **options: passed to ``make_format`` (``symmetric``,
            ``pow2_scale``, ``exp_bits``, ``man_bits`` ...); ``options`` apply to both.

    Raises:
        TypeError: the model is not a Sequential. ValueError: unknown scheme.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"quant.prepare: expected an nn.Sequential model, got {type(model).__name__}")
    if scheme not in SCHEMES:
        raise ValueError(f"quant.prepare: unknown scheme {scheme!r}; expected one of {SCHEMES}")
    wopts = {**options, **(weight_options or {})}
    aopts = {**options, **(act_options or {})}
    if scheme == "pow2":        # pow2 weights have no scale; their activations are fixed point
        wopts.pop("pow2_scale", None)
        aopts.pop("pow2_scale", None)
    q = copy.deepcopy(model)
    targets = {}
    for name, m in weight_layers(q):
        bits = _bits_for(weight_bits, name, m)
        if bits is not None:
            m.weight.add_transform(WeightQuant(scheme, bits, per_channel=per_channel and scheme in ("int8", "affine"),
                                               rounding=rounding, seed=seed, **wopts))
            bias = m._parameters.get("bias")
            if bias is not None and quantize_bias and scheme not in _ACC_BIAS:
                bias.add_transform(WeightQuant(scheme, bits, rounding=rounding, seed=seed, **wopts))
        abits = _bits_for(act_bits, name, m)
        if abits is not None and (act_layers is None or name in act_layers):
            targets[id(m)] = abits
    q = _insert(q, targets, lambda layer: ActQuant(scheme, targets[id(layer)], observer, rounding, seed, **aopts))
    q._quant_config = {"scheme": scheme, "weight_bits": weight_bits if isinstance(weight_bits, (int, type(None)))
                       else "mixed", "act_bits": act_bits if isinstance(act_bits, (int, type(None))) else "mixed",
                       "per_channel": per_channel, "quantize_bias": quantize_bias}
    return q


def _forward_batches(model, images, batch_size=500):
    x = images_to_float(images)
    outs = []
    with no_grad():
        for i in range(0, len(x), batch_size):
            outs.append(model(Tensor(x[i:i + batch_size])).data)
    return np.concatenate(outs) if outs else np.zeros((0,))


def finalize(qmodel):
    """Set each bias's int32 accumulator grid (``input_scale * weight_scale``) from the current
    formats, for the schemes whose biases live on it (int8/affine, pow2). Returns the model."""
    for aq, layer in layer_pairs(qmodel):
        bias = layer._parameters.get("bias")
        wq = layer.weight.find_transform(WeightQuant)
        if bias is None or wq is None or aq is None or wq.scheme not in _ACC_BIAS:
            continue
        s_in = _act_step(aq.fmt)
        fmt = wq.calibrate(layer.weight.data) if wq.dynamic or wq.fmt is None else wq.fmt
        s_w = fmt.scale if isinstance(fmt, Affine) else 2.0 ** fmt.min_exp
        bias.remove_transform(AccumulatorBias)
        bias.add_transform(AccumulatorBias(s_in * np.asarray(s_w, dtype=np.float64)))
    return qmodel


def _act_step(fmt):
    if isinstance(fmt, Affine):
        if np.any(fmt.zero_point != 0):
            raise ValueError("quant: an int32 bias grid needs zero-point-free (symmetric) activations")
        return float(fmt.scale)
    if isinstance(fmt, DynamicFixedPoint):
        return fmt.step
    raise ValueError(f"quant: activations in {type(fmt).__name__} have no fixed step for an integer bias grid")


def calibrate(qmodel, images, n=512, batch_size=256):
    """Record activation ranges on the first ``n`` of ``images`` (eval mode), freeze them, finalize.

    Args:
        images: uint8 (N, 28, 28) / (N, 1, 28, 28) or float32 NCHW in [0, 1].
    Returns the model (now in ``quantize`` mode).

    Raises:
        ValueError: no calibration images (empty ``images`` or ``n < 1``) while the model
            has activation quantizers to calibrate.
    """
    aqs = act_quants(qmodel)
    n_used = min(int(n), len(images))
    if aqs and n_used < 1:
        raise ValueError(f"quant.calibrate: expected at least one calibration image, got {len(images)} image(s) "
                         f"with n={n}")
    was = qmodel.training
    qmodel.eval()
    for _, aq in aqs:
        aq.observer.reset()
        aq.mode = "observe"
    try:
        if aqs:
            _forward_batches(qmodel, np.asarray(images)[:n], batch_size)
    finally:
        qmodel.train(was)
    for _, aq in aqs:
        aq.freeze()
    return finalize(qmodel)


def ptq(model, scheme="int8", weight_bits=8, act_bits=8, calib_images=None, n_calib=512, **kwargs):
    """Post-training quantization: ``prepare`` then ``calibrate`` on ``n_calib`` images."""
    q = prepare(model, scheme, weight_bits, act_bits, **kwargs)
    if calib_images is None and act_quants(q):
        raise ValueError("quant.ptq: activation quantization needs calib_images for calibration")
    return calibrate(q, calib_images, n_calib) if calib_images is not None else finalize(q)


def evaluate(model, images, labels, batch_size=1000):
    """Top-1 accuracy (fraction) of ``model`` on uint8 or float images, eval mode."""
    from .. import train
    return train.evaluate(model, images, labels, batch_size=batch_size)["top1"]


def finetune(qmodel, train_images, train_labels, epochs=1, lr=0.01, momentum=0.9, batch_size=128, seed=0,
             track_acts=False, val=None, verbose=False, checkpoint=None, resume=False):
    """Train a quantized model: quantized forward, full-precision shadow weights, STE gradients.

    With ``track_acts`` the activation ranges follow the training batches (their observers,
    e.g. moving averages); otherwise the calibrated ranges stay fixed. Biases' int32 grids
    are refreshed at the end (``finalize``). ``checkpoint``/``resume`` are ``train.fit``'s:
    a run resumed into a freshly ``prepare``d model continues bit for bit (activation
    ranges and modes are buffers, quantizer states are saved with their parameters).
    Returns the ``train.fit`` history.
    """
    from .. import data, optim, train
    from .. import functional as F

    for _, aq in act_quants(qmodel):
        aq.track = bool(track_acts)
    loader = data.DataLoader(train_images, train_labels, batch_size=batch_size, shuffle=True, seed=seed)
    opt = optim.SGD(qmodel.parameters(), lr=lr, momentum=momentum)
    hist = train.fit(qmodel, loader, F.cross_entropy, opt, epochs, val=val, verbose=verbose,
                     checkpoint=checkpoint, resume=resume)
    for _, aq in act_quants(qmodel):
        aq.track = False
    finalize(qmodel)
    return hist


def qat(model, scheme, weight_bits, act_bits, train_images, train_labels, epochs=1, lr=0.01, n_calib=512,
        momentum_obs=0.05, seed=0, verbose=False, **kwargs):
    """Quantization-aware training from a trained float model: prepare with moving-average
    observers, calibrate, then train with quantized forward passes while the activation ranges
    track the batches. Returns ``(qmodel, history)``."""
    from .observers import MovingAverageMinMaxObserver

    q = prepare(model, scheme, weight_bits, act_bits, observer="minmax", **kwargs)
    calibrate(q, train_images, n_calib)
    for _, aq in act_quants(q):
        aq.observer = MovingAverageMinMaxObserver(momentum_obs)   # starts from the calibrated qrange
    hist = finetune(q, train_images, train_labels, epochs, lr, seed=seed, track_acts=True, verbose=verbose)
    return q, hist


# ----------------------------------------------------------------------- searches
def quantized_top1(model, scheme, weight_bits, act_bits, calib_images, n_calib, val_images, val_labels,
                   act_layers=None, **kwargs) -> float:
    """Top-1 of ``ptq(model, ...)`` on ``(val_images, val_labels)``: one independent trial of a search."""
    q = ptq(model, scheme, weight_bits, act_bits, calib_images, n_calib, act_layers=act_layers, **kwargs)
    return evaluate(q, val_images, val_labels)


def _run_trials(runner, points):
    """``quantized_top1`` for each point (a dict of its keyword arguments), through ``runner``.

    ``runner(fn, points) -> [fn(**p) for p in points]`` in order; None runs them here. An
    application passes a runner that spreads the trials over processes or machines.
    """
    if runner is None:
        return [quantized_top1(**p) for p in points]
    return list(runner(quantized_top1, points))


def search_bitwidths(model, calib_images, val_images, val_labels, scheme="dfp", candidates=(16, 8, 4, 2, 1),
                     margin=0.01, n_calib=512, groups=("conv", "fc", "act"), runner=None, **kwargs):
    """Ristretto's bit-width search, one group at a time, the others left in float.

    For each group — conv weights, fc weights, activations — try ``candidates`` in order
    (16, 8, 4, 2, 1) and keep the smallest bit width whose top-1 stays within ``margin``
    (absolute, 0.01 = 1 percentage point) of the float model; stop at the first failure.
    Finally evaluate all groups together at their chosen widths.

    Every candidate of every group is an independent trial; they are all evaluated (through
    ``runner``, see ``_run_trials``: in this process by default) and the rule above applied
    to their results, so the answer does not depend on where the trials ran.

    Returns ``{"baseline", "chosen": {group: bits}, "trials": [{group, bits, top1, acc_loss}],
    "combined_top1", "combined_acc_loss"}`` (``trials`` up to each group's first failure).
    """
    base = evaluate(model, val_images, val_labels)
    kinds = {name: ("conv" if m.weight.ndim == 4 else "fc") for name, m in weight_layers(model)}
    calib = calib_images[:n_calib] if calib_images is not None else None
    common = dict(model=model, scheme=scheme, calib_images=calib, n_calib=n_calib, val_images=val_images,
                  val_labels=val_labels, **kwargs)
    plan = [(g, bits) for g in groups if g == "act" or g in kinds.values() for bits in candidates]

    def point(group, bits, chosen=None):
        if chosen is not None:
            return {**common, "weight_bits": {n: chosen.get(k) for n, k in kinds.items()},
                    "act_bits": chosen.get("act")}
        if group == "act":
            return {**common, "weight_bits": None, "act_bits": bits}
        return {**common, "weight_bits": {n: bits for n, k in kinds.items() if k == group}, "act_bits": None}

    accs = dict(zip(plan, _run_trials(runner, [point(g, b) for g, b in plan])))
    chosen, trials = {}, []
    for group in dict.fromkeys(g for g, _ in plan):
        best = None
        for bits in candidates:
            acc = accs[(group, bits)]
            trials.append({"group": group, "bits": bits, "top1": acc, "acc_loss": base - acc})
            if base - acc > margin:
                break
            best = bits
        chosen[group] = best
    comb = _run_trials(None, [point(None, None, chosen)])[0]
    return {"baseline": base, "chosen": chosen, "trials": trials, "combined_top1": comb,
            "combined_acc_loss": base - comb}


def sensitivity(model, calib_images, val_images, val_labels, scheme="dfp", bits=4, acts=False, n_calib=512,
                runner=None, **kwargs):
    """Quantize one weight layer at a time to ``bits`` (and its input activations if ``acts``).

    The layers are independent trials, run through ``runner`` (see ``_run_trials``).
    Returns ``[{"layer", "kind", "params", "top1", "acc_loss"}]`` in model order, plus the
    float baseline in each row (``"baseline"``).
    """
    base = evaluate(model, val_images, val_labels)
    layers = weight_layers(model)
    calib = calib_images[:n_calib] if calib_images is not None else None
    points = [dict(model=model, scheme=scheme, weight_bits={name: bits}, act_bits=bits if acts else None,
                   calib_images=calib, n_calib=n_calib, val_images=val_images, val_labels=val_labels,
                   act_layers=[name] if acts else None, **kwargs) for name, _ in layers]
    accs = _run_trials(runner, points)
    return [{"layer": name, "kind": "conv" if m.weight.ndim == 4 else "fc", "params": int(m.weight.size),
             "top1": acc, "acc_loss": base - acc, "baseline": base} for (name, m), acc in zip(layers, accs)]


# ----------------------------------------------------------------------- size and export
def _param_formats(qmodel):
    """[(name, Parameter, format or None)] for every parameter, in ``named_parameters`` order:
    the format its codes are stored in (a weight's ``WeightQuant`` format, calibrated now if
    dynamic; a bias's int32 ``AccumulatorBias`` grid), None for a parameter left in float."""
    out = []
    for name, p in qmodel.named_parameters():
        fmt = None
        wq = p.find_transform(WeightQuant)
        ab = p.find_transform(AccumulatorBias)
        if wq is not None:
            fmt = wq.calibrate(p.data) if (wq.dynamic or wq.fmt is None) else wq.fmt
        elif ab is not None:
            fmt = ab.fmt
        out.append((name, p, fmt))
    return out


def model_size(qmodel) -> dict:
    """Bytes of the quantized model, counted honestly.

    Every parameter: ``ceil(n * code_bits / 8)`` bytes of packed codes plus its format's side
    information (scales and zero points 4 bytes each per tensor or channel, a DFP fractional
    length or minifloat bias 1 byte, a power-of-two exponent range 2 bytes); float
    parameters 4 bytes per value. Every activation quantizer adds its side information.
    ``fp32_bytes`` is the float32 size of the same parameters (``cost.model_bytes``).

    Returns ``{"bytes", "fp32_bytes", "compression", "layers": [{name, n, code_bits, bytes}]}``.
    """
    rows, total, fp32 = [], 0, model_bytes(qmodel)
    for name, p, fmt in _param_formats(qmodel):
        n = int(p.size)
        bits = fmt.code_bits if fmt is not None else 32
        side = fmt.side_bytes if fmt is not None else 0
        b = math.ceil(n * bits / 8) + side
        rows.append({"name": name, "n": n, "code_bits": bits, "side_bytes": side, "bytes": b})
        total += b
    for name, aq in act_quants(qmodel):
        if aq.mode == "quantize":
            side = aq.fmt.side_bytes
            rows.append({"name": name, "n": 0, "code_bits": aq.fmt.code_bits, "side_bytes": side, "bytes": side})
            total += side
    return {"bytes": int(total), "fp32_bytes": int(fp32), "compression": fp32 / total if total else float("inf"),
            "layers": rows}


def _int_dtype(codes):
    lo, hi = (int(codes.min()), int(codes.max())) if codes.size else (0, 0)
    for dt in (np.int8, np.int16, np.int32, np.int64):
        if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
            return dt
    return np.int64


def export_npz(qmodel, path):
    """Write only the quantized model: integer codes (smallest int dtype) + formats, float
    parameters that carry no quantizer, and the activation ranges. No float copy of a
    quantized weight is stored. Returns the dict of arrays written."""
    arrays = {"__config__": np.array(json.dumps(getattr(qmodel, "_quant_config", {})))}
    for name, p, fmt in _param_formats(qmodel):
        if fmt is None:
            arrays[name] = p.data.copy()
            continue
        codes = np.asarray(fmt.quantize(p.data))
        arrays[f"{name}.codes"] = codes.astype(_int_dtype(codes.astype(np.int64)) if codes.dtype.kind == "i"
                                               else codes.dtype)
        arrays[f"{name}.fmt.class"] = np.array(type(fmt).__name__)
        for k, v in fmt.state().items():
            arrays[f"{name}.fmt.{k}"] = np.asarray(v)
    for name, aq in act_quants(qmodel):
        arrays[f"{name}.qrange"] = np.asarray(aq.qrange)
    np.savez_compressed(path, **arrays)
    return arrays


def load_npz(path, qmodel):
    """Load an ``export_npz`` file into a model built by ``prepare`` with the same scheme.

    Quantized parameters get the dequantized codes as data and a frozen copy of the stored
    format (``dynamic=False``), so the forward pass reproduces the exported model exactly.
    """
    from .fake import _format_from_state

    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for name, p in qmodel.named_parameters():
        if name in arrays:
            p.data = arrays[name].astype(p.data.dtype)
            continue
        if f"{name}.codes" not in arrays:
            raise KeyError(f"quant.load_npz: {path} has no entry for parameter {name!r}")
        fmt = _format_from_state(f"{name}.fmt.", arrays)
        p.data = np.ascontiguousarray(fmt.dequantize(arrays[f"{name}.codes"]).astype(p.data.dtype))
        wq = p.find_transform(WeightQuant)
        if wq is not None:
            wq.fmt, wq.dynamic = fmt, False
        else:
            p.remove_transform(AccumulatorBias)
            p.add_transform(AccumulatorBias(fmt.scale))
    for name, aq in act_quants(qmodel):
        if f"{name}.qrange" in arrays:
            aq.qrange = arrays[f"{name}.qrange"].astype(np.float64)
            aq.mode = "quantize"
    return qmodel

