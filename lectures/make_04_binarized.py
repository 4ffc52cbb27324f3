"""Generate lectures/04_binarized.ipynb (outputs stripped). Run: python lectures/make_04_binarized.py"""
from nbbuild import Notebook

notebook = Notebook()
md, code = notebook.md, notebook.code
solution, tests = notebook.solution, notebook.tests


md("""
# Lecture 4 — Binarized neural networks: one bit per weight, one bit per activation

Quantization taken to the end: every weight and every hidden activation is +1 or −1
(Courbariaux, Hubara et al., *Binarized Neural Networks*, 2016). A dot product of two ±1
vectors then needs no multiplication at all — pack 64 values into one 64-bit word and

$$a \\cdot w = K - 2\\,\\mathrm{popcount}(a \\oplus w).$$

This notebook: the sign function and the **straight-through estimator** (STE) that lets
us train through it; a training run against a float network of the same shape; packing
bits by hand; the XNOR dot product on a small example; folding batch norm + sign into an
integer threshold; and finally the speed of the XNOR kernel against float32 BLAS.
""")
code("QUICK = False", tags=["parameters"])
code("""
import os

import numpy as np
import matplotlib.pyplot as plt

import tinyapprox as ta
from tinyapprox import bnn, data, kernels, metrics, nn

QUICK = QUICK or os.environ.get("TINYAPPROX_QUICK") == "1"
(train_x, train_y), (test_x, test_y) = data.load("fashion-mnist", limit=4000 if QUICK else None)
if QUICK:
    test_x, test_y = test_x[:1000], test_y[:1000]
    print("QUICK MODE: 4,000 training images, 2 epochs - a smoke run; the figures are not meaningful")
HIDDEN = (256, 256) if QUICK else (1024, 1024, 1024)
EPOCHS = 2 if QUICK else 10
print(kernels.info())
""")

md("""
## 1. Sign and its straight-through estimator

`bnn.sign_ste(x)` is +1 where x ≥ 0 and −1 elsewhere — **zero maps to +1**, the same
convention as `kernels.pack_bits` (bit = x ≥ 0). Its true derivative is 0 almost
everywhere, so backpropagation would stop. The STE passes the upstream gradient through
where |x| ≤ 1 and cancels it outside: the derivative of `hardtanh`. Stochastic
binarization draws +1 with probability clip((x+1)/2, 0, 1).
""")
code("""
x = ta.tensor(np.linspace(-2, 2, 401), requires_grad=True)
y = bnn.sign_ste(x)
y.sum().backward()          # d(sum sign(x))/dx through the STE

draws = bnn.stochastic_sign(np.repeat(x.data[:, None], 400, axis=1), np.random.default_rng(0)).data
fig, ax = plt.subplots(1, 3, figsize=(12, 3))
ax[0].plot(x.data, y.data, label="sign(x), sign(0) = +1"); ax[0].set_title("forward: sign(x)")
ax[0].set_ylabel("output"); ax[0].legend(fontsize=8)
ax[1].plot(x.data, x.grad, color="C1", label="d sign / dx used by backward")
ax[1].set_title("backward: STE = 1 where |x| <= 1"); ax[1].set_ylabel("gradient"); ax[1].legend(fontsize=8)
ax[2].plot(x.data, bnn.binarize_probability(x.data), label="clip((x+1)/2, 0, 1)")
ax[2].plot(x.data, (draws == 1).mean(axis=1), ".", ms=2, label="measured, 400 draws")
ax[2].set_title("stochastic: P(+1)"); ax[2].set_ylabel("P(+1)"); ax[2].legend(fontsize=8)
for a in ax: a.grid(alpha=0.3); a.set_xlabel("x")
plt.tight_layout(); plt.show()
""")

md("""
During training the network keeps **latent real weights**. The forward pass uses their
signs (a `Binarize` transform on the weight parameter), the optimizer updates the latent
values, and after each step they are clipped back to [−1, 1] — beyond that the STE would
cancel their gradient for good and they could drift away forever.
""")
code("""
layer = bnn.BinaryLinear(4, 3, binary_input=False, seed=0)
print(layer.weight)                        # the latent weight carries a Binarize transform
print("latent:\\n", layer.weight.data.round(2))
print("used in the forward pass:\\n", layer.binary_weight().data)
opt = ta.optim.Adam(layer.parameters(), lr=5.0)   # a huge step, to show the clip
(layer(ta.tensor(np.ones((2, 4), np.float32))) ** 2).sum().backward()
opt.step()
print("after one step, clipped to [-1, 1]:\\n", layer.weight.data.round(2))
""")

