"""Generate lectures/06_costs_and_claims.ipynb (outputs stripped). Run: python lectures/make_06_costs_and_claims.py"""
from nbbuild import Notebook

notebook = Notebook()
md, code = notebook.md, notebook.code


md("""
# Lecture 6 — What things cost, and which claims hold

The other notebooks build the techniques. This one checks the words and numbers the lecture
uses about them: what a "synapse" is in code, what backpropagation computes, what a test
accuracy estimates, how many FLOPs a network "has", what an operation costs in energy and
silicon, and four claims from the pruning literature — FC layers prune better than conv
layers, a pruned network is not always better than a smaller dense one (Blalock et al.),
sparse solutions lie near the dense one, and structure is what makes sparsity fast (Scalpel).

Definitions as elsewhere: sparsity = zeros / total, density = 1 − sparsity; one
multiply-add = 1 MAC = 2 FLOPs; *speedup* is a measured wall-clock ratio (same machine,
same run, median of repeats), a FLOP ratio is a *theoretical* speedup. Timings come from
a shared machine: compare ratios, not milliseconds.
""")
code("QUICK = False", tags=["parameters"])
code("""
import os

import numpy as np
import matplotlib.pyplot as plt

import tinyapprox as ta
from tinyapprox import cost, data, models, nn, optim, prune, train
from tinyapprox import functional as F
from tinyapprox.experiments.harness import train_baseline

QUICK = QUICK or os.environ.get("TINYAPPROX_QUICK") == "1"
# Quick mode still trains 2 epochs on a few thousand images so that every comparison points
# the right way, but its numbers are far from converged: read them as a smoke test only.
MLP_TRAIN, CONV_TRAIN, FINETUNE_IMAGES, N_TEST = (4000, 1500, 500, 1000) if QUICK else (60000, 20000, 20000, 10000)
MLP_EPOCHS, CONV_EPOCHS, FINETUNE_EPOCHS, RETRAIN_EPOCHS = (6, 2, 2, 2) if QUICK else (10, 3, 1, 3)
REPEATS = 3 if QUICK else 15
if QUICK:
    print("QUICK MODE: a few thousand images and 2-6 epochs; the figures below are a smoke test and not meaningful")

(train_x, train_y), (test_x, test_y) = data.load("fashion-mnist")
test_x, test_y = test_x[:N_TEST], test_y[:N_TEST]
mlp_data = ((train_x[:MLP_TRAIN], train_y[:MLP_TRAIN]), (test_x, test_y))
conv_data = ((train_x[:CONV_TRAIN], train_y[:CONV_TRAIN]), (test_x, test_y))
dense_mlp, _, m = train_baseline("lenet-300-100", epochs=MLP_EPOCHS, dataset=mlp_data, out_dir="runs/lecture06",
                                 verbose=False)
print(f"LeNet-300-100: {MLP_TRAIN:,} images x {MLP_EPOCHS} epochs, test top-1 {m['top1']:.4f}")
lenet5, _, m = train_baseline("lenet5", epochs=CONV_EPOCHS, dataset=conv_data, out_dir="runs/lecture06",
                              verbose=False)
print(f"LeNet-5:       {CONV_TRAIN:,} images x {CONV_EPOCHS} epochs, test top-1 {m['top1']:.4f}")
xb = np.ascontiguousarray(data.images_to_float(test_x[:256]))  # timing batch (256, 1, 28, 28)
xb5 = xb[:64] if QUICK else xb                                   # LeNet-5 is slow: a smaller batch when quick


def acc(model):
    return train.evaluate(model, test_x, test_y)["top1"]


def copy_of(model, build):
    return build().load_state_dict(model.state_dict())


def finetune(model, images, labels, epochs, seed=0, lr=0.01):
    loader = data.DataLoader(images, labels, batch_size=128, shuffle=True, seed=seed)
    train.fit(model, loader, F.cross_entropy, optim.SGD(model.parameters(), lr=lr, momentum=0.9), epochs,
              verbose=False)
    return model
""")

