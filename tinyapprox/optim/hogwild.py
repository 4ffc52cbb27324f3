"""Hogwild!: several processes run SGD on one shared copy of the weights, without locks.

Niu, Recht, Re and Wright (NIPS 2011) showed that SGD still converges when workers read
weights that another worker is changing (stale reads) and occasionally overwrite each
other's updates (lost updates), as long as collisions are rare. This module runs that
experiment on the engine and makes the approximation visible as numbers.

How a run is organised (``train_hogwild``):

* The parent builds the model from ``seed`` and copies every parameter into **one
  shared-memory segment** (``multiprocessing.shared_memory``); the training images go into
  a second, read-only segment. Both live in ``/dev/shm`` on Linux (POSIX shared memory on
  macOS too).
* ``workers`` processes are started with the ``"spawn"`` method, with
  ``OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS=1`` put into the environment
  *before* they start, so each worker's NumPy uses one BLAS thread (spawned children import
  NumPy afresh and read the variables; a forked child would inherit the parent's BLAS
  thread pool instead). Each worker points its parameters' ``.data`` at views of the shared
  segment, takes the shard ``k::workers`` of the training set, shuffles it with seed
  ``seed + k`` and runs ``epochs`` passes: engine forward and backward, then
  ``w -= lr * g`` written straight into the shared view. Lock-free: no lock at all;
  ``lock=True``: one lock held around each update (reads stay unlocked). One worker is the
  single-process baseline (same code, one process, one BLAS thread).
* Timing starts when every worker has built its model and waits at the start line, so
  process start-up is not counted (it is reported separately). Together the workers
  process ``epochs`` times the training set, so ``seconds_per_epoch`` is the wall time of
  one *epoch-equivalent*.
* A worker that raises sends its traceback to the parent and exits with code 1; the parent
  stops the others and raises ``HogwildWorkerError`` naming each failed worker, its exit
  code and its exception. Whatever happens (failure, Ctrl-C, SIGTERM) the parent's
  ``finally`` terminates the workers and closes *and unlinks* both segments; workers ignore
  SIGINT and only ever close their mappings.

What is counted (``UpdateTracker``; each worker ``k`` owns the slots ``started[k]`` and
``finished[k]``, so these counters are themselves exact — no two processes write one):

* ``updates``: SGD updates applied by all workers together.
* ``stale_updates``: updates whose gradient was computed from weights that another worker
  changed: at least one other update was unfinished when this worker read the weights
  (took its snapshot just before the forward pass) and had begun writing by the time this
  worker began its own write. ``mean_staleness`` is the mean number of such updates per
  update (the tau of the Hogwild! analysis).
* ``overlapping_updates``: updates during whose write another worker was also writing
  (its write was in progress when this one began, or began before this one ended). Only
  such updates can overwrite coordinates of each other; how many coordinates are actually
  lost depends on the two loops meeting at the same element, which NumPy does not expose.
* ``lost_increments``: every update also increments one shared counter *without* a lock,
  loading it just before its write and storing ``loaded + 1`` just after. The shortfall
  ``updates - counter`` is the number of updates that were overwritten in the plain
  read-modify-write sense, measured on a one-coordinate "weight" whose read-modify-write
  window spans the whole update — an upper estimate for a single real weight.

The counters read other workers' slots without synchronisation; on x86 (total store order)
an update's ``started`` store is visible before its weight stores. A deterministic,
constructed two-worker race (``replay_schedule``) checks the counting exactly.
"""
from __future__ import annotations

import os
import secrets
import signal
import time
import traceback
from dataclasses import asdict, dataclass, field
from multiprocessing import shared_memory

import numpy as np

__all__ = ["WORKER_ENV", "SharedArrays", "UpdateTracker", "HogwildResult", "HogwildWorkerError", "train_hogwild",
           "replay_schedule"]

#: Environment set for every worker before it starts (one BLAS / OpenMP thread each).
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "VECLIB_MAXIMUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}

SEGMENT_PREFIX = "tinyapprox_hw_"
_ALIGN = 64