md("""
## 2. Training: the paper's recipe, float vs binary

Each block is `BinaryLinear -> BatchNorm1d`, and the *next* binary layer binarizes what it
receives, so the activation is sign(batch norm(·)). The first layer sees real pixels; the
last batch norm outputs the scores. Loss: squared hinge on ±1 targets; Adam with a
decaying learning rate. The float twin has the same layers with float weights and
`Hardtanh` activations, trained the same way.
""")
code("""
bnn_model = bnn.bnn_mlp(hidden=HIDDEN, seed=0)
float_model = bnn.float_mlp(hidden=HIDDEN, seed=0)
hist_bnn = bnn.train_bnn(bnn_model, (train_x, train_y), EPOCHS, val=(test_x, test_y))
hist_float = bnn.train_bnn(float_model, (train_x, train_y), EPOCHS, val=(test_x, test_y))

fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
for name, h in [("float", hist_float), ("BNN", hist_bnn)]:
    ax[0].plot(h["epoch"], h["loss"], marker=".", label=name)
    ax[1].plot(h["epoch"], [1 - v for v in h["val_top1"]], marker=".", label=name)
ax[0].set_title("training loss"); ax[1].set_title("validation error")
ax[0].set_ylabel("squared hinge loss"); ax[1].set_ylabel("1 - top-1")
for a in ax: a.legend(); a.grid(alpha=0.3); a.set_xlabel("epoch")
plt.tight_layout(); plt.show()
a_float, a_bnn = hist_float.last("val_top1"), hist_bnn.last("val_top1")
print(f"float {a_float:.4f}, BNN {a_bnn:.4f}, AccLoss {100 * metrics.acc_loss(a_float, a_bnn):.2f} pp")
""")

md("""
## 3. Packing bits by hand

Bit `j % 64` of word `j // 64` holds element j: 1 for +1, 0 for −1. Padding bits beyond K
are 0. Write the packing of one row yourself and compare with `kernels.pack_bits`.
""")
code("""
rng = np.random.default_rng(1)
K = 70                                   # not a multiple of 64: two words, the second mostly padding
v = rng.choice([-1, 1], K)
""")
solution("""
def pack_row(v):
    \"\"\"(K,) of +-1 -> (ceil(K/64),) uint64: bit j % 64 of word j // 64 is 1 where v[j] >= 0.\"\"\"
    ### BEGIN SOLUTION
    words = [0] * ((len(v) + 63) // 64)
    for j, value in enumerate(v):
        if value >= 0:
            words[j // 64] |= 1 << (j % 64)
    return np.array(words, dtype=np.uint64)
    ### END SOLUTION
""", "pack_row")
tests("""
mine = pack_row(v)
print([f"{w:064b}"[::-1] for w in mine])   # printed low bit first, so it reads like v
print("".join("1" if e > 0 else "0" for e in v))
assert np.array_equal(mine, kernels.pack_bits(v[None])[0])
### BEGIN HIDDEN TESTS
for k_t in (1, 63, 64, 65, 128, 129):
    v_t = np.random.default_rng(k_t).choice([-1, 1], k_t)
    assert np.array_equal(pack_row(v_t), kernels.pack_bits(v_t[None])[0])
assert np.array_equal(pack_row(np.zeros(3)), np.array([7], dtype=np.uint64))  # sign(0) = +1
### END HIDDEN TESTS
""", "pack_row_tests", 1)