md("""
## 1. The vocabulary, mapped to code

| lecture word | in tinyapprox |
|---|---|
| neuron (unit) *j* of a layer | output `j` of a `Linear`: row `weight[j]` and `bias[j]`; its value is `y[:, j]` |
| synapse (connection) from input *i* to neuron *j* | one entry `weight[j, i]` of a `Linear` |
| pre-activation / activation | the `Linear` output / the `ReLU` output after it |
| layer `W^T a = b` | `nn.Linear`; its `weight` (out, in) is the lecture's `W^T` |
| feature map *o* | output channel `y[:, o]` of a `Conv2d` (N, O, OH, OW) |
| filter *o* / kernel (*o*, *c*) | `conv.weight[o]` (C, kh, kw) / `conv.weight[o, c]` (kh, kw) |
| parameters | weights and biases: `model.parameters()` |
| logits | the last layer's outputs, before the softmax |

So "pruning a synapse" zeroes one weight entry, and "pruning a neuron" zeroes a row and its bias
(`granularity="filter"` on a `Linear`).
""")
code("""
for name, net in (("LeNet-300-100", dense_mlp), ("LeNet-5", lenet5)):
    synapses = sum(m.weight.size for _, m in nn.weight_layers(net))
    neurons = sum(m.weight.shape[0] for _, m in nn.weight_layers(net) if isinstance(m, nn.Linear))
    maps = sum(m.weight.shape[0] for _, m in nn.weight_layers(net) if isinstance(m, nn.Conv2d))
    params = sum(p.size for p in net.parameters())
    print(f"{name:<14} synapses (weights) {synapses:>8,}  fc neurons {neurons:>4}  conv filters {maps:>3}  "
          f"parameters {params:>8,}")

# one neuron by hand: the most active hidden unit j of the first layer on one image
x = data.images_to_float(test_x[:1]).reshape(1, -1)
records = cost.trace_layers(dense_mlp, x)            # (name, module, input, output) per layer call
j = int(records[2][3][0].argmax())                   # records[2]: the ReLU after the first Linear
first = dense_mlp[1]
by_hand = max(0.0, float(first.weight.data[j] @ x[0] + first.bias.data[j]))
print(f"neuron {j}: relu(weight[{j}] . x + bias[{j}]) = {by_hand:.5f}; the model's activation: "
      f"{records[2][3][0, j]:.5f}")
""")

md("""
## 2. Backpropagation is the transposed product

Forward, a layer computes `b = W^T a` (in code `y = x @ weight.T + bias`, a batch of rows).
Backward, the error at the outputs, `δ = ∂L/∂y`, flows back *through the same synapses in the
opposite direction*: each input collects the errors of the neurons it feeds, weighted by the
same weights. That is the product with the transposed matrix, `∂L/∂a = W δ` (in code
`δ @ weight`). The weight gradient is the outer product of what came in and what came back,
`∂L/∂W^T = δ^T x`, and the bias gradient sums `δ` over the batch. Below, autograd's answer
is compared with these three products, then with a finite difference.
""")
code("""
rng = np.random.default_rng(0)
x = ta.tensor(rng.standard_normal((5, 6)), requires_grad=True)        # batch of 5, 6 inputs
w = ta.tensor(rng.standard_normal((4, 6)), requires_grad=True)        # weight (out=4, in=6)
b = ta.tensor(rng.standard_normal(4), requires_grad=True)
labels = rng.integers(0, 4, 5)
loss = F.cross_entropy(F.linear(x, w, b), labels)
loss.backward()

y = x.data @ w.data.T + b.data                                         # forward by hand
p = np.exp(y - y.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
delta = (p - np.eye(4)[labels]) / 5                                    # dL/dy of the mean cross-entropy
print("dL/dx = delta @ weight   :", np.allclose(x.grad, delta @ w.data))
print("dL/dW = delta.T @ x      :", np.allclose(w.grad, delta.T @ x.data))
print("dL/db = delta summed     :", np.allclose(b.grad, delta.sum(0)))

eps, (r, c) = 1e-6, (2, 3)
bumped = [x.data.copy(), x.data.copy()]
bumped[0][r, c] += eps; bumped[1][r, c] -= eps
f = [F.cross_entropy(F.linear(ta.tensor(v), w.data, b.data), labels).item() for v in bumped]
print(f"finite difference dL/dx[{r},{c}] = {(f[0] - f[1]) / (2 * eps):.8f}, backprop {x.grad[r, c]:.8f}")
""")

md("""
## 3. The generalisation error and its test-set estimate

The *generalisation error* is the probability that the model misclassifies a fresh image from
the same distribution; nobody can compute it. The test error on `n` images is an estimate:
the number of mistakes is binomial, so its standard error is `sqrt(p (1 − p) / n)`. We use the
Wilson 95% interval (better than `p ± 1.96·se` near 0 or 1). Below, disjoint slices of the test
set of growing size give different estimates; the intervals shrink like `1/sqrt(n)`. Accuracy
differences of a few tenths of a point between two models are invisible on 1,000 images. The
training error is a biased estimate (the model has seen those images): the gap is overfitting.
""")
code("""
def wilson(errors, n, z=1.96):
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half

wrong = train.predict(dense_mlp, test_x).argmax(1) != test_y
full = wrong.mean()
lo, hi = wilson(wrong.sum(), len(wrong))
train_err = 1 - train.evaluate(dense_mlp, *mlp_data[0])["top1"]
print(f"training error {train_err:.4f}; test error {full:.4f} on {len(wrong):,} images, 95% interval "
      f"[{lo:.4f}, {hi:.4f}]")

sizes = [n for n in (50, 100, 250, 500, 1000, 2500) if 4 * n <= len(wrong)]
plt.figure(figsize=(6, 3.5))
for k in range(4):
    est = [wrong[k * n:(k + 1) * n].mean() for n in sizes]
    ci = np.array([wilson(wrong[k * n:(k + 1) * n].sum(), n) for n in sizes])
    plt.errorbar(np.array(sizes) * (1 + 0.04 * k), est, yerr=[np.array(est) - ci[:, 0], ci[:, 1] - np.array(est)],
                 fmt="o", capsize=3, label=f"slice {k + 1}")
plt.axhline(full, color="k", ls="--", label=f"all {len(wrong):,} test images")
plt.axhline(train_err, color="gray", ls=":", label="training error")
plt.xscale("log"); plt.xlabel("test images in the estimate (n)"); plt.ylabel("error rate")
plt.title("test error estimates with Wilson 95% intervals"); plt.legend(fontsize=8); plt.show()
""")

