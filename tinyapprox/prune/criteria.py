"""What to prune: criteria (magnitude, random), granularities and scope.

**Granularity** - the unit removed together (a *group*), for a conv weight (O, C, kh, kw):

=========== ======================================= ============== ==============
granularity  group                                   groups          group size
=========== ======================================= ============== ==============
element      one weight                              O*C*kh*kw       1
vector       one row of one kernel ``w[o, c, i, :]``  O*C*kh          kw
kernel       one kh x kw kernel ``w[o, c]``           O*C             kh*kw
filter       one output map's filter ``w[o]``         O               C*kh*kw
=========== ======================================= ============== ==============

A Linear weight (out, in) is treated as the 1x1 convolution it is, (out, in, 1, 1): a
"vector" or a "kernel" of a 1x1 kernel is a single weight, so both mean "element", and
"filter" is an output neuron (a row ``w[o, :]``). With "filter" the bias of the pruned
output is masked too, so the output map is exactly zero before the activation (and the
filter can be removed physically: ``prune.remove_filters``).

**Scores** - a group's score is its magnitude, the L1 or L2 norm of its weights divided
by ``size ** (1/p)``: mean |w| for L1, root-mean-square for L2. For element groups that
is just |w|. The normalisation leaves the ranking inside a layer unchanged and makes
groups of different sizes comparable across layers (global scope), and it lets one
absolute ``threshold`` mean "average magnitude below t" whatever the granularity.
``random`` draws uniform scores from a seeded generator: the baseline. ``saliency`` scores
by the estimated loss increase of removing a group (first-order Taylor ``|sum w * dL/dw|``,
or Optimal Brain Damage's ``sum h_kk w_k^2 / 2`` with a diagonal curvature estimate).

**Scope** - "layer": each parameter loses ``amount`` of its own groups; "global": all
selected parameters are ranked together and the lowest-scoring groups go first until
``amount`` of all their weights are pruned.

**Amount** - a float in [0, 1]: the fraction of weights to prune (rounded to whole
groups: per layer ``round(amount * groups)`` groups; globally the longest prefix of the
ranking whose weights do not exceed ``round(amount * weights)``); an int: a number of
groups; a dict ``{param name: float or int}``: per-layer amounts (layer scope). Or give
``threshold``: prune every group whose score is below it. Pruning only grows: groups
already pruned stay pruned (rank first) unless ``revive=True``, which recomputes the mask
from the current weights so pruned ones can return (masks become revivable, see
``PruneMask``).
"""
from __future__ import annotations

import numpy as np

from .mask import PruneMask, apply_mask, prunable

__all__ = ["GRANULARITIES", "magnitude", "random", "saliency", "saliency_scores", "prune_by_scores",
           "group_shape", "group_scores", "expand_group_mask"]

GRANULARITIES = ("element", "vector", "kernel", "filter")


def group_shape(shape: tuple, granularity: str) -> tuple:
    """(number of groups, group size) of a weight of ``shape`` at ``granularity``.

    Groups are contiguous in C order, so ``w.reshape(group_shape(...))`` lists them.
    Raises ValueError for an unknown granularity or a weight that is not 2-D or 4-D.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"prune: expected granularity in {GRANULARITIES}, got {granularity!r}")
    if len(shape) == 2:
        shape = tuple(shape) + (1, 1)
    if len(shape) != 4:
        raise ValueError(f"prune: granularity applies to 2-D (out, in) or 4-D (O, C, kh, kw) weights, got {shape}")
    o, c, kh, kw = shape
    size = {"element": 1, "vector": kw, "kernel": kh * kw, "filter": c * kh * kw}[granularity]
    n = o * c * kh * kw
    return (n // size if size else 0), size


def group_scores(w: np.ndarray, granularity: str, norm: str = "l1") -> np.ndarray:
    """Per-group magnitude of w (out, in) or (O, C, kh, kw): float64 (groups,).

    L1 norm / size (mean |w|) or L2 norm / sqrt(size) (RMS) of each group, groups as in
    ``group_shape``. Raises ValueError for an unknown norm or granularity, or a weight
    holding NaN or inf (its ranking would be meaningless).
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"prune: expected norm 'l1' or 'l2', got {norm!r}")
    n, size = group_shape(w.shape, granularity)
    w = np.asarray(w, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"prune.group_scores: expected finite weights to rank by magnitude, got {np.count_nonzero(~np.isfinite(w))} "
                         f"NaN/inf entries in a weight of shape {w.shape}")
    g = np.abs(w).reshape(n, size)
    if norm == "l1":
        return g.mean(axis=1) if size else np.zeros(n)
    return np.sqrt((g * g).mean(axis=1)) if size else np.zeros(n)


