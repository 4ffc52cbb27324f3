"""Generate lectures/02_pruning.ipynb (outputs stripped). Run: python lectures/make_02_pruning.py"""
from nbbuild import Notebook

notebook = Notebook()
md, code = notebook.md, notebook.code


md("""
# Lecture 2 — Pruning: fewer weights, and does it get faster?

Pruning sets weights to zero and keeps them there. This notebook walks through the choices
a pruning method makes — the **criterion** (which weights), the **granularity** (single
weights or whole groups), the **scope** (per layer or across layers), the **schedule**
(once, iteratively with retraining, or gradually) — then stores the result in **sparse
formats** and measures whether inference actually gets faster.

Definitions used throughout: *sparsity* = zeros / total, *density* = 1 − sparsity;
*compression ratio* = original size / compressed size (> 1 means smaller), by parameter
count or by bytes with indices counted; FLOPs count one multiply-add as 2; *theoretical
speedup* = FLOP ratio, *speedup* = measured wall-clock ratio.
""")
code("QUICK = False", tags=["parameters"])
code("""
import os

import numpy as np
import matplotlib.pyplot as plt

from tinyapprox import cost, data, models, prune, sparse, train
from tinyapprox.experiments.harness import train_baseline

QUICK = QUICK or os.environ.get("TINYAPPROX_QUICK") == "1"
(train_x, train_y), (test_x, test_y) = data.load("fashion-mnist", limit=2000 if QUICK else None)
EPOCHS = 1 if QUICK else 10
dense, _, metrics_dense = train_baseline("lenet-300-100", epochs=EPOCHS, limit=2000 if QUICK else None,
                                         out_dir="runs/compress", verbose=False)
print(f"dense LeNet-300-100: test top-1 {metrics_dense['top1']:.4f}")

def fresh_copy(model):
    return models.lenet_300_100().load_state_dict(model.state_dict())

def acc(model):
    return train.evaluate(model, test_x, test_y)["top1"]
""")

md("""
## 1. Counting zeros

A mask is attached to a parameter as a *transform*: the forward pass uses `w * mask`, so
pruned weights get zero gradient, and after each optimizer step the pruned entries of the
stored weights are set back to exactly zero (momentum and Adam cannot revive them).

The number of non-zero entries is often called the "L0 norm". It is a count, not a norm:
scaling a tensor by 2 leaves it unchanged.
""")
code("""
m = fresh_copy(dense)
prune.magnitude(m, amount=0.9)
for name, c in prune.count_zeros(m).items():
    print(f"{name}: {c['zeros']:,} zeros of {c['total']:,} (sparsity {c['sparsity']:.2%})")
w = m[1].weight
print("transforms:", w.transforms, "| L0 =", prune.l0(w), "| L0 of 2w =", prune.l0(2 * w.effective().data))
""")

md("""
## 2. Criteria: magnitude against random

Magnitude pruning removes the weights with the smallest |w|. Exercise: write the mask
for one array yourself (keep the `1 − amount` largest magnitudes) and check it against
`prune.magnitude`.
""")
code("""
def magnitude_mask(w, amount):
    # BEGIN SOLUTION
    k = int(round(amount * w.size))
    order = np.argsort(np.abs(w).ravel(), kind="stable")
    mask = np.ones(w.size, dtype=bool)
    mask[order[:k]] = False
    return mask.reshape(w.shape)
    # END SOLUTION

m = fresh_copy(dense)
mine = magnitude_mask(m[1].weight.data, 0.8)
theirs = prune.magnitude(m, amount=0.8, params=["1.weight"])["1.weight"]
print("same mask as prune.magnitude:", np.array_equal(mine, theirs))
""")
code("""
levels = [0.5, 0.8, 0.9, 0.95] if not QUICK else [0.5, 0.9]
rows = []
for s in levels:
    a, b = fresh_copy(dense), fresh_copy(dense)
    prune.magnitude(a, amount=s)
    prune.random(b, amount=s, seed=0)
    rows.append((s, acc(a), acc(b)))
print("sparsity  magnitude  random   (one-shot, no retraining)")
for s, x, y in rows:
    print(f"{s:8.2f}  {x:9.4f}  {y:7.4f}")
""")

md("""
## 3. Scope: per layer or global

With `scope="layer"` every layer loses the same fraction; with `scope="global"` all weights
are ranked together, so layers with many small weights (the 784×300 input layer) lose
more and the small output layer less.
""")
code("""
for scope in ("layer", "global"):
    m = fresh_copy(dense)
    prune.magnitude(m, amount=0.9, scope=scope)
    per = {n: f"{c['sparsity']:.1%}" for n, c in prune.count_zeros(m).items()}
    print(f"{scope:>6}: {per}  top-1 {acc(m):.4f}")
""")

md("""
## 4. Granularities on a convolution

A conv weight is (O, C, kh, kw). Pruning can remove single weights (*element*), a row of a
kernel (*vector*), a whole kh×kw kernel (*kernel*) or a whole filter (*filter*, which
removes an output map). Coarser groups are easier to exploit in hardware, but cost more
accuracy for the same sparsity. Below: 50% of the second LeNet-5 conv layer at each
granularity (black = pruned), first 8 filters × 8 input channels, each cell a 5×5 kernel.
""")
code("""
fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
for ax, g in zip(axes, prune.GRANULARITIES):
    net = models.lenet5(seed=0)
    mask = prune.magnitude(net, amount=0.5, granularity=g, params=["2.weight"])["2.weight"]
    grid = np.ones((8 * 6, 8 * 6))
    for o in range(8):
        for c in range(8):
            grid[o * 6:o * 6 + 5, c * 6:c * 6 + 5] = mask[o, c]
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"{g}: sparsity {1 - mask.mean():.0%}")
    ax.set_xlabel("input channel"); ax.set_ylabel("filter"); ax.set_xticks([]); ax.set_yticks([])
plt.tight_layout(); plt.show()
""")