md("""
## 4. A linear classifier is a hyperplane

One neuron computes `w·x + b`; its decision `w·x + b > 0` splits the input space by the
hyperplane `w·x + b = 0` (a line in 2-D), with `w` normal to it. With `C` classes a `Linear`
layer has `C` such neurons and the argmax regions are bounded by the pairwise hyperplanes
`(w_i − w_j)·x + (b_i − b_j) = 0`. Both trained on 2-D toy data:
""")
code("""
rng = np.random.default_rng(1)
centres = np.array([[-1.5, -0.5], [1.5, 0.8], [0.0, 2.5]])
pts = np.concatenate([c + 0.7 * rng.standard_normal((100, 2)) for c in centres]).astype(np.float32)
cls = np.repeat(np.arange(3), 100)

def fit_linear(x, y, classes, steps=300):
    layer = nn.Linear(2, classes if classes > 2 else 1, seed=0)
    opt = optim.SGD(layer.parameters(), lr=0.5)
    for _ in range(steps):
        out = layer(ta.tensor(x))
        loss = (F.cross_entropy(out, y) if classes > 2 else
                F.binary_cross_entropy_with_logits(out, ta.tensor(y[:, None].astype(np.float32))))
        opt.zero_grad(); loss.backward(); opt.step()
    return layer

two = cls < 2
binary = fit_linear(pts[two], cls[two], 2)
three = fit_linear(pts, cls, 3)
gx, gy = np.meshgrid(np.linspace(-4, 4, 200), np.linspace(-3, 5, 200))
grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)

fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
w, b = binary.weight.data[0], binary.bias.data[0]
axes[0].contourf(gx, gy, (grid @ w + b > 0).reshape(gx.shape), levels=[-0.5, 0.5, 1.5], colors=["C0", "C1"], alpha=0.15)
for k in range(2):
    axes[0].scatter(*pts[cls == k].T, s=8, color=f"C{k}", label=f"class {k}")
xs = np.linspace(-4, 4, 2)
axes[0].plot(xs, -(w[0] * xs + b) / w[1], "k-", label="w·x + b = 0")
foot = -b * w / (w @ w)
axes[0].arrow(*foot, *(w / np.linalg.norm(w)), width=0.04, color="k")
axes[0].annotate("w", foot + 1.1 * w / np.linalg.norm(w))
axes[0].set_title("one neuron: a line, w normal to it")
pred = three(ta.tensor(grid)).data.argmax(1).reshape(gx.shape)
axes[1].contourf(gx, gy, pred, levels=[-0.5, 0.5, 1.5, 2.5], colors=["C0", "C1", "C2"], alpha=0.15)
for k in range(3):
    axes[1].scatter(*pts[cls == k].T, s=8, color=f"C{k}", label=f"class {k}")
axes[1].set_title("three neurons: argmax regions bounded by lines")
for ax in axes:
    ax.set_xlim(-4, 4); ax.set_ylim(-3, 5); ax.set_xlabel("x1"); ax.set_ylabel("x2"); ax.legend(fontsize=8, loc="lower right")
plt.tight_layout(); plt.show()
print("training accuracy, 2 classes:", (((pts[two] @ w + b) > 0) == cls[two]).mean(),
      "| 3 classes:", (three(ta.tensor(pts)).data.argmax(1) == cls).mean())
""")

