"""Generate lectures/03_quantization.ipynb (outputs stripped). Run: python lectures/make_03_quantization.py"""
from nbbuild import Notebook

notebook = Notebook()
md, code = notebook.md, notebook.code
solution, tests = notebook.solution, notebook.tests


md("""
# Lecture 3 — Quantization: fewer bits per number

A trained network stores 32-bit floats, but it does not need 32 bits of precision.
This notebook draws the number formats of the lecture on a number line (FP16, affine
int8, Ristretto's dynamic fixed point, minifloats, power-of-two weights), applies each
one to a real layer, compares post-training quantization (PTQ) with quantization-aware
training (QAT), makes the accumulator-overflow caveat visible, and asks the honest
question: *is int8 actually faster here?*

Every quantizer is a pair `quantize` (real -> integer code) / `dequantize` (code -> real);
the network computes with `fake(x) = dequantize(quantize(x))` and learns through it with
the straight-through estimator (STE): gradient 1 inside the representable range, 0 outside.
""")
code("QUICK = False", tags=["parameters"])
code("""
import copy
import os

import numpy as np
import matplotlib.pyplot as plt

from tinyapprox import data, kernels, quant, train
from tinyapprox.quant import integer
from tinyapprox.experiments.harness import format_seconds, median_time, train_baseline

QUICK = QUICK or os.environ.get("TINYAPPROX_QUICK") == "1"
(train_x, train_y), (test_x, test_y) = data.load("fashion-mnist", limit=4000 if QUICK else None)
if QUICK:
    test_x, test_y = test_x[:1000], test_y[:1000]
    print("QUICK MODE: 4,000 training images, 2 epochs - a smoke run; the figures are not meaningful")
""")

md("""
## 1. Number formats on a number line

Eight bits each (four for the power-of-two weights), all covering roughly [-1, 1]:

* **affine int8**: 255 evenly spaced values, step = max|x| / 127;
* **dynamic fixed point** (Ristretto): integer length IL = ceil(log2 max|x|) + 1 (sign),
  fractional length FL = 8 - IL, step 2^-FL — the scale is a power of two;
* **minifloat 1-4-3 and 1-3-4**: sign, exponent, mantissa — dense near 0, sparse far away;
  the exponent bias is chosen so the largest value covers the range, with subnormals and
  saturation instead of infinity;
* **power of two** (4 bits): sign * 2^e — a multiplication becomes a shift.
""")
code("""
fmts = {
    "affine int8": quant.Affine.from_range(-1, 1, 8),
    "dfp 8 (FL=7)": quant.DynamicFixedPoint.from_range(1.0, 8),
    "minifloat 1-4-3": quant.Minifloat.from_range(1.0, 4, 3),
    "minifloat 1-3-4": quant.Minifloat.from_range(1.0, 3, 4),
    "pow2 4 bits": quant.PowerOfTwo.from_range(1.0, 4),
    "fp16 (shown in [-1, 1])": quant.FP16(),
}
fig, ax = plt.subplots(figsize=(9, 3.2))
for i, (name, f) in enumerate(fmts.items()):
    lv = f.levels() if not isinstance(f, quant.FP16) else np.linspace(-1, 1, 2049)
    lv = lv[np.abs(lv) <= 1]
    ax.plot(lv, np.full(lv.shape, i), "|", ms=12, mew=0.6)
    print(f"{name:<24} {len(lv):>5} values in [-1, 1]   {f!r}")
ax.set_yticks(range(len(fmts)), list(fmts))
ax.set_xlabel("value"); ax.set_ylabel("format"); ax.set_title("representable values in [-1, 1]")
plt.tight_layout(); plt.show()
""")
md("""
Zoom in near zero: the floats and the power-of-two grid spend their codes on small
magnitudes, the integer grids spend them evenly.
""")
code("""
fig, ax = plt.subplots(figsize=(9, 2.8))
for i, (name, f) in enumerate(list(fmts.items())[:5]):
    lv = f.levels()
    lv = lv[np.abs(lv) <= 0.1]
    ax.plot(lv, np.full(lv.shape, i), "|", ms=12, mew=0.8)
ax.set_yticks(range(5), list(fmts)[:5]); ax.set_xlim(-0.1, 0.1); ax.set_title("zoom on [-0.1, 0.1]")
ax.set_xlabel("value"); ax.set_ylabel("format")
plt.tight_layout(); plt.show()
""")

