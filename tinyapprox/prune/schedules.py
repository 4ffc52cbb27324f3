"""When to prune: one-shot, iterative prune-and-retrain, gradual (AGP), and controls.

* ``oneshot``: prune once to the target, no retraining.
* ``iterative``: Han et al. (2015) - start from a trained dense model, prune, retrain the
  remaining connections, repeat; each round removes the same fraction of the weights
  still alive, so round k of R reaches sparsity ``1 - (1 - s)^(k/R)``. Stops at the target,
  or at an accuracy floor (then the last model above the floor is restored).
* ``GradualPruning``: Zhu & Gupta (2017) automated gradual pruning, a callback for
  ``train.fit``: at steps t0, t0+dt, ..., t0+n*dt the sparsity is raised to
  ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n*dt))**3`` - fast early, while the network
  has redundancy to spare, slowly near the end.
* ``transfer_masks``: the retrain-from-scratch control: the final masks on a freshly
  initialised model (or on the original initial weights, lottery-ticket style).
* ``revive=True`` in any of them recomputes masks from the current latent weights, so a
  pruned weight can come back (see ``PruneMask``).
"""
from __future__ import annotations

import numpy as np

from .criteria import magnitude, random
from .mask import apply_masks, get_masks, prunable, sparsity

__all__ = ["oneshot", "iterative", "agp_sparsity", "GradualPruning", "transfer_masks", "han_thresholds",
           "round_sparsities"]


def oneshot(model, sparsity, granularity: str = "element", scope: str = "layer", norm: str = "l1",
            params=None) -> dict:
    """Prune once by magnitude to ``sparsity`` (float, or ``{param: float}``), no retraining."""
    return magnitude(model, amount=sparsity, granularity=granularity, scope=scope, norm=norm, params=params)