def expand_group_mask(keep: np.ndarray, shape: tuple, granularity: str) -> np.ndarray:
    """Broadcast a per-group keep vector (groups,) to a bool mask of ``shape``.

    Raises ValueError when ``keep`` does not hold one entry per group.
    """
    n, size = group_shape(shape, granularity)
    keep = np.asarray(keep)
    if keep.shape != (n,):
        raise ValueError(f"prune: expected one keep flag per {granularity} group, shape ({n},), got {keep.shape}")
    return np.repeat(np.asarray(keep, dtype=bool), size).reshape(shape)


def _check_amount(amount, op):
    if isinstance(amount, bool) or not isinstance(amount, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: expected amount to be a float in [0, 1] or an int count, got {amount!r}")
    if isinstance(amount, (float, np.floating)) and not 0.0 <= amount <= 1.0:
        raise ValueError(f"{op}: expected a fraction amount in [0, 1], got {amount}")
    if isinstance(amount, (int, np.integer)) and amount < 0:
        raise ValueError(f"{op}: expected a non-negative count amount, got {amount}")


def _n_prune(amount, n_groups, op):
    _check_amount(amount, op)
    if isinstance(amount, (int, np.integer)):
        if amount > n_groups:
            raise ValueError(f"{op}: asked to prune {amount} groups of {n_groups}")
        return int(amount)
    return int(round(float(amount) * n_groups))


def prune_by_scores(model, score_fn, amount=None, threshold=None, granularity: str = "element",
                    scope: str = "layer", params=None, revive: bool = False, prune_bias=None,
                    op: str = "prune") -> dict:
    """Prune the lowest-scoring groups; the engine behind ``magnitude`` and ``random``.

    Args:
        score_fn: ``score_fn(name, weight ndarray) -> (groups,) scores`` (higher = keep).
        amount / threshold / granularity / scope / params / revive: see the module docstring.
        prune_bias: also mask the bias of fully pruned filters (default: only for "filter").

    Returns ``{param name: bool mask}`` of the masks now attached.
    Raises ValueError/TypeError for a bad amount, scope, or both/neither of amount and threshold.
    """
    if (amount is None) == (threshold is None):
        raise ValueError(f"{op}: give exactly one of amount and threshold")
    for t in (threshold.values() if isinstance(threshold, dict) else [threshold]):
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating))
                              or np.isnan(t)):
            raise ValueError(f"{op}: expected threshold to be a real number (or a dict of them), got {t!r}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"{op}: expected granularity in {GRANULARITIES}, got {granularity!r}")
    if scope not in ("layer", "global"):
        raise ValueError(f"{op}: expected scope 'layer' or 'global', got {scope!r}")
    if isinstance(amount, dict) and scope != "layer":
        raise ValueError(f"{op}: per-layer amounts (a dict) need scope='layer'")
    table = prunable(model, params if not isinstance(amount, dict) or params is not None else list(amount))
    if prune_bias is None:
        prune_bias = granularity == "filter"

    scores, already = {}, {}
    for name, p in table.items():
        n, size = group_shape(p.shape, granularity)
        try:
            s = np.asarray(score_fn(name, p.data), dtype=np.float64).reshape(n)
        except ValueError as e:
            raise ValueError(f"{op}: parameter {name!r}: {e}") from None
        if np.isnan(s).any():
            raise ValueError(f"{op}: parameter {name!r}: expected {n} scores without NaN, got NaN")
        old = p.find_transform(PruneMask)
        if old is not None and not revive:
            done = ~old.mask.reshape(n, size).any(axis=1) if size else np.zeros(n, bool)
            s = np.where(done, -np.inf, s)
        scores[name], already[name] = s, old

    keep = {}
    if threshold is not None:
        for name, s in scores.items():
            t = threshold[name] if isinstance(threshold, dict) else threshold
            keep[name] = ~(s < t)
    elif scope == "layer":
        for name, s in scores.items():
            a = amount[name] if isinstance(amount, dict) else amount
            k = _n_prune(a, len(s), op)
            kp = np.ones(len(s), bool)
            kp[np.argsort(s, kind="stable")[:k]] = False
            keep[name] = kp
    else:
        names = list(scores)
        all_s = np.concatenate([scores[n] for n in names]) if names else np.zeros(0)
        sizes = np.concatenate([np.full(len(scores[n]), group_shape(table[n].shape, granularity)[1]) for n in names]) \
            if names else np.zeros(0, int)
        order = np.argsort(all_s, kind="stable")
        if isinstance(amount, (int, np.integer)) and not isinstance(amount, bool):
            k = _n_prune(amount, len(all_s), op)
        else:
            _check_amount(amount, op)
            budget = int(round(float(amount) * sizes.sum()))
            k = int(np.searchsorted(np.cumsum(sizes[order]), budget, side="right"))
        flat = np.ones(len(all_s), bool)
        flat[order[:k]] = False
        start = 0
        for n in names:
            keep[n] = flat[start:start + len(scores[n])]
            start += len(scores[n])

    masks = {}
    named = dict(model.named_parameters())
    for name, p in table.items():
        mask = expand_group_mask(keep[name], p.shape, granularity)
        old = already[name]
        if old is not None and not revive:
            mask &= old.mask
        masks[name] = apply_mask(p, mask, revivable=revive)
        bias_name = name[:-len("weight")] + "bias" if name.endswith("weight") else None
        if prune_bias and bias_name in named and named[bias_name].shape == (p.shape[0],):
            alive = mask.reshape(p.shape[0], -1).any(axis=1)
            b = named[bias_name]
            old_b = b.find_transform(PruneMask)
            if old_b is not None and not revive:
                alive &= old_b.mask
            apply_mask(b, alive, revivable=revive)
    return {k: v.mask for k, v in masks.items()}


def magnitude(model, amount=None, threshold=None, granularity: str = "element", scope: str = "layer",
              norm: str = "l1", params=None, revive: bool = False, prune_bias=None) -> dict:
    """Magnitude pruning: remove the groups of smallest normalised L1/L2 norm.

    ``prune.magnitude(model, amount=0.9)`` zeroes 90% of each Linear/Conv2d weight, smallest
    |w| first; ``scope="global"`` ranks all layers together; ``threshold=0.02`` prunes every
    weight (group) with mean |w| below 0.02. Returns ``{param name: bool mask}``.
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"prune.magnitude: expected norm 'l1' or 'l2', got {norm!r}")
    return prune_by_scores(model, lambda name, w: group_scores(w, granularity, norm), amount, threshold,
                           granularity, scope, params, revive, prune_bias, op="prune.magnitude")


def random(model, amount, granularity: str = "element", scope: str = "layer", seed=0, params=None,
           prune_bias=None) -> dict:
    """Random pruning (the baseline): uniform scores from ``np.random.default_rng(seed)``."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return prune_by_scores(model, lambda name, w: rng.random(group_shape(w.shape, granularity)[0]), amount, None,
                           granularity, scope, params, False, prune_bias, op="prune.random")


