"""Generate lectures/01_inference_and_training.ipynb (outputs stripped). Run: python lectures/make_01_inference_and_training.py"""
from nbbuild import Notebook

notebook = Notebook()
md, code = notebook.md, notebook.code
solution, tests = notebook.solution, notebook.tests

md("""# Lecture 1 — Inference and training from first principles

A dense layer is the product `W^T a = b`; training is the chain rule run backwards
through a graph. This notebook builds both with `tinyapprox` and checks every step
against plain NumPy.

Run it top to bottom. The `parameters` cell below switches to a quick mode (tiny data,
one epoch) that the test suite uses so the notebook cannot rot.""")
code("QUICK = False", tags=["parameters"])
code("""import os
import time

import numpy as np
import matplotlib.pyplot as plt

import tinyapprox as ta
from tinyapprox import data, functional as F, metrics, models, nn, optim, train
from tinyapprox.testing import gradcheck

QUICK = QUICK or os.environ.get("TINYAPPROX_QUICK") == "1"
rng = np.random.default_rng(0)""")
md("""## 1. `W^T a = b` by hand and through `Linear`

The lecture writes a dense layer as `b = W^T a` with `W` of shape (inputs, outputs).
`nn.Linear` stores `weight` as (outputs, inputs) — that *is* `W^T` — and computes
`x @ weight.T + bias` for a batch of row vectors `x`.""")
code("""W = np.array([[1.0, -1.0, 0.5],
              [2.0,  0.0, 1.0]], dtype=np.float32)   # (inputs=2, outputs=3)
a = np.array([3.0, -2.0], dtype=np.float32)

b_by_hand = np.array([sum(W[i, j] * a[i] for i in range(2)) for j in range(3)])
print("by hand   :", b_by_hand)
print("W.T @ a   :", W.T @ a)

layer = nn.Linear(2, 3, bias=False)
layer.weight.data[...] = W.T                      # weight is (outputs, inputs) = W^T
print("nn.Linear :", layer(ta.tensor(a[None, :])).data[0])""")
md("""## 2. Forward and backward

Every operation is a `Function` with a `forward` and a `backward` on plain arrays.
`Tensor.backward()` walks the recorded graph in reverse topological order and sums
the gradients that reach each tensor. Here is a two-layer network and its gradients,
checked against central differences.""")
code("""x = ta.tensor(rng.standard_normal((4, 5)))
w1 = ta.tensor(rng.standard_normal((3, 5)) * 0.5, requires_grad=True)
w2 = ta.tensor(rng.standard_normal((2, 3)) * 0.5, requires_grad=True)
labels = np.array([0, 1, 1, 0])

loss = F.cross_entropy(F.linear(F.relu(F.linear(x, w1)), w2), labels)
loss.backward()
print("loss", loss.item())
print("dL/dw2 =\\n", w2.grad)
print("gradcheck:", gradcheck(lambda a, b: F.cross_entropy(F.linear(F.relu(F.linear(x, a)), b), labels),
                              [w1.data, w2.data]))""")
md("""### Exercise: the backward of the sigmoid

Write `backward` for the logistic sigmoid `s(x) = 1 / (1 + e^-x)`, then let
`gradcheck` judge it. (Hint: `s' = s (1 - s)`, and `forward` may save `s`.)""")
solution("""class MySigmoid(ta.Function):
    @staticmethod
    def forward(ctx, x):
        s = 1 / (1 + np.exp(-x))
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad):
        ### BEGIN SOLUTION
        s, = ctx.saved
        return grad * s * (1 - s)
        ### END SOLUTION""", "sigmoid_backward")