def round_sparsities(target, rounds: int) -> list:
    """Sparsity after each of ``rounds`` rounds that each remove the same share of survivors.

    ``target`` a float in [0, 1) or a dict of them; returns a list of floats (or dicts).
    ``round_sparsities(0.75, 2) == [0.5, 0.75]``.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise ValueError(f"round_sparsities: expected rounds >= 1, got {rounds!r}")

    def one(s, k):
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"round_sparsities: expected a target sparsity in [0, 1], got {s}")
        return 1.0 - (1.0 - s) ** (k / rounds)

    if isinstance(target, dict):
        return [{n: one(s, k) for n, s in target.items()} for k in range(1, rounds + 1)]
    return [one(float(target), k) for k in range(1, rounds + 1)]


def iterative(model, retrain, evaluate, target, rounds: int = 5, granularity: str = "element",
              scope: str = "layer", norm: str = "l1", params=None, acc_floor=None, revive: bool = False,
              criterion: str = "magnitude", seed=0, verbose: bool = False) -> list:
    """Han et al.'s prune-and-retrain loop.

    Args:
        model: a trained model (pruned in place).
        retrain: ``retrain(model, round)`` trains the surviving connections (e.g. a few
            epochs of ``train.fit``; the masks keep pruned weights at zero).
        evaluate: ``evaluate(model) -> accuracy`` (a float; higher is better).
        target: final sparsity, a float or ``{param name: float}`` (per-layer, scope "layer").
        rounds: number of prune-retrain rounds.
        acc_floor: stop when the retrained accuracy falls below it and restore the last
            model that was above it (or the dense one).
        granularity, scope, norm, params, revive: as in ``prune.magnitude``.
        criterion: "magnitude" or "random" (the baseline under the same schedule; its
            generator is ``np.random.default_rng(seed)``, shared by all rounds).

    Returns:
        list of per-round dicts: round, target, sparsity, acc_pruned (before retraining),
        acc (after), stopped ("target", "accuracy floor" or None).
    """
    if criterion not in ("magnitude", "random"):
        raise ValueError(f"prune.iterative: expected criterion 'magnitude' or 'random', got {criterion!r}")
    rng = np.random.default_rng(seed)
    records = []
    best_state = model.state_dict()
    for k, s in enumerate(round_sparsities(target, rounds), start=1):
        if criterion == "magnitude":
            magnitude(model, amount=s, granularity=granularity, scope=scope, norm=norm, params=params, revive=revive)
        else:
            random(model, amount=s, granularity=granularity, scope=scope, seed=rng, params=params)
        acc_pruned = float(evaluate(model))
        retrain(model, k)
        acc = float(evaluate(model))
        rec = {"round": k, "target": s, "sparsity": sparsity(model, params), "acc_pruned": acc_pruned, "acc": acc,
               "stopped": None}
        records.append(rec)
        if verbose:
            print(f"round {k}/{rounds}: sparsity {rec['sparsity']:.4f}  acc after pruning {acc_pruned:.4f}  "
                  f"after retraining {acc:.4f}", flush=True)
        if acc_floor is not None and acc < acc_floor:
            model.load_state_dict(best_state)
            rec["stopped"] = "accuracy floor"
            break
        best_state = model.state_dict()
        if k == rounds:
            rec["stopped"] = "target"
    return records


def agp_sparsity(step, final_sparsity: float, start_step: int, end_step: int, initial_sparsity: float = 0.0):
    """Zhu & Gupta's cubic schedule, ``s_f + (s_i - s_f) * (1 - (t - t0) / (t_end - t0))**3``.

    ``step`` is clamped to [start_step, end_step] (s_i before the start, s_f after the end).
    Raises ValueError when end_step <= start_step or a sparsity is outside [0, 1] (or NaN).
    """
    if end_step <= start_step:
        raise ValueError(f"agp_sparsity: expected end_step > start_step, got {start_step}, {end_step}")
    for what, v in (("final_sparsity", final_sparsity), ("initial_sparsity", initial_sparsity)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"agp_sparsity: expected {what} in [0, 1], got {v}")
    # BEGIN SOLUTION
    t = min(max(step, start_step), end_step)
    frac = (t - start_step) / (end_step - start_step)
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3
    # END SOLUTION


class GradualPruning:
    """``train.fit`` callback: raise the sparsity on Zhu & Gupta's schedule during training.

    Args:
        final_sparsity: s_f, a float or ``{param name: float}`` (each scaled by the schedule).
        start_step, end_step: t0 and t0 + n*dt (optimizer steps, counted from 1 as in
            ``fit``); ``end_step - start_step`` must be a multiple of ``frequency``.
        frequency: dt, steps between two pruning events.
        initial_sparsity: s_i.
        granularity, scope, norm, params, revive: as in ``prune.magnitude``.

    ``on_step(model, step)`` prunes at t0, t0+dt, ..., end_step and records
    ``(step, sparsity)`` pairs in ``self.events``.
    """

    def __init__(self, final_sparsity, start_step: int, end_step: int, frequency: int = 100,
                 initial_sparsity: float = 0.0, granularity: str = "element", scope: str = "layer",
                 norm: str = "l1", params=None, revive: bool = False):
        if frequency < 1 or end_step <= start_step or (end_step - start_step) % frequency:
            raise ValueError(f"GradualPruning: expected frequency >= 1 and end_step - start_step a positive "
                             f"multiple of it, got start {start_step}, end {end_step}, frequency {frequency}")
        self.final, self.initial = final_sparsity, float(initial_sparsity)
        self.start, self.end, self.frequency = int(start_step), int(end_step), int(frequency)
        self.kwargs = dict(granularity=granularity, scope=scope, norm=norm, params=params, revive=revive)
        self.events = []
        self.sparsity_at(self.end)  # refuse a sparsity outside [0, 1] now rather than mid-training

    def sparsity_at(self, step):
        """Target in force at ``step``: the schedule's value at the last pruning event <= step."""
        if step < self.start:
            return 0.0 if not isinstance(self.final, dict) else {n: 0.0 for n in self.final}
        last = self.start + min((step - self.start) // self.frequency * self.frequency, self.end - self.start)
        if isinstance(self.final, dict):
            return {n: agp_sparsity(last, s, self.start, self.end, self.initial) for n, s in self.final.items()}
        return agp_sparsity(last, self.final, self.start, self.end, self.initial)

    def on_step(self, model, step):
        if self.start <= step <= self.end and (step - self.start) % self.frequency == 0:
            target = self.sparsity_at(step)
            magnitude(model, amount=target, **self.kwargs)
            self.events.append((step, sparsity(model, self.kwargs["params"])))


def transfer_masks(source, target, revivable: bool = False):
    """Attach ``source``'s pruning masks to ``target`` (same architecture) and zero its pruned weights.

    With ``target`` a freshly initialised model this is the "retrain the pruned
    architecture from scratch" control; with ``target`` holding the original initial
    weights it is the lottery-ticket rewind. Returns ``target``.
    """
    masks = get_masks(source)
    if not masks:
        raise ValueError("transfer_masks: the source model carries no pruning masks")
    return apply_masks(target, masks, revivable)


def han_thresholds(model, quality: float, params=None) -> dict:
    """Han et al.'s per-layer thresholds: ``quality * std(w)`` of each weight (use with
    ``prune.magnitude(model, threshold=...)``). Returns ``{param name: float}``.

    Raises ValueError for a negative or NaN ``quality``.
    """
    if not quality >= 0:
        raise ValueError(f"han_thresholds: expected a quality >= 0, got {quality}")
    return {name: float(quality * np.std(p.data)) for name, p in prunable(model, params).items()}