md("""
## 5. FLOP counting varies

The same AlexNet is quoted at 371, 724 and 1,500 MFLOPs. The factors come from choices that are
rarely stated: a multiply-add counted as 1 (MACs) or 2 (FLOPs), the fully connected layers
included or not, AlexNet's two-GPU *grouped* convolutions counted as dense, zero weights
skipped or not, pooling and activations counted or not. `cost.flop_counts` gives one forward
pass five ways, all from the same per-layer trace (`cost.layer_costs`). The pruned LeNet-5 is
the dense one with 90% of its weights removed by global magnitude pruning.
""")
code("""
pruned5 = copy_of(lenet5, models.lenet5)
prune.magnitude(pruned5, amount=0.9, scope="global")
nets = {"LeNet-300-100": dense_mlp, "LeNet-5": lenet5, "LeNet-5, 90% pruned": pruned5}
counts = {k: cost.flop_counts(v, (1, 1, 28, 28)) for k, v in nets.items()}
for k, c in counts.items():
    print(cost.format_flop_counts(c, k))
keys = list(cost.FLOP_CONVENTIONS)
plt.figure(figsize=(8, 3.5))
for i, (k, c) in enumerate(counts.items()):
    plt.bar(np.arange(len(keys)) + (i - 1) * 0.27, [c[key] / 1e6 for key in keys], 0.27, label=k)
plt.xticks(range(len(keys)), keys); plt.xlabel("counting convention"); plt.ylabel("millions per image")
plt.title("one forward pass, five numbers"); plt.legend(fontsize=8); plt.show()
""")

md("""
## 6. Dally's table, whole, and where the energy goes

Horowitz's 45 nm figures as Dally presents them, energy *and* area. Three lessons: integer
arithmetic is far cheaper than floating point of the same width (an 8-bit add costs 1/30 of a
32-bit float add and 1/116 of its area); a multiply costs several adds; and memory dwarfs
arithmetic — one 32-bit DRAM read is worth about 140 float multiply-adds.
""")
code("""
print(cost.format_horowitz_table())
rows = list(cost.HOROWITZ_45NM.values())
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
axes[0].barh([r[0] for r in rows], [r[1] for r in rows], color="C3", label="energy")
axes[0].set_xscale("log"); axes[0].set_xlabel("energy per operation (pJ, log scale)")
arith = [r for r in rows if r[2] is not None]
axes[1].barh([r[0] for r in arith], [r[2] for r in arith], color="C0", label="area")
axes[1].set_xscale("log"); axes[1].set_xlabel("area (um^2, log scale)")
for ax in axes:
    ax.set_ylabel("operation"); ax.invert_yaxis(); ax.legend(fontsize=8)
axes[0].set_title("Horowitz 45 nm: energy"); axes[1].set_title("area (memories: none given)")
plt.tight_layout(); plt.show()
""")
md("""
**Data movement per network.** `cost.data_movement` prices one forward pass two ways: reading every
weight once from DRAM (32-bit words; CSR values *and* indices when pruned) against the float
multiply-adds. In LeNet-300-100 every weight is used once per image, so the weight fetch costs
about 140 times the arithmetic; LeNet-5's conv weights are reused at every output position,
which lowers the ratio. Batching reuses each fetched weight across images; fitting the model
on chip (SRAM, 5 pJ) is what Deep Compression aims for.
""")
code("""
pruned_mlp = copy_of(dense_mlp, models.lenet_300_100)
prune.magnitude(pruned_mlp, amount=0.9, scope="global")
cases = [("LeNet-300-100", dense_mlp, False), ("LeNet-300-100 90% pruned", pruned_mlp, True),
         ("LeNet-5", lenet5, False), ("LeNet-5 90% pruned", pruned5, True)]
print(f"{'network':<26}{'batch':>6}{'MACs/param':>11}{'DRAM uJ':>9}{'SRAM uJ':>9}{'MAC uJ':>8}{'DRAM/MAC':>10}")
moves = {}
for label, net, sp in cases:
    for batch in (1, 64):
        d = cost.data_movement(net, (batch, 1, 28, 28), sparse=sp)
        moves[label, batch] = d
        print(f"{label:<26}{batch:>6}{d['macs_per_param']:>11.1f}{d['dram_pj'] / 1e6:>9.2f}{d['sram_pj'] / 1e6:>9.3f}"
              f"{d['mac_pj'] / 1e6:>8.3f}{d['dram_over_mac']:>10.1f}")
print("per forward pass of the batch; weights read once per batch; activations not counted (see cost.inference_energy)")
labels = [c[0] for c in cases]
x = np.arange(len(labels))
plt.figure(figsize=(8, 3.6))
plt.bar(x - 0.2, [moves[k, 1]["dram_pj"] / 1e6 for k in labels], 0.4, label="weights from DRAM")
plt.bar(x + 0.2, [moves[k, 1]["mac_pj"] / 1e6 for k in labels], 0.4, label="fp32 multiply-adds")
plt.yscale("log"); plt.xticks(x, labels, fontsize=8); plt.xlabel("network (batch 1)")
plt.ylabel("energy per image (uJ, log)"); plt.title("data movement against arithmetic"); plt.legend(fontsize=8)
plt.show()
""")

