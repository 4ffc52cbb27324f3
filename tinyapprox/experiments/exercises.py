"""The course's exercises, as data: the one list ``tinyapprox course`` releases and grades.

Each entry:

* ``name``: the exercise; its pytest marker is ``ex_<name>`` (registered in pyproject.toml);
* ``part``: the lecture part (autograd, pruning, quantization, binarization, training);
* ``kind``: ``"code"`` (write the function) or ``"property"`` (write the property; graded
  by mutation: it must pass on the reference and fail on every planted bug);
* ``points`` and ``minutes`` (the expected time for a student who attended the lecture);
* ``targets``: ``"module:qualname"`` of each function holding a ``# BEGIN SOLUTION`` /
  ``# END SOLUTION`` block; the student's version of exactly these functions is graded;
* ``hint``: the one line the student's stub raises in ``NotImplementedError``;
* ``checks``: what the hidden tests check (for instructors; not released).

The order is the teaching order: pure-NumPy exercises first, those that need the autograd
engine after them.
"""
from __future__ import annotations

def _ex(name, part, kind, points, minutes, targets, hint, checks):
    return {"name": name, "marker": f"ex_{name}", "part": part, "kind": kind, "points": points,
            "minutes": minutes, "targets": list(targets), "hint": hint, "checks": checks}


_F = "tinyapprox.functional"

