"""Write lectures/05_training.ipynb (outputs stripped). Run: python lectures/make_05_training.py"""
from nbbuild import Notebook
from nbformat.v4 import new_code_cell, new_markdown_cell

cells = [
    new_markdown_cell("""# 5. Training considerations: Hogwild! and low precision

SGD is itself an approximation: every step follows a noisy estimate of the gradient. It
therefore tolerates two further approximations that would break most algorithms:

1. **Hogwild!** (Niu, Recht, Re, Wright, NIPS 2011): several workers update one shared copy
   of the weights *without locks*. A worker's gradient may be computed from weights that
   another worker is changing (a *stale* read), and two workers writing the same weight at the
   same moment can overwrite each other (a *lost* update). Convergence survives when such
   collisions are rare.
2. **Low precision**: inference works with 8-bit weights, but training is more delicate: an
   update `lr * g` is often much smaller than the weight it changes. If the weight lives on a
   grid with step `s`, round-to-nearest discards every update smaller than `s / 2`.

This notebook measures both. The trainers are in `tinyapprox/optim/hogwild.py` and
`tinyapprox/quant/lowprec.py`, the experiments around them in `tinyapprox/experiments/hogwild.py`
and `tinyapprox/experiments/lowprec.py`; the command `tinyapprox hogwild` runs the same experiments."""),
    new_code_cell("QUICK = False", metadata={"tags": ["parameters"]}),
    new_code_cell("""import os
import numpy as np
import matplotlib
matplotlib.use("Agg")
from IPython.display import Image, display

from tinyapprox import data, optim
from tinyapprox.nn import Parameter
from tinyapprox.experiments import hogwild as experiment
from tinyapprox.experiments.lowprec import plot_lowprec, train_lowprec
from tinyapprox.optim import hogwild as hw
from tinyapprox.quant import lowprec
from tinyapprox.quant import DynamicFixedPoint, WeightQuant

LIMIT = 2000 if QUICK else None      # images per split
EPOCHS = 1 if QUICK else 3
print("CPUs:", os.cpu_count())"""),
    new_markdown_cell("""## 5.1 How the workers share the weights

`hw.train_hogwild(workers=N, ...)` copies the model's parameters into one
`multiprocessing.shared_memory` segment and starts `N` processes with the *spawn* method.
Before they start, `OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=1` is put into their environment, so
each worker's NumPy uses exactly one core for its matrix products (a spawned child imports
NumPy afresh; a forked child would inherit the parent's thread pool). Each worker:

* points every `Parameter.data` at a view of the shared segment,
* takes its own shard of the training set (`k::N`) and shuffles it with its own seed,
* computes the gradient with the engine, then writes `w -= lr * g` straight into the shared view.

With `lock=True` one lock is held around each update; with one worker it is the plain
single-process run (bit for bit the same weights as `train.fit` with `optim.SGD`, which the
tests check). The parent always unlinks the segments, also when a worker dies or on Ctrl-C.

### Counting the collisions

Each worker `k` owns two counters in shared memory: `started[k]` (updates it began writing) and
`finished[k]` (updates it completed). Only worker `k` writes them, so they are exact. A worker
notes the others' `finished` total when it reads the weights (just before its forward pass),
and compares with the others' `started` total when it begins to write:

* **stale update**: at least one other update was not finished when I read, and had begun by
  the time I write — my gradient was computed on weights that changed under me;
* **overlapping update**: another worker was writing while I was writing — only such updates can
  overwrite each other's coordinates;
* **lost increment**: every update also increments one shared counter *without* a lock, loading
  it just before its write and storing `loaded + 1` just after; `updates - counter` is the number
  of overwritten increments — lost updates on a one-coordinate "weight".

A constructed race makes the definitions concrete. Each step of the schedule below runs in a
real process, in exactly this order (events force it):"""),
    new_code_cell("""race = [(0, "read"), (1, "read"), (0, "begin"), (1, "begin"), (0, "end"), (1, "end")]
out = hw.replay_schedule(race)
for k, s in enumerate(out["per_worker"]):
    print(f"worker {k}: {s}")
print("lost increments:", out["lost_increments"], " counter:", out["counter"], "after", out["updates"], "updates")"""),
    new_markdown_cell("""Worker 1 read the weights before worker 0 wrote, and began its own write while worker 0
was still writing: its update is stale (by one update), both writes overlap, and both
increments loaded 0, so the counter ends at 1 after two updates: one increment is lost.

**Exercise.** Given a schedule, count the lost increments by simulating the shared counter
(load at `begin`, store `loaded + 1` at `end`)."""),
    new_code_cell("""def lost_increments(schedule):
    # BEGIN SOLUTION
    counter, loaded, updates = 0, {}, 0
    for worker, op in schedule:
        if op == "begin":
            loaded[worker] = counter
        elif op == "end":
            counter = loaded[worker] + 1
            updates += 1
    return updates - counter
    # END SOLUTION


nested = [(0, "read"), (1, "read"), (0, "begin"), (1, "begin"), (1, "end"), (0, "end")]
assert lost_increments(race) == hw.replay_schedule(race, processes=False)["lost_increments"] == 1
assert lost_increments(nested) == hw.replay_schedule(nested, processes=False)["lost_increments"] == 1
print("ok")"""),
    new_markdown_cell("""## 5.2 Lock-free, locked and single process on the same work

LeNet-300-100, batch 32, plain SGD with lr 0.05 on Fashion-MNIST. All variants process the
same number of samples (`EPOCHS` times the training set, split over the workers);
*seconds per epoch-equivalent* is the wall time of the training phase (process start-up
excluded) divided by `EPOCHS`. The speedup is the single process's time over the variant's,
measured in the same run on the same machine.

Timings depend on what else runs on the machine: with two cores, two workers can be at most
2x faster, and any other busy program takes cores away. The last column, *cpu share*, is the
workers' CPU time over their wall time: 1.0 means each worker had a core to itself; a smaller
value means it waited (for other programs, or for the lock). Re-run the cell (or
`tinyapprox hogwild --lock --seeds 0 1 2`) on an idle machine before trusting a speedup."""),
    new_code_cell("""result = experiment.compare(workers=2, epochs=EPOCHS, seeds=[0], lock=True, limit=LIMIT, verbose=False)
print(experiment.format_table(result["rows"]))
experiment.plot_comparison(result, "hogwild.png")
display(Image("hogwild.png"))"""),
    new_markdown_cell("""Read the table from right to left. Lock-free workers collide: many updates are stale (the
Hogwild! paper's bounded delay tau is the mean staleness) and some increments are lost. The
lock removes overlapping writes and lost increments but not stale reads, since reading the
weights is never locked — and it makes a worker wait while the other writes. Accuracy after
the same work stays close to the single process: SGD absorbs the noise.

## 5.3 Updates below half a step vanish

Put a weight on an 8-bit fixed-point grid with step `2**-7` and apply 100 updates of
`0.003`, a bit less than half a step. Stored in the format, the weight never moves. With a
full-precision *shadow* weight (the quantization-aware-training recipe: the forward pass sees
the rounded value, the optimizer updates the shadow), the updates accumulate."""),
    new_code_cell("""fmt = DynamicFixedPoint(bits=8, frac_length=7)
print("step", fmt.step, " half step", fmt.step / 2)

stored = lowprec.StoredLowPrecision(fmt).attach(Parameter(np.array([0.5], dtype=np.float32)))
shadow = Parameter(np.array([0.5], dtype=np.float32))
shadow.add_transform(WeightQuant("dfp", bits=8, dynamic=False, fmt=fmt))
opt = optim.SGD([stored, shadow], lr=1.0)
for _ in range(100):
    stored.grad = np.array([0.003], dtype=np.float32)
    shadow.grad = np.array([0.003], dtype=np.float32)
    opt.step()
print("stored in 8-bit fixed point:", stored.data[0])
print("shadow weight:", shadow.data[0], " the forward pass uses", shadow.effective().data[0])
print("expected 0.5 - 100 * 0.003 =", 0.5 - 0.3)"""),
    new_markdown_cell("""**Exercise.** For the first layer of a fresh LeNet-300-100, what fraction of the
coordinates of one SGD update (lr 0.05, batch 32) is smaller than half the 8-bit fixed-point
step of that layer (fractional length chosen from the weights' range, as Ristretto does)?
Count only coordinates with a non-zero gradient."""),
    new_code_cell("""from tinyapprox import models
from tinyapprox import functional as F
from tinyapprox.tensor import Tensor

(train_x, train_y), (test_x, test_y) = data.load("fashion-mnist", limit=LIMIT)
model = models.lenet_300_100(seed=0)
x, y = next(iter(data.DataLoader(train_x, train_y, batch_size=32, shuffle=True, seed=0)))
F.cross_entropy(model(Tensor(x)), y).backward()
w = model[1].weight
# BEGIN SOLUTION
layer_fmt = DynamicFixedPoint.from_tensor(w.data, bits=8, signed=True)
update = np.abs(0.05 * w.grad)
nonzero = w.grad != 0
fraction = np.count_nonzero((update < layer_fmt.step / 2) & nonzero) / np.count_nonzero(nonzero)
# END SOLUTION
print(f"step {layer_fmt.step:.2e}: {100 * fraction:.1f}% of the first layer's updates would vanish")"""),
    new_markdown_cell("""## 5.4 Training LeNet-300-100 with low-precision weights

Same seed, data order and learning rate for every recipe:

* `fp32`: the reference;
* `fp16-store` / `fixed8-store`: the weights exist only in IEEE half precision / 8-bit dynamic
  fixed point (one fractional length per tensor, chosen from its initial range); after each step
  they are rounded back to the format;
* `fixed8-store-sr`: the same with *stochastic* rounding, which keeps small updates in
  expectation (Gupta et al., 2015);
* `fp16-shadow` / `fixed8-shadow`: fp32 shadow weights, fake-quantized in the forward pass.

The printed *vanished updates* is the fraction of coordinate updates (with a non-zero gradient)
that left the stored weight unchanged."""),
    new_code_cell("""curves = train_lowprec(tuple(lowprec.VARIANTS), epochs=EPOCHS, limit=LIMIT,
                       eval_limit=500 if QUICK else 2000, verbose=True)
plot_lowprec(curves, "lowprec.png")
display(Image("lowprec.png"))"""),
    new_markdown_cell("""fp16 has about three significant decimal digits: near the weights' magnitude its step is small
enough that most updates still land, so fp16 storage follows fp32 at this learning rate (it
stalls later, when the learning rate decays). 8-bit fixed point has a step of about 5e-4 for the
first layer, several times the typical update: most updates vanish and the network learns
much more slowly, while the shadow-weight version tracks fp32. Inference can be 8 bits; the
*accumulation* of training updates needs more precision (or stochastic rounding).

From the command line:

```
tinyapprox hogwild --workers 2 --epochs 3 --lock --seeds 0 1 2 --out runs/hogwild
tinyapprox hogwild --lowprec --epochs 3 --out runs/hogwild
```"""),
]

Notebook(cells).write("05_training.ipynb")
