"""Pruning: masks on parameters, criteria, granularities, schedules, the per-layer report.

Quick tour::

    prune.magnitude(model, amount=0.9)                      # 90% of each Linear/Conv2d weight
    prune.magnitude(model, amount=0.9, scope="global")      # 90% of all weights, ranked together
    prune.magnitude(model, amount=0.5, granularity="kernel", norm="l2")
    prune.random(model, amount=0.9, seed=0)                 # the baseline
    prune.saliency(model, x, y, F.cross_entropy, amount=0.9, kind="obd")  # Optimal Brain Damage
    prune.sparsity(model); prune.count_zeros(model)
    print(prune.report(model, data=test_images))            # Weights, FLOP, Act%, Weights%, FLOP%
    fast = prune.to_sparse(model)                           # CSR inference on the C kernel
    prune.remove(model)                                     # bake the masks in
    prune.interpolation_path(dense, pruned, x, y)           # loss on the line dense -> pruned

Definitions: sparsity = zeros / total, density = 1 - sparsity; compression ratio =
original size / compressed size (> 1 means smaller), by parameter count or by bytes with
indices counted; theoretical speedup = FLOP ratio; measured speedup = wall-clock ratio.
"""
from .convert import remove_filters, to_sparse
from .criteria import (GRANULARITIES, expand_group_mask, group_scores, group_shape, magnitude, prune_by_scores,
                       random, saliency, saliency_scores)
from .mask import PruneMask, apply_mask, apply_masks, count_zeros, get_masks, l0, prunable, remove, sparsity
from .report import PruneReport, interpolation_path, report, time_inference
from .schedules import (GradualPruning, agp_sparsity, han_thresholds, iterative, oneshot, round_sparsities,
                        transfer_masks)

__all__ = ["PruneMask", "apply_mask", "apply_masks", "get_masks", "prunable", "remove", "sparsity", "count_zeros",
           "l0", "GRANULARITIES", "magnitude", "random", "saliency", "saliency_scores", "prune_by_scores", "group_shape", "group_scores",
           "expand_group_mask", "oneshot", "iterative", "agp_sparsity", "GradualPruning", "transfer_masks",
           "han_thresholds", "round_sparsities", "report", "PruneReport", "time_inference", "to_sparse",
           "remove_filters", "interpolation_path"]
