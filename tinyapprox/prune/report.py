"""The per-layer pruning table of the lecture (after Han et al. 2015, Table 2), measured.

For every Linear/Conv2d layer:

* **Weights**: number of weights of the layer (biases excluded);
* **FLOP**: dense FLOPs per sample, 2 per multiply-add (Linear 2*in*out, Conv2d
  2*C*kh*kw*O*OH*OW);
* **Act%**: share of non-zero values in the activation the layer produces - the input of
  the next weight layer (after ReLU / pooling), or the layer's own output for the last
  one - measured on real inputs;
* **Weights%**: non-zero weights / weights;
* **FLOP%**: FLOPs left when every zero weight is skipped (2 per non-zero weight per
  output position) / dense FLOPs (= Weights% for a Linear layer);
* **FLOP%act**: Han's estimate when zero *activations* are skipped too: FLOP% times the
  Act% of the layer's input (measured on the same inputs).

Totals: parameters (biases included) and non-zero parameters, the compression ratio
counted two ways - parameter count (dense / non-zero) and bytes (dense float32 / pruned
weights in CSR with float32 values, int32 column indices and int64 row pointers when that
is smaller than dense, everything else dense float32) - the theoretical speedup
(dense FLOPs / FLOPs skipping zero weights) and the measured speedup (median wall-clock
time of dense inference over CSR-kernel inference, ``prune.to_sparse``, same run,
interleaved repeats).
"""
from __future__ import annotations

import copy
import time

import numpy as np

from ..cost import effective_weight, model_bytes, trace_layers
from ..data import images_to_float
from ..functional import cross_entropy
from ..nn import is_weight_layer
from ..tensor import Tensor, no_grad
from ..train import evaluate
from .convert import to_sparse

__all__ = ["report", "PruneReport", "time_inference", "interpolation_path"]

HEADER = ("FLOPs: one multiply-add = 2 FLOPs; Linear 2*in*out, Conv2d 2*C*kh*kw*O*OH*OW per sample; "
          "pruned layers count 2 FLOPs per non-zero weight per output position")


def _as_batch(data, n, input_shape, seed=0):
    if data is None:
        if input_shape is None:
            raise ValueError("prune.report: expected data (images or (images, labels)) or input_shape")
        shape = (n,) + tuple(input_shape)[1:]
        return np.random.default_rng(seed).random(shape, dtype=np.float32), "random U[0,1) inputs"
    x = data[0] if isinstance(data, tuple) else data
    x = images_to_float(np.asarray(x.data if isinstance(x, Tensor) else x)[:n])
    return np.ascontiguousarray(x), f"{len(x)} real inputs"


def time_inference(model, x, repeats: int = 20, other=None):
    """Median seconds of ``model(x)`` (no graph) over ``repeats``; with ``other``, both models
    are timed in alternation and ``(median_model, median_other)`` returned."""
    xt = Tensor(x)
    models = [model] if other is None else [model, other]
    times = [[] for _ in models]
    with no_grad():
        for m in models:
            m.eval()
            m(xt)
        for _ in range(repeats):
            for m, t in zip(models, times):
                t0 = time.perf_counter()
                m(xt)
                t.append(time.perf_counter() - t0)
    med = [float(np.median(t)) for t in times]
    return med[0] if other is None else tuple(med)