md("""
## 2. Rounding and saturation

Round to nearest with **ties to even** (`np.rint`: 0.5 -> 0, 1.5 -> 2), saturate outside
the range. Stochastic rounding rounds up with probability equal to the fractional part,
so it is unbiased on average. *Exercise*: write the b-bit symmetric quantizer yourself.
""")
solution("""
def my_symmetric_quantize(x, bits, max_abs):
    \"\"\"Codes of x on a symmetric b-bit grid covering [-max_abs, max_abs] (ties to even, saturating).

    Returns (int64 codes of x's shape, the scale max_abs / (2^(bits-1) - 1)).
    \"\"\"
    ### BEGIN SOLUTION
    qmax = 2 ** (bits - 1) - 1
    scale = max_abs / qmax
    return np.clip(np.rint(x / scale), -qmax, qmax).astype(np.int64), scale
    ### END SOLUTION
""", "symmetric_quantize")
tests("""
x = np.linspace(-1.5, 1.5, 601)
codes, scale = my_symmetric_quantize(x, 4, 1.0)
ref = quant.Affine.from_range(-1.0, 1.0, 4)
assert np.array_equal(codes, ref.quantize(x))
### BEGIN HIDDEN TESTS
for bits_t, max_t in ((2, 1.0), (3, 0.5), (8, 4.0)):
    q_t, s_t = my_symmetric_quantize(x, bits_t, max_t)
    qmax_t = 2 ** (bits_t - 1) - 1
    assert np.isclose(s_t, max_t / qmax_t) and np.abs(q_t).max() <= qmax_t
    inside = np.abs(x) <= max_t
    assert np.all(np.abs(q_t * s_t - x)[inside] <= s_t / 2 + 1e-12)
    assert np.array_equal(q_t, quant.Affine.from_range(-max_t, max_t, bits_t).quantize(x))
ties, _ = my_symmetric_quantize(np.array([0.5, 1.5, -0.5, 2.5]), 4, 7.0)
assert np.array_equal(ties, [0, 2, 0, 2])
### END HIDDEN TESTS
print("my_symmetric_quantize agrees with quant.Affine")
""", "symmetric_quantize_tests", 2)
code("""
stoch = np.mean([ref.fake(x, rounding="stochastic", rng=s) for s in range(200)], axis=0)
plt.figure(figsize=(7, 3))
plt.plot(x, x, "k:", lw=1, label="x")
plt.plot(x, ref.fake(x), label="nearest (4 bits)")
plt.plot(x, stoch, label="stochastic, mean of 200 draws")
plt.xlabel("x"); plt.ylabel("fake(x) = dequantize(quantize(x))")
plt.legend(); plt.title("quantize-dequantize: step, rounding, saturation"); plt.show()
""")

md("""
## 3. A trained network

LeNet-300-100 on Fashion-MNIST (10 epochs; cached in `runs/quantize` by the command
`tinyapprox quantize`). In quick mode: 4,000 images, two epochs — enough to be far above
chance, not enough for the weights to leave their uniform initialisation far behind (the
histograms below then still look flat).
""")
code("""
if QUICK:
    model, _, _ = train_baseline("lenet-300-100", epochs=2, limit=4000, verbose=False)
else:
    model, _, _ = train_baseline("lenet-300-100", epochs=10, out_dir="../runs/quantize", verbose=False)
base = quant.evaluate(model, test_x, test_y)
print(f"float32 top-1: {100 * base:.2f}%")
""")