tests("""assert gradcheck(MySigmoid.apply, [rng.standard_normal((3, 4))], name="my_sigmoid")
### BEGIN HIDDEN TESTS
for seed in range(4):
    x = np.random.default_rng(seed).standard_normal((2, 5)) * 4
    assert gradcheck(MySigmoid.apply, [x], name="my_sigmoid")
t = ta.tensor(np.zeros(3), requires_grad=True)
MySigmoid.apply(t).backward(np.ones(3))
assert np.allclose(t.grad, 0.25)
### END HIDDEN TESTS
print("MySigmoid.backward passes gradcheck")""", "sigmoid_backward_tests", 2)
md("""## 3. Convolution: six loops and one matrix product

The lecture's convolution is `B[x,y,j] += A[x-u, y-v, k] * K[u,v,k,j]`; frameworks (and
this engine) compute the cross-correlation `B[x,y,j] += A[x+u, y+v, k] * K[u,v,k,j]`,
which is the same thing with the kernel flipped. `impl="loop6d"` is the literal six
nested loops; `impl="im2col"` copies every receptive field into a column and does one
matrix product. Same answer, very different speed.""")
code("""n = 2 if QUICK else 8
xc = ta.tensor(rng.standard_normal((n, 3, 12, 12)).astype(np.float32))
wc = ta.tensor(rng.standard_normal((4, 3, 5, 5)).astype(np.float32))
bc = ta.tensor(rng.standard_normal(4).astype(np.float32))

t0 = time.perf_counter(); slow = F.conv2d(xc, wc, bc, impl="loop6d"); t_loop = time.perf_counter() - t0
t0 = time.perf_counter(); fast = F.conv2d(xc, wc, bc, impl="im2col"); t_im2col = time.perf_counter() - t0
print("max |loop6d - im2col| =", np.abs(slow.data - fast.data).max())
print(f"loop6d {t_loop * 1e3:.1f} ms, im2col {t_im2col * 1e3:.2f} ms: {t_loop / t_im2col:.0f}x")

cols = F.im2col(xc.data, 5, 5, 1, 0)
print("im2col matrix:", cols.shape, "-> one GEMM with the (75, 4) kernel matrix")""")
md("""## 4. Losses side by side

For a binary problem with label `t = ±1` and score `s`, each loss is a function of the
margin `m = t·s`: square `(1 - m)^2`, log loss `log(1 + e^-m)`, hinge `max(0, 1 - m)`,
squared hinge `max(0, 1 - m)^2`, and the 0-1 loss `[m <= 0]` that we really care about
but cannot differentiate. The log loss is drawn in bits, `log2(1 + e^-m)` (the natural-log
value divided by ln 2), so that it passes through 1 at `m = 0` like the others and bounds
the 0-1 loss from above; `F.binary_cross_entropy_with_logits` itself returns nats.""")
code("""m = np.linspace(-2, 3, 201)
s = ta.tensor(m[:, None])
t = np.ones_like(m)[:, None]
curves = {
    "square": F.mse_loss(s, t, reduction="none").data[:, 0],
    "log": F.binary_cross_entropy_with_logits(s, t, reduction="none").data[:, 0] / np.log(2),
    "hinge": np.maximum(0, 1 - m),
    "squared hinge": np.maximum(0, 1 - m) ** 2,
    "0-1": (m <= 0).astype(float),
}
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, c in curves.items():
    ax.plot(m, c, label=name)
ax.set_ylim(0, 4); ax.set_xlabel("margin t*s"); ax.set_ylabel("loss"); ax.legend()
plt.show()""")
md("""## 5. Train LeNet-300-100; top-1, top-5 and AccLoss

Top-k accuracy counts a sample as correct when its true class is among the k highest
scores. AccLoss compares an approximated model to the original:
`AccLoss = accuracy(original) - accuracy(approximated)` (positive = accuracy lost).
As a first, crude approximation we round every weight to one decimal.""")
code("""limit = 2000 if QUICK else None
(train_x, train_y), (test_x, test_y) = data.load("fashion-mnist", limit=limit)
model = models.lenet_300_100(seed=0)
loader = data.DataLoader(train_x, train_y, batch_size=128, shuffle=True, seed=0)
opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
history = train.fit(model, loader, F.cross_entropy, opt, epochs=1 if QUICK else 3, val=(test_x, test_y))

logits = train.predict(model, test_x)
top1 = metrics.topk_accuracy(logits, test_y, k=1)
top5 = metrics.topk_accuracy(logits, test_y, k=5)
print(f"top-1 {top1:.4f}   top-5 {top5:.4f}")

rounded = models.lenet_300_100(seed=0)
rounded.load_state_dict({k: np.round(v, 1) for k, v in model.state_dict().items()})
top1_rounded = metrics.topk_accuracy(train.predict(rounded, test_x), test_y, k=1)
print(metrics.format_acc_loss(top1, top1_rounded))""")
notebook.write("01_inference_and_training.ipynb")