class HogwildWorkerError(RuntimeError):
    """One or more workers died; ``failures`` lists ``{"worker", "exitcode", "error", "traceback"}``
    dicts (exit code None: the worker reported an error but had not exited yet when stopped);
    ``segments`` names the shared-memory segments, unlinked by the time this is raised."""

    def __init__(self, failures, segments=()):
        self.failures = list(failures)
        self.segments = list(segments)
        lines = [f"worker {f['worker']} exited with code {f['exitcode']}: {f['error'].strip() or '(no message)'}"
                 for f in self.failures]
        super().__init__("hogwild: " + "; ".join(lines))


# ------------------------------------------------------------------ shared memory
class SharedArrays:
    """Named NumPy arrays laid out in one shared-memory segment (each 64-byte aligned).

    ``SharedArrays.create(spec)`` makes a new segment (``spec``: name -> (shape, dtype)),
    zero-filled; ``SharedArrays.attach(handle)`` maps an existing one in another process,
    where ``handle = arrays.handle()`` is a small picklable tuple. ``arrays[name]`` is a
    view into the segment. The creator must ``unlink()`` it (``close()`` only unmaps).
    """

    def __init__(self, shm, layout, owner):
        self.shm, self.layout, self.owner = shm, layout, owner
        self.arrays = {name: np.ndarray(shape, dtype=np.dtype(dt), buffer=shm.buf, offset=off)
                       for name, (shape, dt, off) in layout.items()}

    @classmethod
    def create(cls, spec: dict, prefix: str = SEGMENT_PREFIX) -> "SharedArrays":
        layout, offset = {}, 0
        for name, (shape, dtype) in spec.items():
            shape = tuple(int(s) for s in shape)
            dt = np.dtype(dtype)
            layout[name] = (shape, dt.str, offset)
            offset += -(-int(np.prod(shape, dtype=np.int64)) * dt.itemsize // _ALIGN) * _ALIGN
        shm = shared_memory.SharedMemory(name=f"{prefix}{os.getpid()}_{secrets.token_hex(4)}", create=True,
                                         size=max(offset, 1))
        out = cls(shm, layout, owner=True)
        for arr in out.arrays.values():
            arr[...] = 0
        return out

    @classmethod
    def attach(cls, handle) -> "SharedArrays":
        name, layout = handle
        try:
            shm = shared_memory.SharedMemory(name=name, create=False, track=False)
        except TypeError:  # Python < 3.13: no track argument; the parent's tracker is shared under spawn
            shm = shared_memory.SharedMemory(name=name, create=False)
        return cls(shm, layout, owner=False)

    @property
    def name(self) -> str:
        return self.shm.name

    def handle(self):
        return (self.shm.name, self.layout)

    def __getitem__(self, key):
        return self.arrays[key]

    def close(self):
        self.arrays = {}
        try:
            self.shm.close()
        except BufferError:  # a view is still alive somewhere; the mapping goes with the process
            pass

    def unlink(self):
        try:
            self.shm.unlink()
        except FileNotFoundError:
            pass


def segment_exists(name: str) -> bool:
    """Whether a shared-memory segment called ``name`` can still be attached."""
    try:
        try:
            shm = shared_memory.SharedMemory(name=name, create=False, track=False)
        except TypeError:
            from multiprocessing import resource_tracker
            shm = shared_memory.SharedMemory(name=name, create=False)
            resource_tracker.unregister(shm._name, "shared_memory")
    except FileNotFoundError:
        return False
    shm.close()
    return True


# ------------------------------------------------------------------ update tracking
class UpdateTracker:
    """Counts stale and overlapping updates of worker ``k`` (see the module docstring).

    ``started``, ``finished``: shared int64 (W,) arrays, slot ``k`` written only by worker
    ``k``; ``counter``: shared int64 (1,) incremented without a lock around each write.
    Call ``read()`` before computing a gradient, ``begin()`` just before writing the
    update and ``end()`` just after.
    """

    def __init__(self, started, finished, counter, k):
        self.started, self.finished, self.counter, self.k = started, finished, counter, int(k)
        self.updates = self.stale = self.staleness = self.overlapping = 0
        self._seen = self._loaded = self._others_at_begin = 0
        self._overlap = False

    def _others(self, arr):
        return int(arr.sum()) - int(arr[self.k])

    def read(self):
        self._seen = self._others(self.finished)

    def begin(self):
        k = self.k
        self.started[k] += 1
        started_others = self._others(self.started)
        missed = started_others - self._seen
        if missed > 0:
            self.stale += 1
            self.staleness += missed
        self._others_at_begin = started_others
        self._overlap = started_others != self._others(self.finished)
        self._loaded = int(self.counter[0])

    def end(self):
        self.counter[0] = self._loaded + 1
        if self._overlap or self._others(self.started) != self._others_at_begin:
            self.overlapping += 1
        self.finished[self.k] += 1
        self.updates += 1

    def stats(self) -> dict:
        return {"updates": self.updates, "stale_updates": self.stale, "staleness_sum": self.staleness,
                "overlapping_updates": self.overlapping}


def _tracking_spec(workers):
    return {"started": ((workers,), np.int64), "finished": ((workers,), np.int64), "counter": ((1,), np.int64)}


def replay_schedule(schedule, workers: int = 2, processes: bool = True, timeout: float = 60.0) -> dict:
    """Run tracker operations in a fixed interleaving and return the counts.

    ``schedule`` is a list of ``(worker, op)`` with op in ``"read"``, ``"begin"``, ``"end"``
    (one update of a worker is read, begin, end). With ``processes=True`` each worker is a
    real spawned process attached to shared memory and a chain of events forces the order;
    with ``False`` the same operations run in this process. Either way the result is
    deterministic: ``{"per_worker": [stats...], "updates", "stale_updates",
    "overlapping_updates", "lost_increments", "counter"}``.

    Example (two updates overlapping, both increments read 0, one is lost)::

        replay_schedule([(0, "read"), (1, "read"), (0, "begin"), (1, "begin"), (0, "end"), (1, "end")])
    """
    for i, (w, op) in enumerate(schedule):
        if not (0 <= w < workers) or op not in ("read", "begin", "end"):
            raise ValueError(f"replay_schedule: entry {i} must be (worker in [0, {workers}), 'read'|'begin'|'end'), "
                             f"got {(w, op)!r}")
    shared = SharedArrays.create(_tracking_spec(workers))
    try:
        if not processes:
            trackers = [UpdateTracker(shared["started"], shared["finished"], shared["counter"], k)
                        for k in range(workers)]
            for w, op in schedule:
                getattr(trackers[w], op)()
            per_worker = [t.stats() for t in trackers]
        else:
            import multiprocessing as mp
            ctx = mp.get_context("spawn")
            events = [ctx.Event() for _ in range(len(schedule) + 1)]
            events[0].set()
            queue = ctx.Queue()
            procs = [ctx.Process(target=_replay_worker, daemon=True,
                                 args=(shared.handle(), k, [(i, op) for i, (w, op) in enumerate(schedule) if w == k],
                                       events, queue, timeout)) for k in range(workers)]
            for p in procs:
                p.start()
            per_worker, deadline = [None] * workers, time.monotonic() + timeout
            for _ in range(workers):
                msg = queue.get(timeout=max(deadline - time.monotonic(), 0.1))
                if "error" in msg:
                    raise RuntimeError(f"replay_schedule: worker {msg['worker']} failed: {msg['error']}")
                per_worker[msg["worker"]] = msg["stats"]
            for p in procs:
                p.join(timeout=max(deadline - time.monotonic(), 0.1))
                if p.is_alive():
                    p.terminate()
        updates = sum(s["updates"] for s in per_worker)
        counter = int(shared["counter"][0])
        return {"per_worker": per_worker, "updates": updates,
                "stale_updates": sum(s["stale_updates"] for s in per_worker),
                "overlapping_updates": sum(s["overlapping_updates"] for s in per_worker),
                "lost_increments": updates - counter, "counter": counter}
    finally:
        shared.close()
        shared.unlink()


def _replay_worker(handle, k, ops, events, queue, timeout):
    shared = SharedArrays.attach(handle)
    try:
        tracker = UpdateTracker(shared["started"], shared["finished"], shared["counter"], k)
        for i, op in ops:
            if not events[i].wait(timeout):
                raise TimeoutError(f"step {i} never came")
            getattr(tracker, op)()
            events[i + 1].set()
        queue.put({"worker": k, "stats": tracker.stats()})
    except BaseException as exc:  # report, never hang the parent
        queue.put({"worker": k, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        del tracker
        shared.close()


# ------------------------------------------------------------------ the training run
@dataclass
class HogwildResult:
    """Outcome of one ``train_hogwild`` run (all counts over all workers).

    ``seconds`` is the wall time of the training phase (start line to last worker done),
    ``seconds_per_epoch`` that divided by ``epochs``; ``startup_seconds`` the time to start
    the workers (not included). ``cpu_share`` = CPU time / wall time of the workers'
    training loops: 1.0 when each worker had a core to itself, less when other programs (or
    waiting for the lock) took it away — read speedups in its light. ``params`` holds the
    final shared parameters (name -> float32 copy); the counts are defined in the module
    docstring.
    """

    variant: str
    workers: int
    epochs: int
    seed: int
    seconds: float
    seconds_per_epoch: float
    startup_seconds: float
    test_top1: float
    test_loss: float
    train_loss: float
    updates: int
    stale_updates: int
    mean_staleness: float
    overlapping_updates: int
    lost_increments: int
    cpu_share: float = float("nan")
    per_worker: list = field(default_factory=list)
    segments: list = field(default_factory=list)
    params: dict = field(default_factory=dict, repr=False)

    def summary(self) -> dict:
        """The result without the parameter arrays (JSON-able)."""
        out = asdict(self)
        out.pop("params")
        return out


def _variant_name(workers, lock):
    return "single" if workers == 1 else ("locked" if lock else "lock-free")


def train_hogwild(workers: int = 2, epochs: int = 1, lr: float = 0.05, batch_size: int = 32, seed: int = 0,
                  lock: bool = False, model: str = "lenet-300-100", train=None, test=None, limit=None,
                  timeout: float = 3600.0, _fail_at=None) -> HogwildResult:
    """Train ``model`` with ``workers`` processes sharing one copy of the weights.

    Args:
        workers: number of worker processes (1 = the single-process baseline).
        epochs: passes of each worker over its shard (together: ``epochs`` epochs).
        lr: SGD learning rate (plain SGD, no momentum: ``w -= lr * g``).
        batch_size: mini-batch size of every worker.
        seed: model initialisation; worker ``k`` shuffles its shard with seed ``seed + k``.
        lock: hold one lock around each update (the locked variant).
        model: a name of ``models.MODELS`` (MLPs and ConvNets work alike).
        train, test: ``(images uint8 (N, 28, 28), labels int (N,))``; default Fashion-MNIST
            (``limit`` images of each split when given).
        timeout: seconds after which the run is abandoned (workers terminated).
        _fail_at: ``(worker, step)``: that worker raises at that step (for tests).

    Returns:
        ``HogwildResult`` with timings, test accuracy, update counts and the final
        parameters (``params``: name -> float32 array copy).

    Raises:
        ValueError: workers < 1, epochs < 0, lr <= 0, batch_size < 1, a shard smaller than one batch.
        HogwildWorkerError: a worker died (exit code and exception text of each).
    """
    import multiprocessing as mp

    from .. import data, models
    from ..train import evaluate

    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"train_hogwild: workers must be an int >= 1, got {workers!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"train_hogwild: epochs must be an int >= 0, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)) or not lr > 0:
        raise ValueError(f"train_hogwild: lr must be a number > 0, got {lr!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"train_hogwild: batch_size must be an int >= 1, got {batch_size!r}")
    if train is None or test is None:
        (tx, ty), (vx, vy) = data.load("fashion-mnist", limit=limit)
        train = train if train is not None else (tx, ty)
        test = test if test is not None else (vx, vy)
    images, labels = np.asarray(train[0]), np.asarray(train[1]).astype(np.int64)
    if len(images) // workers < batch_size:
        raise ValueError(f"train_hogwild: {len(images)} training images give shards of {len(images) // workers}, "
                         f"fewer than one batch of {batch_size}")
    net = models.get(model, seed=seed)
    named = list(net.named_parameters())
    spec = {name: (p.shape, np.float32) for name, p in named}
    spec.update(_tracking_spec(workers))
    ctx = mp.get_context("spawn")
    shared = dataset = None
    procs = []
    previous_term = None
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and _in_main_thread():
            previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        shared = SharedArrays.create(spec)
        dataset = SharedArrays.create({"images": (images.shape, images.dtype), "labels": (labels.shape, np.int64)})
        for name, p in named:
            shared[name][...] = p.data
        dataset["images"][...] = images
        dataset["labels"][...] = labels
        lock_obj = ctx.Lock() if lock else None
        ready, start, queue = [ctx.Event() for _ in range(workers)], ctx.Event(), ctx.Queue()
        cfg = {"model": model, "names": [n for n, _ in named], "workers": workers, "epochs": int(epochs),
               "lr": float(lr), "batch_size": int(batch_size), "seed": int(seed), "fail_at": _fail_at}
        t_launch = time.perf_counter()
        saved_env = {k: os.environ.get(k) for k in WORKER_ENV}
        os.environ.update(WORKER_ENV)
        try:
            for k in range(workers):
                procs.append(ctx.Process(target=_worker, name=f"hogwild-{k}", daemon=True,
                                         args=(k, cfg, shared.handle(), dataset.handle(), lock_obj, ready[k], start,
                                               queue)))
                procs[-1].start()
        finally:
            for key, val in saved_env.items():
                if val is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = val
        messages, failures = {}, []
        deadline = time.monotonic() + timeout

        def poll(wait):
            while True:
                try:
                    msg = queue.get(timeout=wait)
                except Exception:  # queue.Empty
                    return
                messages.setdefault(msg["worker"], {}).update(msg)
                wait = 0.0

        while not all(e.is_set() for e in ready):
            poll(0.02)
            failures = _failures(procs, messages)
            if failures:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"train_hogwild: workers not ready after {timeout} s")
        startup = time.perf_counter() - t_launch
        t0 = time.perf_counter()
        if not failures:
            start.set()
            while any(p.is_alive() for p in procs) or len(messages) < workers:
                poll(0.02)
                failures = _failures(procs, messages)
                if failures or time.monotonic() > deadline:
                    break
                if not any(p.is_alive() for p in procs):
                    poll(0.2)
                    break
        seconds = time.perf_counter() - t0
        failed = {f["worker"] for f in failures}
        for k, p in enumerate(procs):  # a failed worker exits right after sending its error
            p.join(timeout=5.0 if (k in failed or not failures) else 0.05)
        poll(0.05)
        failures = _failures(procs, messages)
        if failures:
            raise HogwildWorkerError(failures, [shared.name, dataset.name])
        if len(messages) < workers or any("stats" not in m for m in messages.values()):
            raise TimeoutError(f"train_hogwild: workers did not finish within {timeout} s")
        params = {name: np.array(shared[name], copy=True) for name, _ in named}
        counter = int(shared["counter"][0])
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
                p.join(timeout=1.0)
        for seg in (shared, dataset):
            if seg is not None:
                seg.close()
                seg.unlink()
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    for (name, p) in named:
        p.data = params[name].copy()
    result = evaluate(net, test[0], test[1])
    per_worker = [messages[k]["stats"] for k in range(workers)]
    updates = sum(s["updates"] for s in per_worker)
    stale = sum(s["stale_updates"] for s in per_worker)
    n_seen = sum(s["samples"] for s in per_worker)
    return HogwildResult(
        variant=_variant_name(workers, lock), workers=workers, epochs=int(epochs), seed=int(seed), seconds=seconds,
        seconds_per_epoch=seconds / max(int(epochs), 1), startup_seconds=startup, test_top1=result["top1"],
        test_loss=result["loss"], train_loss=sum(s["loss_sum"] for s in per_worker) / max(n_seen, 1),
        updates=updates, stale_updates=stale,
        mean_staleness=sum(s["staleness_sum"] for s in per_worker) / max(updates, 1),
        overlapping_updates=sum(s["overlapping_updates"] for s in per_worker),
        lost_increments=updates - counter,
        cpu_share=sum(s["cpu_seconds"] for s in per_worker) / max(sum(s["wall_seconds"] for s in per_worker), 1e-12),
        per_worker=per_worker, segments=[shared.name, dataset.name],
        params=params)


def _in_main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _failures(procs, messages):
    out = []
    for k, p in enumerate(procs):
        err = messages.get(k, {}).get("error")
        if err is not None or (p.exitcode not in (None, 0)):
            if err is None and p.exitcode is not None and p.exitcode < 0:
                err = f"killed by signal {-p.exitcode}"
            out.append({"worker": k, "exitcode": p.exitcode, "error": err or "",
                        "traceback": messages.get(k, {}).get("traceback", "")})
    return out


def _worker(k, cfg, param_handle, data_handle, lock, ready, start, queue):
    """One Hogwild! worker: attach, build the model on shared views, train its shard."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    shared = dataset = None
    try:
        from .. import data, models
        from .. import functional as F
        from ..tensor import Tensor

        shared = SharedArrays.attach(param_handle)
        dataset = SharedArrays.attach(data_handle)
        net = models.get(cfg["model"], seed=cfg["seed"])
        named = dict(net.named_parameters())
        params = [named[name] for name in cfg["names"]]
        for name, p in zip(cfg["names"], params):
            p.data = shared[name]
        scratch = [np.empty_like(p.data) for p in params]
        workers = cfg["workers"]
        images, labels = dataset["images"], dataset["labels"]
        if workers > 1:
            images, labels = images[k::workers], labels[k::workers]
        loader = data.DataLoader(images, labels, batch_size=cfg["batch_size"], shuffle=True, seed=cfg["seed"] + k)
        tracker = UpdateTracker(shared["started"], shared["finished"], shared["counter"], k)
        lr, fail_at = cfg["lr"], cfg["fail_at"]
        cross_entropy, grad_step = F.cross_entropy, 0
        loss_sum, samples = 0.0, 0
        ready.set()
        start.wait()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(cfg["epochs"]):
            for x, y in loader:
                tracker.read()
                loss = cross_entropy(net(Tensor(x)), y)
                for p in params:
                    p.grad = None
                loss.backward()
                if lock is not None:
                    lock.acquire()
                tracker.begin()
                for p, tmp in zip(params, scratch):
                    np.multiply(p.grad, lr, out=tmp)
                    np.subtract(p.data, tmp, out=p.data)
                tracker.end()
                if lock is not None:
                    lock.release()
                grad_step += 1
                loss_sum += float(loss.data) * len(y)
                samples += len(y)
                if fail_at is not None and fail_at[0] == k and fail_at[1] == grad_step:
                    raise RuntimeError(f"injected failure at step {grad_step}")
        stats = tracker.stats()
        stats.update(loss_sum=loss_sum, samples=samples, cpu_seconds=time.process_time() - cpu0,
                     wall_seconds=time.perf_counter() - wall0)
        queue.put({"worker": k, "stats": stats})
        for p in params:  # drop the views before unmapping
            p.data = None
        del params, named, net, images, labels, loader, tracker
    except BaseException as exc:
        queue.put({"worker": k, "error": "".join(traceback.format_exception_only(type(exc), exc)),
                   "traceback": traceback.format_exc()})
        queue.close()
        queue.join_thread()
        os._exit(1)
    finally:
        for seg in (shared, dataset):
            if seg is not None:
                seg.close()