md("""
## 4. The XNOR dot product on a small example

Where a and w agree, a_j w_j = +1; where they disagree, −1. XOR marks the disagreements, so
a · w = (K − d) − d = K − 2d with d = popcount(a ⊕ w). (XNOR counts agreements instead:
same formula read the other way round.)
""")
code("""
a = np.array([+1, -1, +1, +1, -1, -1, +1, -1])
w = np.array([+1, +1, -1, +1, -1, +1, +1, +1])
abits, wbits = kernels.pack_bits(a[None])[0, 0], kernels.pack_bits(w[None])[0, 0]
print(f"a bits {int(abits):08b}   w bits {int(wbits):08b}   (bit 0 on the right)")
""")
solution("""
def xnor_dot(abits, wbits, K):
    \"\"\"Dot product of two +-1 vectors of length K <= 64 packed into one word each.\"\"\"
    ### BEGIN SOLUTION
    disagree = bin(int(abits) ^ int(wbits)).count("1")
    return K - 2 * disagree
    ### END SOLUTION
""", "xnor_dot")
tests("""
print("a . w =", a @ w, "  K - 2 popcount(a XOR w) =", xnor_dot(abits, wbits, len(a)))
assert xnor_dot(abits, wbits, len(a)) == a @ w == bnn.xnor_dot(a, w)
### BEGIN HIDDEN TESTS
for k_t in (1, 7, 33, 64):
    r_t = np.random.default_rng(k_t)
    a_t, w_t = r_t.choice([-1, 1], k_t), r_t.choice([-1, 1], k_t)
    ab_t, wb_t = kernels.pack_bits(a_t[None])[0, 0], kernels.pack_bits(w_t[None])[0, 0]
    assert xnor_dot(ab_t, wb_t, k_t) == a_t @ w_t
### END HIDDEN TESTS
""", "xnor_dot_tests", 1)

md("""
## 5. Batch norm + sign = an integer threshold

A hidden unit outputs sign(γ (d − μ)/σ + β) for the integer dot product d. For γ > 0 that
is d ≥ τ with τ = μ − βσ/γ, i.e. d ≥ ⌈τ⌉; for **γ < 0 the comparison flips** (d ≤ ⌊τ⌋);
for γ = 0 it is a constant. `bnn.pack` computes each threshold by running the network's
own batch norm over every integer d in [−K, K], which makes the packed network agree with
the float one *exactly*, even where float32 rounding sits right on the threshold.
""")
code("""
K = 16
bn = nn.BatchNorm1d(3, eps=1e-4).eval()
bn.gamma.data[:] = [2.0, -1.5, 0.0]
bn.beta.data[:] = [0.5, 0.3, -0.2]
bn.running_mean[:] = [3.0, -2.0, 0.0]
bn.running_var[:] = [4.0, 9.0, 1.0]
s, t, tau = bnn.fold_threshold(bn.gamma.data, bn.beta.data, bn.running_mean, bn.running_var, eps=1e-4, k=K)
print("tau", tau.round(3), " direction", s, " integer threshold", t)
d = np.arange(-K, K + 1)
with ta.no_grad():
    z = bn(ta.tensor(np.repeat(d[:, None], 3, axis=1).astype(np.float32))).data
assert np.array_equal(bnn.apply_threshold(np.repeat(d[:, None], 3, axis=1), s, t), z >= 0)
plt.plot(d, z, marker="."); plt.axhline(0, color="k", lw=0.5, label="_zero")
plt.legend(["gamma > 0: d >= ceil(tau)", "gamma < 0: d <= floor(tau)", "gamma = 0: constant"])
plt.xlabel("integer dot product d"); plt.ylabel("batch norm output"); plt.show()
""")