md("""
## 7. "FC layers are far more amenable to pruning than conv layers"

Global magnitude pruning ranks every weight of the network together, so the layers decide
among themselves how much each loses. On LeNet-5 at 90% overall, the fully connected layers
give up almost everything and the convolutions keep much more. Two reasons, both visible
below: the conv layers have small fan-in (25 and 500 inputs per output against 800), so their
weights are larger; and each conv weight is used at every output position (576 and 64 times
per image), so it matters more to the output. The small output layer (500 inputs, 10 outputs)
keeps more than the big fc layer for the same fan-in reason. The fc layers hold most of the parameters but
few of the FLOPs — pruning them shrinks the model, while the FLOPs sit in the convolutions:
removing 90% of the weights removes only about two thirds of the FLOPs (section 5).
""")
code("""
rows = cost.layer_costs(pruned5, (1, 1, 28, 28))
wl = [r for r in rows if r["kind"] in ("linear", "conv")]
names = [f"{r['name']} {r['type']}" for r in wl]
density = [r["nonzero_weights"] / r["weights"] for r in wl]
param_share = [r["weights"] / sum(q["weights"] for q in wl) for r in wl]
flop_share = [r["flops"] / sum(q["flops"] for q in wl) for r in wl]
for (name, mod), n, dd in zip(nn.weight_layers(lenet5), names, density):
    print(f"{n:<14} density {dd:6.1%}   mean |w| of the dense layer {np.abs(mod.weight.data).mean():.4f}")
print(f"top-1: dense {acc(lenet5):.4f}, 90% global one-shot {acc(pruned5):.4f}")
x = np.arange(len(names))
plt.figure(figsize=(7, 3.6))
plt.bar(x - 0.27, density, 0.27, label="density after 90% global pruning")
plt.bar(x, param_share, 0.27, label="share of the weights")
plt.bar(x + 0.27, flop_share, 0.27, label="share of the FLOPs")
plt.xticks(x, names); plt.xlabel("LeNet-5 layer"); plt.ylabel("fraction"); plt.ylim(0, 1.3)
plt.title("which layers global pruning empties"); plt.legend(fontsize=8, ncol=2, loc="upper center"); plt.show()
""")