class PruneReport:
    """Result of ``prune.report``: ``rows`` (per layer), ``totals``, ``str()`` the table,
    ``to_dict()`` for JSON, ``plot(path)`` a PNG."""

    def __init__(self, rows, totals, inputs_note):
        self.rows, self.totals, self.inputs_note = rows, totals, inputs_note

    def to_dict(self) -> dict:
        return {"header": HEADER, "inputs": self.inputs_note, "layers": self.rows, "totals": self.totals}

    def __str__(self):
        t = self.totals
        lines = [HEADER, f"Act% measured on {self.inputs_note}",
                 f"{'layer':<10}{'type':<8}{'Weights':>10}{'FLOP':>13}{'Act%':>8}{'Weights%':>10}{'FLOP%':>8}"
                 f"{'FLOP%act':>10}"]
        for r in self.rows:
            lines.append(f"{r['name']:<10}{r['type']:<8}{r['weights']:>10,}{r['flops']:>13,}{r['act_pct']:>7.1f}%"
                         f"{r['weights_pct']:>9.1f}%{r['flops_pct']:>7.1f}%{r['flops_act_pct']:>9.1f}%")
        lines.append(f"{'total':<18}{t['weights']:>10,}{t['flops']:>13,}{'':>8}{t['weights_pct']:>9.1f}%"
                     f"{t['flops_pct']:>7.1f}%{t['flops_act_pct']:>9.1f}%")
        lines.append(f"parameters {t['params']:,} -> {t['nonzero_params']:,} non-zero: "
                     f"compression {t['compression_count']:.2f}x by count; {t['dense_bytes']:,} B -> "
                     f"{t['sparse_bytes']:,} B: {t['compression_bytes']:.2f}x by bytes ({t['storage']})")
        lines.append(f"theoretical speedup (FLOP ratio) {t['theoretical_speedup']:.2f}x")
        if t.get("measured_speedup") is not None:
            lines.append(f"measured speedup {t['measured_speedup']:.2f}x: dense {t['dense_ms']:.3f} ms vs CSR "
                         f"{t['sparse_ms']:.3f} ms per batch of {t['timing_batch']} (median of {t['repeats']})")
        return "\n".join(lines)

    def plot(self, path, title: str = "pruning report"):
        """Write a PNG: per-layer Weights%, FLOP% and Act% bars, totals in the title."""
        import matplotlib.pyplot as plt  # a display-less machine falls back to the Agg backend

        names = [r["name"] for r in self.rows]
        x = np.arange(len(names))
        fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(names) + 2), 3.6))
        for k, (key, label) in enumerate((("weights_pct", "Weights%"), ("flops_pct", "FLOP%"),
                                          ("flops_act_pct", "FLOP%act"), ("act_pct", "Act%"))):
            ax.bar(x + (k - 1.5) * 0.2, [r[key] for r in self.rows], 0.2, label=label)
        ax.set_xticks(x, names)
        ax.set_ylabel("% remaining / non-zero")
        ax.set_ylim(0, 105)
        t = self.totals
        sub = f"{t['compression_count']:.1f}x fewer params, {t['compression_bytes']:.1f}x fewer bytes, " \
              f"theoretical {t['theoretical_speedup']:.1f}x"
        if t.get("measured_speedup") is not None:
            sub += f", measured {t['measured_speedup']:.2f}x"
        ax.set_title(f"{title}\n{sub}", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def report(model, data=None, input_shape=None, measure: bool = True, batch_size: int = 256, repeats: int = 20,
           act_samples: int = 1000, backend=None) -> PruneReport:
    """Per-layer pruning table of ``model`` (see the module docstring for every column).

    Args:
        model: a (pruned) model.
        data: real inputs for Act% and timing: an image array (N, H, W) / (N, C, H, W) /
            (N, D) (uint8 scaled to [0, 1]) or ``(images, labels)``.
        input_shape: used when ``data`` is None, e.g. (1, 1, 28, 28); Act% is then
            measured on seeded uniform random inputs (stated in the table).
        measure: time dense vs CSR inference (``batch_size`` inputs, median of ``repeats``).
        act_samples: how many inputs to measure Act% on.

    Returns: ``PruneReport``.
    """
    x_act, note = _as_batch(data, act_samples, input_shape)
    records = trace_layers(model, x_act)
    weight_recs = [(i, r) for i, r in enumerate(records) if is_weight_layer(r[1])]
    rows = []
    for k, (i, (name, mod, x, y)) in enumerate(weight_recs):
        w = effective_weight(mod)
        positions = 1 if w.ndim == 2 else int(y.shape[2] * y.shape[3])
        act = weight_recs[k + 1][1][2] if k + 1 < len(weight_recs) else y
        in_act = float(np.count_nonzero(x)) / x.size if x.size else 0.0
        nz = int(np.count_nonzero(w))
        flops, nz_flops = 2 * w.size * positions, 2 * nz * positions
        rows.append({
            "name": name, "type": type(mod).__name__, "weights": int(w.size), "nonzero_weights": nz,
            "flops": int(flops), "nonzero_flops": int(nz_flops),
            "act_pct": 100.0 * np.count_nonzero(act) / act.size if act.size else 0.0,
            "input_act_pct": 100.0 * in_act,
            "weights_pct": 100.0 * nz / w.size if w.size else 0.0,
            "flops_pct": 100.0 * nz_flops / flops if flops else 0.0,
            "flops_act_pct": 100.0 * in_act * nz_flops / flops if flops else 0.0,
        })
    params = sum(p.size for p in model.parameters())
    with no_grad():
        nonzero_params = sum(int(np.count_nonzero(p.effective().data)) for p in model.parameters())
    tw, tf = sum(r["weights"] for r in rows), sum(r["flops"] for r in rows)
    nzw, nzf = sum(r["nonzero_weights"] for r in rows), sum(r["nonzero_flops"] for r in rows)
    nzf_act = sum(r["flops_act_pct"] * r["flops"] / 100.0 for r in rows)
    dense_bytes, sparse_bytes = model_bytes(model, sparse=False), model_bytes(model, sparse="auto")
    totals = {
        "weights": tw, "nonzero_weights": nzw, "flops": tf, "nonzero_flops": nzf,
        "weights_pct": 100.0 * nzw / tw if tw else 0.0, "flops_pct": 100.0 * nzf / tf if tf else 0.0,
        "flops_act_pct": 100.0 * nzf_act / tf if tf else 0.0,
        "params": int(params), "nonzero_params": int(nonzero_params),
        "sparsity": 1.0 - nzw / tw if tw else 0.0,
        "compression_count": params / nonzero_params if nonzero_params else float("inf"),
        "dense_bytes": dense_bytes, "sparse_bytes": sparse_bytes,
        "compression_bytes": dense_bytes / sparse_bytes if sparse_bytes else float("inf"),
        "storage": "pruned weights as CSR: float32 values + int32 column indices + int64 row pointers, "
                   "when smaller than dense; other parameters dense float32",
        "theoretical_speedup": tf / nzf if nzf else float("inf"),
        "measured_speedup": None,
    }
    if measure:
        xb, _ = _as_batch(data, batch_size, input_shape, seed=1)
        dense_s, sparse_s = time_inference(model, xb, repeats, other=to_sparse(model, backend=backend))
        totals.update(measured_speedup=dense_s / sparse_s, dense_ms=1e3 * dense_s, sparse_ms=1e3 * sparse_s,
                      timing_batch=len(xb), repeats=repeats)
    return PruneReport(rows, totals, note)


def _effective_params(model) -> dict:
    with no_grad():
        return {n: np.asarray(p.effective().data, dtype=np.float64) for n, p in model.named_parameters()}


def interpolation_path(dense_model, pruned_model, x, y, loss_fn=None, steps: int = 11, batch_size: int = 1000) -> dict:
    """Loss and accuracy along the straight line from the dense to the pruned weights.

    "Sparse solutions lie near the dense one": with w(a) = (1 - a) * w_dense + a * w_pruned
    (effective weights, masks applied; every parameter, biases included) the model is
    evaluated at ``steps`` evenly spaced a in [0, 1] on ``(x, y)``. A low, flat loss along
    the path says the pruned solution sits in the dense solution's basin. Buffers (batch-norm
    statistics) are the dense model's throughout.

    Args:
        dense_model, pruned_model: two models of the same architecture (same parameter
            names and shapes), e.g. a trained model and a pruned, retrained copy of it.
        x: inputs (N, ...) (uint8 images are scaled to [0, 1]); y: (N,) int labels.
        loss_fn: ``loss_fn(logits Tensor, labels) -> scalar Tensor``; default cross-entropy.
        steps: number of points, an int >= 2 (a = 0 and a = 1 included).

    Returns ``{"alpha": (steps,), "loss": (steps,), "top1": (steps,), "distance": (steps,)
    L2 distance of w(a) from w_dense, "total_distance": ||w_pruned - w_dense||, "dense_norm":
    ||w_dense||, "relative_distance": their ratio, "layers": {param name: ||w_p - w_d|| / ||w_d||}}``
    (float64 arrays; norms over all parameters concatenated).

    Raises ValueError for ``steps`` < 2 or models whose parameter names or shapes differ.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ValueError(f"prune.interpolation_path: expected steps to be an int >= 2, got {steps!r}")
    wd, wp = _effective_params(dense_model), _effective_params(pruned_model)
    shapes_d = {n: a.shape for n, a in wd.items()}
    shapes_p = {n: a.shape for n, a in wp.items()}
    if shapes_d != shapes_p:
        raise ValueError("prune.interpolation_path: expected two models with the same parameters, got "
                         f"{shapes_d} and {shapes_p}")
    model = copy.deepcopy(dense_model)
    params = dict(model.named_parameters())
    for p in params.values():
        p.bake()
    alphas = np.linspace(0.0, 1.0, int(steps))
    losses, top1 = np.empty(len(alphas)), np.empty(len(alphas))
    for i, a in enumerate(alphas):
        for n, p in params.items():
            p.data[...] = ((1.0 - a) * wd[n] + a * wp[n]).astype(p.data.dtype)
        r = evaluate(model, x, y, batch_size=batch_size, loss_fn=loss_fn or cross_entropy)
        losses[i], top1[i] = r["loss"], r["top1"]
    diff = {n: wp[n] - wd[n] for n in wd}
    total = float(np.sqrt(sum(float(np.sum(d * d)) for d in diff.values())))
    norm = float(np.sqrt(sum(float(np.sum(w * w)) for w in wd.values())))
    layers = {n: float(np.linalg.norm(diff[n]) / np.linalg.norm(wd[n])) if np.any(wd[n]) else float("nan")
              for n in wd}
    return {"alpha": alphas, "loss": losses, "top1": top1, "distance": alphas * total, "total_distance": total,
            "dense_norm": norm, "relative_distance": total / norm if norm else float("nan"), "layers": layers}