md("""
## 6. Bit-packed inference, and how fast it is

`bnn.pack(model)` lowers the network to an `nn.Module` of packed layers: the first layer
in float (real pixels times binary weights, then batch norm + sign as one exact float
threshold per unit), every hidden layer one XNOR/popcount kernel call with integer
thresholds that turns packed bits into packed bits, and the last layer an integer dot +
batch-norm affine. Its hidden activations and predictions equal the float model's exactly,
and `train.evaluate`, `summary` and `cost` run it like the float model.
""")
code("""
packed = bnn.pack(bnn_model)
packed.summary((1, 1, 28, 28))
x_test = (test_x / np.float32(255))[:, None]
want_scores, want_hidden = bnn.sign_path(bnn_model, x_test)
scores, hidden = ta.train.predict(packed, x_test), packed.hidden(x_test)
assert np.array_equal(scores, want_scores) and all(np.array_equal(a, b) for a, b in zip(hidden, want_hidden))
print("packed == float sign path on", len(x_test), "images; top-1", metrics.accuracy(scores, test_y))
b_float, b_packed = ta.cost.model_bytes(float_model), ta.cost.model_bytes(packed)
print(f"size: float {b_float / 1024:.0f} KiB, packed {b_packed / 1024:.0f} KiB "
      f"(compression ratio {b_float / b_packed:.1f}x)")
""")
code("""
from tinyapprox.experiments.harness import format_seconds, median_time  # median of repeats after a warm-up

# one hidden layer over the test batch, on its real activations
x_bits = hidden[0] > 0
stage = packed[2]                    # the first hidden (bits in, bits out) layer
w_pm1 = stage.wb.reshape(stage.out_channels, -1)
x_pm1 = np.where(x_bits, 1, -1).astype(np.float32)
xp, wp = bnn.pack_bool(x_bits), bnn.pack_bool(w_pm1 > 0)
t_float = median_time(lambda: x_pm1 @ w_pm1.T, repeat=3)
t_xnor = median_time(lambda: kernels.xnor_gemm(xp, wp, stage.k), repeat=3)
assert np.array_equal(kernels.xnor_gemm(xp, wp, stage.k), (x_pm1 @ w_pm1.T).astype(np.int32))
print(f"{x_pm1.shape} x {w_pm1.shape[::-1]}: float32 BLAS {format_seconds(t_float)}, "
      f"XNOR ({kernels.info()['xnor_gemm']}) {format_seconds(t_xnor)} -> {t_float / t_xnor:.1f}x")

n = 512 if QUICK else 2048
A, B = np.random.default_rng(0).random((2, n, n)) < 0.5
Af, Bf = np.where(A, 1, -1).astype(np.float32), np.where(B, 1, -1).astype(np.float32)
Ap, Bp = bnn.pack_bool(A), bnn.pack_bool(B)
t_f = median_time(lambda: Af @ Bf.T, repeat=3)
t_x = median_time(lambda: kernels.xnor_gemm(Ap, Bp, n), repeat=3)
print(f"{n}^3 product: float32 {format_seconds(t_f)}, XNOR {format_seconds(t_x)} -> {t_f / t_x:.1f}x "
      "(the command `tinyapprox binarize` measures this single-threaded, with a plain baseline too)")
""")
md("""
## 7. Stochastic binarization: "may do better, but is harder"

With `stochastic=True` the forward pass draws each weight's sign at random while training,
+1 with probability (1 + w) / 2 (the hard sigmoid of the latent weight w); inference uses
the deterministic sign. A latent weight near 0 is a coin flip, so the network only gets
reliable signs once its latent weights move towards ±1 — and they start uniform in
[−1, 1] and move about one learning rate per Adam step. Below, the same small network
trained deterministically, stochastically with the deterministic recipe, and
stochastically with ten times the learning rate (what `tinyapprox binarize` does by
default, `--stochastic-lr-scale 10`): a curve, not a single number.
""")
code("""
small = (256, 256)
curves = {}
for name, stochastic, scale in [("deterministic", False, 1), ("stochastic, same lr", True, 1),
                                ("stochastic, 10x lr", True, 10)]:
    m = bnn.bnn_mlp(hidden=small, seed=0, stochastic=stochastic)
    h = bnn.train_bnn(m, (train_x, train_y), max(EPOCHS, 4 if QUICK else 10), val=(test_x, test_y),
                      lr_start=3e-3 * scale, lr_end=3e-5 * scale, verbose=False)
    curves[name] = h
plt.figure(figsize=(6, 3.5))
for name, h in curves.items():
    plt.plot(h["epoch"], h["val_top1"], marker=".", label=name)
plt.xlabel("epoch"); plt.ylabel("test top-1"); plt.legend(); plt.grid(alpha=0.3)
plt.title("784-256-256-10 BNN: deterministic vs stochastic binarization"); plt.show()
for name, h in curves.items():
    print(f"{name:<22} final test top-1 {h.last('val_top1'):.4f}")
""")
md("""
The stochastic network trains more slowly, and at the deterministic learning rate it lags
far behind: its draws stay close to coin flips. With a larger learning rate it catches up
most of the way (on Fashion-MNIST, 20 epochs: about 0.81 against 0.85 deterministic). The
paper's point that stochastic binarization "may do better" is a regulariser's promise on
larger problems; it also costs a random number per weight and per step, which hardware
must provide — "harder to implement".

**Things to try.** Train with `stochastic=True`. Replace the calibrated thresholds by
`fold_threshold`'s float64 ones and count the activations that change. Time the whole
packed network against the float one (`tinyapprox bench inference --model bnn-mlp`) and
profile it — and explain why the first layer (real pixels) now dominates.
""")

notebook.write("04_binarized.ipynb")