md("""
## 8. Blalock et al.: a pruned network against a smaller dense one

"What is the state of neural network pruning?" (Blalock et al., 2020) asks whether pruned
networks beat simply using a smaller architecture. Here: LeNet-300-100 pruned (global magnitude,
then retrained) at several sparsities, against dense MLPs of the same shape (784 → 3h → h → 10)
with about as many parameters as each pruned net keeps, trained from scratch with the same
recipe for as many epochs as the pruned net saw in all (training plus retraining). The dense
LeNet-300-100 is shown as trained and after the same retraining epochs as the pruned nets (so that
extra training is not mistaken for a gain from pruning). Size is shown as non-zero parameters and as bytes (the pruned nets in CSR, indices
counted); time is measured per batch of 256, the pruned nets on the CSR kernel, each
interleaved with the dense LeNet-300-100 in the same loop.
""")
code("""
levels = [0.8, 0.9] if QUICK else [0.5, 0.8, 0.9, 0.95, 0.98]
recipe = {"lr": 0.1, "momentum": 0.9}
points = {"pruned": [], "small dense": []}
t_ref, _ = prune.time_inference(dense_mlp, xb, REPEATS, other=dense_mlp)
points["dense LeNet-300-100"] = [(sum(p.size for p in dense_mlp.parameters()), cost.model_bytes(dense_mlp),
                                   1e3 * t_ref, acc(dense_mlp))]
longer = finetune(copy_of(dense_mlp, models.lenet_300_100), *mlp_data[0], epochs=RETRAIN_EPOCHS, seed=1)
t_d, t_l = prune.time_inference(dense_mlp, xb, REPEATS, other=longer)
points[f"dense LeNet-300-100, +{RETRAIN_EPOCHS} epochs"] = [(points["dense LeNet-300-100"][0][0],
                                                            cost.model_bytes(longer), 1e3 * t_ref * t_l / t_d, acc(longer))]
print(f"dense LeNet-300-100 top-1 {acc(dense_mlp):.4f}; after {RETRAIN_EPOCHS} more epochs {acc(longer):.4f}")
retrained = {}
for s in levels:
    net = copy_of(dense_mlp, models.lenet_300_100)
    prune.magnitude(net, amount=s, scope="global")
    finetune(net, *mlp_data[0], epochs=RETRAIN_EPOCHS, seed=1)
    retrained[s] = net
    nnz = sum(c["nonzeros"] for c in prune.count_zeros(net, params="all").values())
    t_d, t_s = prune.time_inference(dense_mlp, xb, REPEATS, other=prune.to_sparse(net))
    points["pruned"].append((nnz, cost.model_bytes(net, sparse="auto"), 1e3 * t_ref * t_s / t_d, acc(net)))
    small = models.mlp_of_size(nnz, seed=0)
    loader = data.DataLoader(*mlp_data[0], batch_size=128, shuffle=True, seed=0)
    train.fit(small, loader, F.cross_entropy, optim.SGD(small.parameters(), **recipe), MLP_EPOCHS + RETRAIN_EPOCHS,
              verbose=False)
    t_d, t_m = prune.time_inference(dense_mlp, xb, REPEATS, other=small)
    points["small dense"].append((sum(p.size for p in small.parameters()), cost.model_bytes(small),
                                  1e3 * t_ref * t_m / t_d, acc(small)))
    print(f"sparsity {s:.2f}: pruned {nnz:>7,} params, top-1 {points['pruned'][-1][3]:.4f}, "
          f"{points['pruned'][-1][2]:.3f} ms | dense {small[1].weight.shape[0]}-{small[3].weight.shape[0]}: "
          f"{points['small dense'][-1][0]:>7,} params, top-1 {points['small dense'][-1][3]:.4f}, "
          f"{points['small dense'][-1][2]:.3f} ms")
print("times: ms per batch of 256, each scaled by its ratio to the dense LeNet-300-100 timed in the same loop")

fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
styles = dict(zip(points, ("o-", "s-", "k*", "kP")))
for label, pts_ in points.items():
    pts_ = np.array(pts_)
    for ax, col in zip(axes, (0, 1, 2)):
        ax.plot(pts_[:, col], pts_[:, 3], styles[label], label=label, markersize=8)
for ax, xl in zip(axes, ("non-zero parameters", "bytes (CSR with indices for pruned)", "ms per batch of 256 (measured)")):
    ax.set_xscale("log"); ax.set_xlabel(xl); ax.set_ylabel("test top-1"); ax.legend(fontsize=8)
axes[0].set_title("accuracy vs size"); axes[1].set_title("accuracy vs bytes"); axes[2].set_title("accuracy vs time")
plt.tight_layout(); plt.show()
""")
md("""
Read the plots as Blalock et al. ask: at the same size, which curve lies higher — and at the same
*time*? A pruned net keeps the wide layers (784 inputs into 300 units) and drops only weak
connections, which matters most at high sparsity, where the dense competitor becomes a
bottleneck of a few units (at 98% sparsity: 18-6 or 6-2 hidden units). Against that, a pruned net
pays for its indices in bytes (about twice the bytes of a dense net with as many parameters) and
runs on a sparse kernel, while a small dense net runs at full BLAS speed, so the gap narrows on
the bytes axis and most of all on the time axis. In our full run (10 + 3 epochs on all 60,000
images) the pruned nets stayed above the small dense ones on all three axes, by 1 to 20 points
at equal parameters but only a point or two at equal measured time. The dense net given the same
3 extra epochs reached the accuracy of the pruned nets (88.8% against 88.5% at 90% sparsity): their
lead over the original dense net is the extra training, and what pruning buys is that accuracy
with ten times fewer parameters. Blalock et al.'s warning is about the comparison more than its outcome: a pruning
result without the smaller-dense and same-epochs baselines and without measured time says
little. On convolutional networks and against architectures designed to be small, the answer
can turn around.
""")