SALIENCIES = ("taylor", "obd")


def _per_sample_grads(model, x, y, loss_fn, names, batch_size):
    """Yield ``{name: dL_i/dw}`` for mini-batches of ``batch_size`` samples (1 = per sample)."""
    from ..tensor import Tensor
    params = dict(model.named_parameters())
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            model.zero_grad()
            loss = loss_fn(model(Tensor(x[i:i + batch_size])), y[i:i + batch_size])
            loss.backward()
            yield {n: (np.zeros(params[n].shape) if params[n].grad is None
                       else np.asarray(params[n].grad, dtype=np.float64)) for n in names}
    finally:
        model.zero_grad()
        model.train(was_training)


def saliency_scores(model, x, y, loss_fn, kind: str = "obd", params=None, samples: int = 256) -> dict:
    """Per-weight saliency: the estimated increase of the loss if that weight is set to 0.

    Args:
        model: a Module; x: (N, ...) float inputs; y: (N,) int labels; loss_fn(logits, y)
            -> scalar Tensor with mean reduction (e.g. ``F.cross_entropy``).
        kind: ``"taylor"`` - first order, ``-w * g`` with g the mean gradient over the
            samples (Molchanov et al. 2017); ``"obd"`` - second order, ``h * w**2 / 2``
            (LeCun et al., Optimal Brain Damage, 1990), where the diagonal of the Hessian
            ``h`` is estimated by the diagonal of the empirical Fisher, the mean of squared
            per-sample gradients (a Gauss-Newton-style stand-in that is >= 0, as OBD's is).
        params: names of the weights to score (default: ``prunable(model)``).
        samples: how many of the first samples of x to use (per-sample backward passes for
            "obd"; one batch for "taylor").

    Returns ``{param name: (same shape as the weight) float64}``; for "taylor" the
    signed first-order change ``-w * g`` is returned, so a group's estimate is the sum
    over its weights (``saliency`` ranks by its absolute value).
    Raises ValueError for an unknown kind, an empty or mismatched x / y, NaN or infinite
    values in the samples used, or samples < 1.
    """
    return _saliency_scores("prune.saliency_scores", model, x, y, loss_fn, kind, params, samples)