md("""
## 4. Each scheme on a real layer

The first layer's 235,200 weights, quantized by each scheme: the histogram of the
weights with the representable values on top (red), and the error relative to the weights'
spread. Where a format has more than 64 values inside the weights' range the lines would
merge into a red band, so only every k-th is drawn and the title says so. The two 8-bit
minifloats differ in their split: 1 sign, 4 exponent, 3 mantissa bits (1-4-3) against
1-3-4.
""")
code("""
w = model[1].weight.data.astype(np.float64)
schemes = [("int8", 8, {}), ("int8", 4, {}), ("dfp", 8, {}), ("dfp", 4, {}), ("minifloat", 8, {"exp_bits": 4}),
           ("minifloat", 8, {"exp_bits": 3}), ("pow2", 4, {}), ("fp16", 16, {})]
def label(sch, b, kw):
    if sch == "minifloat":
        e = kw["exp_bits"]
        return f"minifloat {b} (1-{e}-{b - 1 - e})"
    return f"{sch} {b}"


fig, axes = plt.subplots(2, 4, figsize=(13, 5.4), sharex=True)
for ax, (sch, b, kw) in zip(axes.ravel(), schemes):
    f = quant.make_format(sch, w.min(), w.max(), b, "weight", **kw)
    err = f.fake(w) - w
    ax.hist(w.ravel(), bins=120, color="0.7", label="weights")
    lv = f.levels() if sch != "fp16" else np.array([])
    lv = lv[(lv >= w.min()) & (lv <= w.max())]
    every = max(1, int(np.ceil(len(lv) / 64)))
    for i, v in enumerate(lv[::every]):
        ax.axvline(v, color="C3", lw=0.4, alpha=0.6, label="representable values" if i == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("weight value"); ax.set_ylabel("count (log scale)")
    shown = f"all {len(lv)} values drawn" if every == 1 else f"1 in {every} of {len(lv)} values drawn"
    if sch == "fp16":
        shown = "30k+ values: too dense to draw"
    ax.set_title(f"{label(sch, b, kw)}: rms err / std = {np.sqrt(np.mean(err ** 2)) / w.std():.3f}\\n({shown})",
                 fontsize=8)
axes[0, 0].legend(fontsize=7, loc="upper left")
plt.tight_layout(); plt.show()
""")

md("""
## 5. Post-training quantization of the whole network

`quant.ptq` copies the model, attaches a weight quantizer (a `ParamTransform`) to every
layer, inserts an `ActQuant` in front of every layer and calibrates the activation ranges
on a few hundred training images. Nothing is retrained.
""")
code("""
rows = []
for sch, b, ab, kw in [("fp16", 16, 16, {}), ("int8", 8, 8, {}), ("dfp", 8, 8, {}), ("dfp", 6, 6, {}),
                       ("dfp", 4, 4, {}), ("minifloat", 8, 8, {"exp_bits": 4}), ("minifloat", 8, 8, {"exp_bits": 3}),
                       ("pow2", 4, 8, {})]:
    q = quant.ptq(model, sch, b, ab, train_x, 512, **kw)
    acc = quant.evaluate(q, test_x, test_y)
    size = quant.model_size(q)
    rows.append((label(sch, b, kw), b, acc))
    print(f"{label(sch, b, kw):<22}{b:>3} bits (act {ab:>2})  top-1 {100 * acc:6.2f}  AccLoss {100 * (base - acc):6.2f} pp  "
          f"{size['bytes']:>9,} bytes  compression {size['compression']:.2f}x")
""")