md("""
## 9. Sparse solutions lie near the dense one

Pruning moves the weights by exactly the weights it removes, and magnitude pruning removes the
smallest: the pruned point is close to the dense one relative to the weights' size. Retraining
moves it a little further. Along the straight line from the dense to the pruned-and-retrained
weights, `w(a) = (1 − a) w_dense + a w_pruned`, the loss stays low: the sparse solution lies in
the dense solution's basin. Random pruning at the same sparsity lands much farther away, and the
line crosses a ridge.

"Near" needs a scale. Removing the smallest 90% of roughly Gaussian weights still removes about
half of their squared norm, so the pruned point is *not* a small perturbation in L2. The fair
comparison is another solution: a second LeNet-300-100 trained from a different seed with the
same recipe is farther away still (about `sqrt(2)·||w||`), and the straight line to it crosses a
high ridge. The pruned solution is the nearer one and shares the dense solution's basin.
""")
code("""
s = 0.9
other, _, _ = train_baseline("lenet-300-100", epochs=MLP_EPOCHS, seed=1, dataset=mlp_data, out_dir="runs/lecture06",
                             verbose=False)
oneshot = copy_of(dense_mlp, models.lenet_300_100)
prune.magnitude(oneshot, amount=s, scope="global")
rand = copy_of(dense_mlp, models.lenet_300_100)
prune.random(rand, amount=s, scope="global", seed=0)
finetune(rand, *mlp_data[0], epochs=RETRAIN_EPOCHS, seed=1)
paths = {f"magnitude {s:.0%}, retrained": prune.interpolation_path(dense_mlp, retrained[s], test_x, test_y, steps=21),
         f"magnitude {s:.0%}, one-shot": prune.interpolation_path(dense_mlp, oneshot, test_x, test_y, steps=21),
         f"random {s:.0%}, retrained": prune.interpolation_path(dense_mlp, rand, test_x, test_y, steps=21),
         "another dense solution (seed 1)": prune.interpolation_path(dense_mlp, other, test_x, test_y, steps=21)}
init = models.lenet_300_100(seed=0)
w_init = np.concatenate([p.data.ravel() for p in init.parameters()])
w_dense = np.concatenate([p.data.ravel() for p in dense_mlp.parameters()])
print(f"||w_dense|| = {np.linalg.norm(w_dense):.2f}; distance init -> dense {np.linalg.norm(w_dense - w_init):.2f}; "
      f"dense test loss {paths[next(iter(paths))]['loss'][0]:.3f}")
for k, p in paths.items():
    print(f"{k:<32} distance {p['total_distance']:6.2f} ({p['relative_distance']:.1%} of ||w_dense||), "
          f"max loss on the path {p['loss'].max():.3f}, at the end {p['loss'][-1]:.3f}")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for k, p in paths.items():
    axes[0].plot(p["alpha"], p["loss"], label=k)
    axes[1].plot(p["distance"], p["top1"], label=k)
axes[0].set_xlabel("a (0 = dense, 1 = pruned)"); axes[0].set_ylabel("test cross-entropy")
axes[1].set_xlabel("L2 distance from the dense weights"); axes[1].set_ylabel("test top-1")
axes[1].axvline(np.linalg.norm(w_dense - w_init), color="gray", ls=":", label="distance init -> dense")
for ax in axes:
    ax.legend(fontsize=8)
axes[0].set_title("loss along the straight path"); axes[1].set_title("accuracy against distance")
plt.tight_layout(); plt.show()
""")

md("""
## 10. Conv stages are feature detectors

Each first-layer filter of LeNet-5 is a 5×5 template; its feature map is the correlation of the
image with it, high where the pattern appears. The second layer combines those maps into
detectors of larger patterns. Red is positive, blue negative. After this short training the
filters still look noisy to the eye (clean oriented-edge detectors appear with long training on
large data sets), but the feature maps show what each responds to: some maps light up on the
outline of the object, some on its flat interior, some on one particular edge, such as the sole
of a shoe.
""")
code("""
def mosaic(tiles, cols):
    tiles = np.asarray(tiles, dtype=np.float64)
    n, h, w = tiles.shape
    rows_ = -(-n // cols)
    out = np.full((rows_ * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = t / (np.abs(t).max() or 1)
    return out

cmap = plt.get_cmap("RdBu_r").copy(); cmap.set_bad("0.85")
image = data.images_to_float(test_x[:1])
maps = {name: out for name, _, _, out in cost.trace_layers(lenet5, image)}
fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), gridspec_kw={"width_ratios": [1, 2.2, 2.2, 2.2]})
axes[0].imshow(image[0, 0], cmap="gray"); axes[0].set_title(f"input (class {test_y[0]})", fontsize=9)
axes[0].set_xlabel("x (pixels)"); axes[0].set_ylabel("y (pixels)")
panels = [(lenet5[0].weight.data[:, 0], 5, "conv1 filters (20 of 5x5), each scaled"),
          (maps["0"][0], 5, "conv1 feature maps (20 of 24x24)"),
          (maps["2"][0][:20], 5, "conv2 feature maps (first 20 of 50, 8x8)")]
for ax, (tiles, cols, title) in zip(axes[1:], panels):
    im = ax.imshow(mosaic(tiles, cols), cmap=cmap, vmin=-1, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x within a tile; tiles in order, row by row", fontsize=8); ax.set_ylabel("y within a tile", fontsize=8)
fig.colorbar(im, ax=axes[1:].tolist(), label="value / max |value| per tile", shrink=0.8)
for ax in axes:
    ax.set_xticks([]); ax.set_yticks([])
plt.show()
""")