md("""
## 5. Schedules

* **one-shot**: prune once, no retraining (section 2);
* **iterative** (Han et al. 2015): prune, retrain the surviving connections, repeat;
* **gradual** (Zhu & Gupta 2017): during training raise the sparsity on the cubic schedule
  `s_t = s_f + (s_i − s_f)(1 − (t − t0)/(n·dt))³`, fast at first, slowly at the end.
""")
code("""
t = np.arange(0, 1001)
plt.figure(figsize=(5, 3))
plt.plot(t, [prune.agp_sparsity(x, 0.9, 100, 900) for x in t])
cb = prune.GradualPruning(0.9, start_step=100, end_step=900, frequency=100)
plt.step(t, [cb.sparsity_at(x) for x in t], where="post", alpha=0.7)
plt.xlabel("training step"); plt.ylabel("sparsity"); plt.title("AGP schedule (s_f = 0.9)"); plt.show()
""")
code("""
from tinyapprox import functional as F, optim

def retrain(model, k, epochs=1):
    loader = data.DataLoader(train_x, train_y, batch_size=128, shuffle=True, seed=k)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train.fit(model, loader, F.cross_entropy, opt, epochs, verbose=False)

m = fresh_copy(dense)
records = prune.iterative(m, retrain, acc, target=0.92, rounds=2 if QUICK else 4, scope="global")
for r in records:
    print(f"round {r['round']}: sparsity {r['sparsity']:.3f}  pruned {r['acc_pruned']:.4f}  retrained {r['acc']:.4f}")
print(f"dense {metrics_dense['top1']:.4f}")
""")

md("""
## 6. Sparse formats and their sizes

The pruned input layer stored four ways. `nbytes` counts values *and* indices (float32
values, int32 indices; CSR's row pointers are int64). Indices cost as much as values, so
CSR beats dense only below about 50% density.
""")
code("""
w = m[1].weight.effective().data
print(f"dense: {w.nbytes:,} B  (density {np.count_nonzero(w) / w.size:.1%})")
for name, fmt in sparse.FORMATS.items():
    s = fmt.from_dense(w)
    assert np.array_equal(s.to_dense(), w)
    print(f"{name.upper():>4}: {s.nbytes:,} B  ->  compression {w.nbytes / s.nbytes:.2f}x")
dens = np.linspace(0, 1, 21)
rng = np.random.default_rng(0)
sizes = [sparse.CSR.from_dense(np.where(rng.random(w.shape) < d, 1.0, 0.0)).nbytes for d in dens]
plt.figure(figsize=(5, 3)); plt.plot(dens, sizes, label="CSR"); plt.axhline(w.nbytes, color="gray", label="dense")
plt.xlabel("density"); plt.ylabel("bytes"); plt.legend(); plt.show()
""")

md("""
## 7. Does it get faster?

`prune.to_sparse` replaces every pruned layer by a CSR layer whose product runs on the C
kernel; `prune.report` prints the lecture's per-layer table (Act% measured on real test
images) and times dense against sparse inference in the same run. Timings on a shared
machine are noisy: compare ratios, not milliseconds.
""")
code("""
rep = prune.report(m, data=test_x, repeats=3 if QUICK else 20)
print(rep)
""")
code("""
sweep = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98] if not QUICK else [0.0, 0.9]
xb = np.ascontiguousarray(test_x[:256, None].astype(np.float32) / 255)
dense_ms, sparse_ms = [], []
for s in sweep:
    mm = fresh_copy(dense)
    if s:
        prune.magnitude(mm, amount=s)
    d, sp = prune.time_inference(mm, xb, repeats=3 if QUICK else 20, other=prune.to_sparse(mm))
    dense_ms.append(1e3 * d); sparse_ms.append(1e3 * sp)
plt.figure(figsize=(5, 3))
plt.plot(sweep, dense_ms, "o-", label="dense"); plt.plot(sweep, sparse_ms, "s-", label="CSR kernel")
plt.xlabel("sparsity"); plt.ylabel("ms per batch of 256"); plt.legend(); plt.show()
""")

md("""
## 8. Energy

Operation and memory-access counts priced with Horowitz's 45 nm table: fetching a 32-bit
word from DRAM (640 pJ) costs about 170 float multiplies (3.7 pJ), which is why Han et
al. argue that fitting the model in on-chip SRAM matters more than the arithmetic saved.
""")
code("""
for label, model in (("dense", dense), ("pruned", m)):
    e = cost.inference_energy(model, (1, 1, 28, 28))
    print(f"{label}: {e.total_pj / 1e6:.3f} uJ per image; " +
          ", ".join(f"{k} {v / e.total_pj:.0%}" for k, v in e.breakdown_pj.items()))
print(cost.inference_energy(m, (1, 1, 28, 28)).assumptions)
""")

notebook.write("02_pruning.ipynb")