md("""
## 6. PTQ against QAT at 4 bits

Quantization-aware training keeps the full-precision *shadow* weights, computes the
forward pass with their quantized values, and passes gradients straight through the
quantizers. Starting from the trained model, a little training recovers most of the loss.
QAT trains for extra epochs, and extra epochs alone can raise accuracy; so the fair
reference is the float model trained for the *same* extra epochs with the same recipe
(the `float + same epochs` row), not the original float model.
""")
code("""
ptq4 = quant.ptq(model, "dfp", 4, 4, train_x, 512)
acc_ptq = quant.evaluate(ptq4, test_x, test_y)
extra = 2 if QUICK else 3
qat4, hist = quant.qat(model, "dfp", 4, 4, train_x, train_y, epochs=extra, lr=0.01)
acc_qat = quant.evaluate(qat4, test_x, test_y)
float_more = copy.deepcopy(model)
quant.finetune(float_more, train_x, train_y, epochs=extra, lr=0.01)       # same optimizer, epochs, data order
acc_float_more = quant.evaluate(float_more, test_x, test_y)
print(f"{'float (original)':<26}{100 * base:6.2f}%")
print(f"{f'float + same {extra} epochs':<26}{100 * acc_float_more:6.2f}%   <- the reference for QAT")
print(f"{'DFP-4 PTQ':<26}{100 * acc_ptq:6.2f}%   AccLoss {100 * (acc_float_more - acc_ptq):5.2f} pp")
print(f"{f'DFP-4 QAT ({extra} epochs)':<26}{100 * acc_qat:6.2f}%   AccLoss {100 * (acc_float_more - acc_qat):5.2f} pp")
layer = qat4[2]
print("shadow weights still float32:", layer.weight.data.dtype,
      "| distinct effective values:", len(np.unique(layer.weight.effective().data)))
""")

md("""
## 7. The overflow caveat

An int8 x int8 product needs 16 bits, and a dot product of K of them needs about
log2(K) more. `integer.accumulator_bound` answers: for this layer's K and value ranges,
can the accumulator overflow? With int32 LeNet is safe by a wide margin; with a 16-bit
accumulator it is not — and the constructed case below shows the wrap-around.
""")
code("""
q8 = quant.ptq(model, "int8", 8, 8, train_x, 512, pow2_scale=True)
for bits in (32, 16):
    im = quant.convert(q8, acc_bits=bits)
    for r in im.check():
        print(f"acc {bits}-bit, layer {r['layer']}: worst |acc| {r['bound']:>10,} vs limit {r['limit']:>13,}"
              f" -> {'safe' if r['safe'] else 'CAN OVERFLOW'}")

print("constructed case: K = 4, all codes 127 -> 4 * 127 * 127 =", 4 * 127 * 127)
print("16-bit wrap-around gives", int(integer.wrap(4 * 127 * 127, 16)))
sim = train.predict(q8, test_x[:500]).astype(np.float64)
out16 = train.predict(quant.convert(q8, acc_bits=16), test_x[:500])
print(f"LeNet with a 16-bit accumulator: {np.mean(out16.argmax(1) == sim.argmax(1)) * 100:.1f}% of predictions "
      "unchanged")
""")