EXERCISES = [
    # ------------------------------------------------------------ pure NumPy: pruning
    _ex("magnitude_mask", "pruning", "code", 3, 20, ["tinyapprox.prune.criteria:magnitude_keep_mask"],
        "rank the groups with group_scores, prune the n weakest (stable argsort), expand with expand_group_mask",
        "mask shape and dtype; constant inside every group; exactly round(amount * groups) groups pruned; "
        "every kept group scores >= every pruned one; ties pruned lower index first; all four granularities"),
    _ex("agp_sparsity", "pruning", "code", 2, 10, ["tinyapprox.prune.schedules:agp_sparsity"],
        "clamp the step into [start, end], then s_f + (s_i - s_f) * (1 - progress)**3",
        "equals the cubic formula; s_i at and before the start, s_f at and after the end; "
        "monotone in the step; (s_f - s_i) * 7/8 + s_i at mid-way"),
    _ex("csr", "pruning", "code", 3, 20, ["tinyapprox.sparse.formats:csr_arrays", "tinyapprox.sparse.formats:csr_nbytes"],
        "np.nonzero gives rows and columns in row-major order; indptr is the running count of entries per row",
        "arrays equal CSR.from_dense's (dtypes included) for any density 0..1, empty and 1-wide shapes; "
        "the dense round trip is exact; csr_nbytes equals CSR.nbytes"),
    # ------------------------------------------------------- pure NumPy: quantization
    _ex("dfp_quantize", "quantization", "code", 2, 15, ["tinyapprox.quant.formats:dfp_quantize"],
        "IL = ceil(log2 max|x|) + 1 (sign bit), FL = bits - IL, then clip(rint(x * 2**FL))",
        "frac length and codes equal DynamicFixedPoint.from_tensor(x, bits, signed=True); codes in range; "
        "|dequantized - x| <= half a step below the top code; ties to even near the steps"),
    _ex("int8_quantize", "quantization", "code", 2, 10, ["tinyapprox.quant.formats:quantize_int8"],
        "np.rint(x / scale) + zero_point, clipped to [-128, 127], as int8",
        "int8 codes; error <= scale/2 inside the representable range; saturation outside; ties to even at "
        "exact midpoints; monotone in x"),
    _ex("requantize", "quantization", "code", 2, 15, ["tinyapprox.quant.integer:requantize_int8"],
        "round_shift(acc * m0, shift) with (m0, shift) = multiplier(M), add the zero point, clip to int8",
        "equals the library's requantize for int32 accumulators and multipliers 2^-20..4; within one code of "
        "rint(acc * M); int8 out"),
    _ex("pow2_matmul", "quantization", "code", 2, 15, ["tinyapprox.quant.integer:pow2_matmul_reference"],
        "for each output, add x << (exp - min_exp) where sign is +1 and subtract it where sign is -1",
        "equals x @ (sign * 2^(exp - min_exp)) exactly (int64) and the vectorised pow2_matmul, zero weights skipped"),
    # ------------------------------------------------------- pure NumPy: binarization
    _ex("stochastic_sign", "binarization", "code", 2, 10, ["tinyapprox.bnn.binarize:stochastic_sign_from_uniform"],
        "+1 where u < binarize_probability(x), else -1, in x's dtype",
        "equals StochasticSignSTE on the same draws; x >= 1 always +1, x <= -1 always -1; the mean over many "
        "draws is within 4 sigma of clip(x, -1, 1)"),
    _ex("bit_packing", "binarization", "code", 3, 25,
        ["tinyapprox.bnn.packing:pack_signs", "tinyapprox.bnn.packing:xnor_popcount_dot"],
        "bit j % 64 of word j // 64 is v[j] >= 0; the dot is k - 2 * popcount(a ^ b)",
        "packing equals kernels.pack_bits for every K (0, 1, 63, 64, 65, ...); the XNOR dot equals the float "
        "dot of the signs exactly, padding included"),
    _ex("bn_threshold", "binarization", "code", 3, 20, ["tinyapprox.bnn.packing:bn_sign_threshold"],
        "solve gamma * (d - mean) / sqrt(var + eps) + beta >= 0 for d; a negative gamma flips the comparison",
        "s * d >= t equals sign(batch_norm(d)) >= 0 for every integer d in [-k, k], both signs of gamma; "
        "agrees with fold_threshold"),
    # ---------------------------------------------------------- pure NumPy: training
    _ex("lost_updates", "training", "code", 2, 15, ["tinyapprox.optim.races:lost_increments"],
        "load the counter at 'begin', store loaded + 1 at 'end'; lost = updates - final counter",
        "equals hogwild.replay_schedule(processes=False)'s lost_increments on random interleavings of 1-4 "
        "workers; 0 for serial schedules"),
    _ex("stored_update", "training", "code", 2, 10, ["tinyapprox.optim.stored:stored_step"],
        "round (w + delta) * 2**f to the nearest integer, then scale back",
        "result on the grid; |delta| < step/2 leaves w unchanged (the update vanishes); error <= step/2; "
        "equals a DynamicFixedPoint round trip"),
    _ex("stochastic_update", "training", "code", 2, 15, ["tinyapprox.optim.stored:stochastic_stored_step"],
        "v = (w + delta) * 2**f; floor(v) + (u < v - floor(v)), scaled back",
        "always one of the two grid neighbours of w + delta; u = 0 rounds up unless exact; the mean over "
        "uniform draws equals w + delta (tiny updates survive on average)"),
    # --------------------------------------------- students write the property (mutation)
    _ex("prop_fake_quant", "quantization", "property", 3, 20, ["tinyapprox.testing.properties:check_fake_quant_error"],
        "assert: same shape, outputs are whole steps inside the range, |y - x| <= step/2 for x in range",
        "passes on fake_quant_symmetric for 40 hypothesis examples; fails on 4 mutants: identity, floor "
        "rounding, a 2^bits grid, saturation one step early"),
    _ex("prop_csr_round_trip", "pruning", "property", 3, 15, ["tinyapprox.testing.properties:check_csr_round_trip"],
        "assert: decode(encode(d)) has d's shape and bits exactly, and nnz == count_nonzero(d)",
        "passes on csr_arrays/csr_decode; fails on 4 mutants: last row dropped, rows and columns swapped, "
        "explicit zeros stored, tiny values dropped"),
    _ex("prop_no_revive", "pruning", "property", 3, 20, ["tinyapprox.testing.properties:check_no_revive"],
        "assert: new mask within old mask, the pruned count, newly pruned |w| <= kept |w|",
        "passes on magnitude_prune_step; fails on 4 mutants: fresh mask (revives), revive-all at amount 0, "
        "largest pruned first, one too few pruned"),
    # ------------------------------------------------------ engine: autograd and layers
    _ex("mul", "autograd", "code", 1, 5, [f"{_F}:Mul.backward"],
        "d(ab)/da = b, d(ab)/db = a; unbroadcast each to its input's shape", "gradcheck on broadcast shape pairs"),
    _ex("div", "autograd", "code", 1, 5, [f"{_F}:Div.backward"],
        "d(a/b)/da = 1/b, d(a/b)/db = -a/b^2; unbroadcast", "gradcheck on broadcast pairs, b away from 0"),
    _ex("exp", "autograd", "code", 1, 3, [f"{_F}:Exp.backward"], "reuse the saved output: d exp(x) = exp(x)",
        "gradcheck on any shape"),
    _ex("log", "autograd", "code", 1, 3, [f"{_F}:Log.backward"], "d log(x) = 1/x", "gradcheck on positive inputs"),
    _ex("sqrt", "autograd", "code", 1, 3, [f"{_F}:Sqrt.backward"], "d sqrt(x) = 1 / (2 sqrt(x)); sqrt(x) is saved",
        "gradcheck on positive inputs"),
    _ex("relu", "autograd", "code", 1, 3, [f"{_F}:ReLU.backward"], "pass the gradient where the output is > 0",
        "gradcheck away from 0; gradient exactly 0 at 0"),
    _ex("sigmoid", "autograd", "code", 1, 3, [f"{_F}:Sigmoid.backward"], "s (1 - s) with the saved output s",
        "gradcheck on any shape"),
    _ex("tanh", "autograd", "code", 1, 3, [f"{_F}:Tanh.backward"], "1 - t^2 with the saved output t",
        "gradcheck on any shape"),
    _ex("matmul", "autograd", "code", 3, 25, [f"{_F}:MatMul.backward"],
        "g @ b^T and a^T @ g; promote 1-D operands to 2-D and unbroadcast batch dims",
        "gradcheck on 1-D, 2-D and broadcast batched operands"),
    _ex("softmax", "autograd", "code", 2, 15, [f"{_F}:Softmax.backward"], "s * (g - sum(g * s)) along the axis",
        "gradcheck along every axis"),
    _ex("log_softmax", "autograd", "code", 2, 10, [f"{_F}:LogSoftmax.backward"],
        "g - softmax * sum(g) along the axis; softmax = exp(saved output)", "gradcheck along every axis"),
    _ex("linear", "layers", "code", 2, 15, [f"{_F}:Linear.backward"],
        "gx = g @ w, gw = g^T x over all leading dims, gb = g summed over them",
        "gradcheck with and without bias, 2-D and 3-D inputs"),
    _ex("cross_entropy", "layers", "code", 2, 10, [f"{_F}:CrossEntropy.backward"],
        "softmax(logits) minus the one-hot labels, times the per-sample gradient",
        "gradcheck with every reduction (mean, sum, none)"),
    _ex("fake_quant_ste", "quantization", "code", 1, 5, ["tinyapprox.quant.fake:FakeQuant.backward"],
        "the straight-through estimator: pass g where the input was inside the format's range, 0 elsewhere",
        "gradient is g inside [low, high], 0 outside, for int8 and dynamic fixed point formats"),
    _ex("sign_ste", "binarization", "code", 1, 5, ["tinyapprox.bnn.binarize:SignSTE.backward"],
        "the STE of sign is hardtanh's derivative: g where |x| <= 1, else 0",
        "gradient is g * (|x| <= 1) including |x| == 1 exactly"),
]

BY_NAME = {e["name"]: e for e in EXERCISES}


def max_points() -> int:
    """Total points of the course's exercises."""
    return sum(e["points"] for e in EXERCISES)