md("""
## 11. Scalpel's question: does sparsity need structure to be fast?

Scalpel (Yu et al., 2017) argues that element-wise sparsity only pays off where the hardware can
exploit it, and that structured pruning — removing whole filters so the model becomes a smaller
*dense* one — is what speeds up convolutions on general-purpose processors. Here, on LeNet-5:

* **filter**: half the filters of conv1, conv2 and fc1 removed by magnitude (`granularity="filter"`),
  then physically deleted with `prune.remove_filters` (the next layer loses the matching input
  channels) and fine-tuned: a smaller dense LeNet-5;
* **element**: single weights removed at the same per-layer fraction that gives *the same FLOPs*,
  fine-tuned with the masks in place, then run on the CSR kernel (`prune.to_sparse`), and also
  run dense (zeros multiplied like any other weight).

Every variant is timed interleaved with the dense LeNet-5 in the same loop (batch 256), and its
accuracy is compared with the dense LeNet-5 fine-tuned for the same extra epochs (otherwise the
extra training, not the pruning, could explain a difference).
""")
code("""
filt = copy_of(lenet5, models.lenet5)
prune.magnitude(filt, amount=0.5, granularity="filter", params=["0.weight", "2.weight", "5.weight"])
small5 = prune.remove_filters(filt, (1, 1, 28, 28))
tune = (train_x[:FINETUNE_IMAGES], train_y[:FINETUNE_IMAGES])
small5 = finetune(small5, *tune, epochs=FINETUNE_EPOCHS, seed=2)
f_dense = cost.flop_counts(lenet5, (1, 1, 28, 28))["flops"]
f_small = cost.flop_counts(small5, (1, 1, 28, 28))["flops"]
elem = copy_of(lenet5, models.lenet5)
prune.magnitude(elem, amount=1 - f_small / f_dense)
elem = finetune(elem, *tune, epochs=FINETUNE_EPOCHS, seed=2)
dense_ft = finetune(copy_of(lenet5, models.lenet5), *tune, epochs=FINETUNE_EPOCHS, seed=2)  # same extra training
f_elem = cost.flop_counts(elem, (1, 1, 28, 28))["nonzero_flops"]
print("filter-pruned architecture:", [tuple(m.weight.shape) for _, m in nn.weight_layers(small5)])
print(f"FLOPs per image: dense {f_dense:,}, filter {f_small:,}, element {f_elem:,} (non-zero)")

variants = {"filter (smaller dense)": (small5, f_small), "element, CSR kernel": (prune.to_sparse(elem), f_elem),
            "element, run dense": (elem, f_dense)}
results = {}
for label, (net, flops) in variants.items():
    t_d, t_v = prune.time_inference(lenet5, xb5, REPEATS, other=net)
    results[label] = {"theoretical": f_dense / flops, "measured": t_d / t_v, "top1": acc(net), "ms": 1e3 * t_v}
print(f"dense LeNet-5 top-1 {acc(lenet5):.4f}; dense fine-tuned as long as the pruned ones {acc(dense_ft):.4f}")
for label, r in results.items():
    print(f"{label:<24} theoretical {r['theoretical']:5.2f}x  measured {r['measured']:5.2f}x  "
          f"({r['ms']:.2f} ms / batch of {len(xb5)})  top-1 {r['top1']:.4f}")
x = np.arange(len(results))
plt.figure(figsize=(7, 3.6))
plt.bar(x - 0.2, [r["theoretical"] for r in results.values()], 0.4, label="theoretical (FLOP ratio)")
plt.bar(x + 0.2, [r["measured"] for r in results.values()], 0.4, label="measured (wall-clock ratio)")
plt.axhline(1, color="k", lw=0.8)
plt.xticks(x, list(results), fontsize=8); plt.xlabel("pruned LeNet-5 variant"); plt.ylabel("speedup over dense")
plt.title("equal FLOPs, different speed"); plt.legend(fontsize=8); plt.show()
""")
md("""
What the measurement shows, and why. At equal FLOPs the filter-pruned model is an ordinary dense
network with fewer channels: every layer is still one dense product (im2col + BLAS), just a
smaller one, so it turns a large part of the FLOP ratio into measured speedup (1.9x to 2.4x of
3.55x in two full runs on a busy machine); the rest goes to costs that do not shrink with the weights
(the input-sized im2col of conv1, pooling, per-layer Python overhead).
The element-pruned model skips the same number of multiply-adds on paper, but the CSR kernel
still builds the full im2col patch matrix (its size does not shrink with the weights), reads an
index per kept weight and gathers inputs irregularly, where the dense kernel streams contiguous
blocks with SIMD. At LeNet-5's moderate conv densities that overhead eats the savings — the CSR
model is far slower than its FLOPs promise, here no faster than dense (0.89x and 0.97x in two
full runs; Scalpel's point: the speedup of unstructured sparsity depends on the hardware's
parallelism, and structure is what general-purpose processors can use). Run dense, the element-pruned model saves nothing
at all — the mask multiply in every forward pass even costs a little.
The accuracy column is the price of pruning, read against the dense model fine-tuned for the
same epochs (in our full run: dense fine-tuned 87.8%, element 87.0%, filter 86.7%). Both cost
about a point; the 0.3-point gap between them is inside the test-set interval of section 3, so
this run cannot say which costs more. Removing whole filters constrains the solution more than
removing single weights, and at higher compression that usually shows — a price paid for a
speedup that is real.
""")

notebook.write("06_costs_and_claims.ipynb")