md("""
## 8. Is int8 faster here?

`quant.convert` lowers the fake-quant model to integer inference layers: the images are
quantized once, int8 codes flow between layers, and each layer is one fused kernel call
(int8 product, int32 accumulator, bias, integer requantization to the next layer's codes,
ReLU as the lower clip). With power-of-two scales it is *bit for bit* equal to the
fake-quant simulation. It is an `nn.Module` like the float model, so `train.predict`,
`summary` and `cost` run it unchanged. Then we time it against this project's own float32
inference — same machine, same run, median of repeats.
""")
code("""
print(kernels.info())
im = quant.convert(q8)
im.summary((1, 1, 28, 28))
logits_int = train.predict(im, test_x)
logits_sim = train.predict(q8, test_x)
print("integer == simulation:", np.array_equal(logits_int, logits_sim))


# median_time (tinyapprox.experiments.harness): median of repeats after a warm-up, as every benchmark here
t32 = median_time(lambda: train.predict(model, test_x), repeat=3)
t8 = median_time(lambda: train.predict(im, test_x), repeat=3)
print(f"{len(test_x)} images: float32 {format_seconds(t32)}, int8 {format_seconds(t8)} -> measured speedup {t32 / t8:.2f}x")
""")
md("""
The answer depends on the machine: the int8 kernel's SIMD path (`kernels.info()`), the
float BLAS it competes with, and the Python work around the kernel (quantizing the input,
requantizing between layers). A 4x smaller model is a fact; a 4x faster one is a
measurement.

## 9. Ristretto's range statistics, and its figure 4 on this network

Why dynamic fixed point exists: the values a layer sees span very different ranges per
layer — weights, inputs and outputs each need their own integer length. Below, per weight
layer, the histograms of log2|w| and of log2|a| of the activations it receives (on real
test images; zeros left out); dynamic fixed point gives each its own fractional length.
""")
code("""
from tinyapprox.nn import trace_layers, weight_layers

records = {name: x for name, _, x, _ in trace_layers(model, data.images_to_float(test_x[:256]))}
layers = weight_layers(model)
fig, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 3.2), sharey=True)
for ax, (name, m) in zip(np.atleast_1d(axes), layers):
    w = np.abs(m.weight.data.ravel()); a = np.abs(records[name].ravel())
    ax.hist(np.log2(w[w > 0]), bins=60, alpha=0.6, density=True, label="log2 |w|")
    ax.hist(np.log2(a[a > 0]), bins=60, alpha=0.6, density=True, label="log2 |a| (its input)")
    ax.set_xlabel("log2 of magnitude"); ax.set_ylabel("density"); ax.set_title(f"layer {name}")
    ax.legend(fontsize=8)
plt.tight_layout(); plt.show()
""")
md("""
Ristretto's figure 4 compares its three approximations at 8 bits, before and after
fine-tuning. Here the same on LeNet-300-100 (weights and activations at 8 bits; power-of-two
weights with 8-bit activations), each fine-tuned for the same extra epochs as the float
reference of section 6.
""")
code("""
fig4 = []
for name, sch, kw in [("dynamic fixed point", "dfp", {}), ("minifloat (1-4-3)", "minifloat", {"exp_bits": 4}),
                      ("power-of-two weights", "pow2", {})]:
    bits = 4 if sch == "pow2" else 8
    q = quant.ptq(model, sch, bits, 8, train_x, 512, **kw)
    before = quant.evaluate(q, test_x, test_y)
    quant.finetune(q, train_x, train_y, epochs=extra, lr=0.01)
    fig4.append((name, before, quant.evaluate(q, test_x, test_y)))
x_pos = np.arange(len(fig4))
plt.figure(figsize=(7, 3.4))
plt.bar(x_pos - 0.2, [100 * r[1] for r in fig4], 0.4, label="without fine-tuning")
plt.bar(x_pos + 0.2, [100 * r[2] for r in fig4], 0.4, label=f"fine-tuned {extra} epochs")
plt.axhline(100 * acc_float_more, color="k", ls="--", lw=1, label=f"float + same {extra} epochs")
plt.xticks(x_pos, [r[0] for r in fig4]); plt.xlabel("approximation (8-bit activations)")
plt.ylabel("test top-1 (%)"); plt.ylim(max(0, 100 * min(r[1] for r in fig4) - 10), 100)
plt.legend(fontsize=8); plt.title("Ristretto's figure 4 on LeNet-300-100"); plt.show()
for name, b, a in fig4:
    print(f"{name:<22} {100 * b:6.2f}% -> {100 * a:6.2f}% fine-tuned")
""")
md("""
**Things to try.** Per-channel weight scales (`per_channel=True`) at 4 bits. The
percentile observer for activations. `quant.search_bitwidths` (Ristretto's search) and
`quant.sensitivity` — which layer hurts most when quantized alone?
""")

notebook.write("03_quantization.ipynb")