def _saliency_scores(op, model, x, y, loss_fn, kind, params, samples) -> dict:
    """``saliency_scores`` with errors named after ``op`` (the public function called)."""
    if kind not in SALIENCIES:
        raise ValueError(f"{op}: expected kind in {SALIENCIES}, got {kind!r}")
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0 or y.ndim == 0 or len(x) == 0 or len(x) != len(y):
        raise ValueError(f"{op}: expected x and y with the same non-zero length, got shapes {x.shape} and {y.shape}")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"{op}: expected samples to be an int >= 1, got {samples!r}")
    if np.issubdtype(x.dtype, np.inexact) and not np.isfinite(x[:samples]).all():
        raise ValueError(f"{op}: expected finite inputs x, got NaN or infinity in the first {samples} samples")
    table = prunable(model, params)
    names = list(table)
    x, y = x[:samples], y[:samples]
    weights = {n: np.asarray(table[n].data, dtype=np.float64) for n in names}
    if kind == "taylor":
        g = next(_per_sample_grads(model, x, y, loss_fn, names, len(x)))
        return {n: -weights[n] * g[n] for n in names}
    fisher = {n: np.zeros(table[n].shape) for n in names}
    for g in _per_sample_grads(model, x, y, loss_fn, names, 1):
        for n in names:
            fisher[n] += g[n] ** 2
    return {n: 0.5 * (fisher[n] / len(x)) * weights[n] ** 2 for n in names}


def saliency(model, x, y, loss_fn, amount=None, threshold=None, kind: str = "obd",
             granularity: str = "element", scope: str = "layer", params=None, samples: int = 256,
             prune_bias=None) -> dict:
    """Prune the groups whose removal is estimated to raise the loss least (``saliency_scores``).

    A group's score is ``|sum of its weights' first-order changes|`` for "taylor" and the
    sum of its weights' OBD saliencies for "obd" (OBD's diagonal assumption makes them
    add). Scores are changes of the loss, so they are comparable across layers without
    normalisation: ``scope="global"`` ranks them directly. Same amount / threshold /
    granularity / scope rules as ``magnitude``; returns ``{param name: bool mask}``.
    """
    sal = _saliency_scores("prune.saliency", model, x, y, loss_fn, kind, params, samples)

    def score(name, w):
        n, size = group_shape(w.shape, granularity)
        groups = sal[name].reshape(n, size)
        total = groups.sum(axis=1)
        return np.abs(total) if kind == "taylor" else total

    return prune_by_scores(model, score, amount, threshold, granularity, scope, list(sal), False, prune_bias,
                           op="prune.saliency")


# ----------------------------------------------------------------------------- exercises
def magnitude_keep_mask(w, amount: float, granularity: str = "element") -> np.ndarray:
    """Keep mask of one-shot magnitude pruning of one weight, in plain NumPy (exercise).

    Ranks the groups of ``w`` at ``granularity`` (``group_shape``) by ``group_scores``
    (mean |w| of the group) and prunes the ``round(amount * groups)`` weakest; equal
    scores are pruned lower group index first (a stable sort).

    Args:
        w: (out, in) or (O, C, kh, kw) real weights.
        amount: fraction of groups to prune, in [0, 1].
        granularity: "element", "vector", "kernel" or "filter".

    Returns:
        bool array of ``w``'s shape (True = kept), constant within each group.

    Raises:
        ValueError: a weight that is not 2-D or 4-D, an unknown granularity, an amount
            outside [0, 1].
    """
    w = np.asarray(w)
    n_prune = _n_prune(float(amount), group_shape(w.shape, granularity)[0], "magnitude_keep_mask")
    # BEGIN SOLUTION
    scores = group_scores(w, granularity)
    keep = np.ones(scores.size, dtype=bool)
    keep[np.argsort(scores, kind="stable")[:n_prune]] = False
    return expand_group_mask(keep, w.shape, granularity)
    # END SOLUTION
