"""Fault injection: SIGKILL during checkpointed training (resume is bit for bit), and
SIGKILL of a Hogwild! run's process group or of its parent alone (nothing left in
/dev/shm, no semaphore, no orphan process). Each scenario is bounded in time."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tinyapprox import data, models, optim, train
from tinyapprox import functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OPENBLAS_NUM_THREADS="1")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and /dev/shm")


def _children(pid):
    """Pids whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def _alive(pid):
    """True unless ``pid`` is gone or a zombie (dead, waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(_alive(p) for p in pids):
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


# ------------------------------------------------------------------ checkpointed training
TRAIN_SCRIPT = textwrap.dedent("""
    import sys
    import time
    import numpy as np
    from tinyapprox import data, models, optim, train
    from tinyapprox import functional as F
    path, epochs = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (512, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 512).astype(np.int64)
    model = models.lenet_300_100(seed=3)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    loader = data.DataLoader(x, y, batch_size=32, shuffle=True, seed=3)

    class Slow:  # each step takes at least 10 ms, so a kill lands inside the run on any machine
        def on_step(self, model, step):
            time.sleep(0.01)

    train.fit(model, loader, F.cross_entropy, opt, epochs, scheduler=sched, verbose=False, checkpoint=path,
              resume=True, config={"lr": 0.05, "seed": 3}, callbacks=[Slow()])
    train.save_model(model, path + ".final.npz")
""")


def _run_to_end(path, epochs):
    subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(path), str(epochs)], env=ENV, check=True, timeout=120)
    return train.read_npz("test", str(path) + ".final.npz")


@linux_only
def test_sigkill_during_checkpointed_training_then_resume_is_bit_identical(tmp_path):
    epochs = 6
    reference = _run_to_end(tmp_path / "ref.npz", epochs)
    rng = np.random.default_rng(0)
    ckpt = tmp_path / "run.npz"
    kills = 0
    for attempt in range(4):
        proc = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(ckpt), str(epochs)], env=ENV)
        end = time.monotonic() + 60
        start_mtime = ckpt.stat().st_mtime_ns if ckpt.exists() else 0
        while time.monotonic() < end and proc.poll() is None:
            if ckpt.exists() and ckpt.stat().st_mtime_ns != start_mtime:
                break
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0, 0.15)))            # somewhere inside the next epoch or save
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        if ckpt.exists():                                  # never a half-written checkpoint
            model = models.lenet_300_100()
            train.load_checkpoint(ckpt, model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    assert kills >= 1
    resumed = _run_to_end(ckpt, epochs)
    assert list(resumed) == list(reference)
    for k in reference:
        assert resumed[k].tobytes() == reference[k].tobytes(), k
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []                                 # a killed save's temporary is cleaned by the next save


def test_resume_in_process_matches_an_uninterrupted_run(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (256, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 256).astype(np.int64)

    def run(epochs, path=None, resume=False):
        model = models.lenet_300_100(seed=5)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        loader = data.DataLoader(x, y, batch_size=32, shuffle=True, seed=5)
        train.fit(model, loader, F.cross_entropy, opt, epochs, verbose=False, checkpoint=path, resume=resume)
        return model.state_dict()

    full = run(3)
    run(2, tmp_path / "c.npz")
    resumed = run(3, tmp_path / "c.npz", resume=True)
    for k in full:
        assert resumed[k].tobytes() == full[k].tobytes(), k


# ------------------------------------------------------------------ Hogwild!
HOGWILD_SCRIPT = textwrap.dedent("""
    import multiprocessing.synchronize as sync
    def refuse(*args, **kwargs):
        raise AssertionError("a named semaphore was created")
    sync.SemLock.__init__ = refuse
    from tinyapprox.optim import hogwild
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (512, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 512).astype(np.int64)
    hogwild.train_hogwild(workers=2, epochs=100000, batch_size=32, lock=LOCK, train=(x, y), test=(x[:64], y[:64]))
    print("finished")
""")


def _shm_entries():
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@linux_only
@pytest.mark.parametrize("target, lock", [("group", False), ("parent", True), ("parent", False), ("group", True)])
def test_sigkill_of_a_hogwild_run_leaves_nothing_behind(target, lock):
    before = _shm_entries()
    proc = subprocess.Popen([sys.executable, "-c", HOGWILD_SCRIPT.replace("LOCK", str(lock))], env=ENV,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    family = []
    try:
        end = time.monotonic() + 90
        workers = []
        while time.monotonic() < end and proc.poll() is None:
            kids = _children(proc.pid)
            workers = [k for k in kids if "spawn_main" in _cmdline(k)]
            if len(workers) == 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        assert len(workers) == 2
        time.sleep(1.5)                                    # let them attach and train
        assert proc.poll() is None, proc.communicate()
        family = _children(proc.pid)                       # the workers and the resource tracker
        if target == "group":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert _wait_gone(family, timeout=15) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for pid in family:                                 # never leave an orphan behind, even on failure
            if _alive(pid) and "python" in _cmdline(pid):
                os.kill(pid, signal.SIGKILL)
    new = _shm_entries() - before
    assert not [n for n in new if n.startswith(f"tinyapprox_hw_{proc.pid}_")]
    # no named semaphore can be left: the run script refuses to create any (see HOGWILD_SCRIPT)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_hogwild_creates_no_named_semaphore(monkeypatch):
    import multiprocessing.synchronize as sync

    from tinyapprox.optim import hogwild

    def refuse(*args, **kwargs):
        raise AssertionError("a named semaphore was created")

    monkeypatch.setattr(sync.SemLock, "__init__", refuse)
    got = hogwild.replay_schedule([(0, "read"), (1, "read"), (0, "begin"), (1, "begin"), (0, "end"), (1, "end")])
    assert got["lost_increments"] == 1 and got["overlapping_updates"] == 2
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (128, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 128).astype(np.int64)
    result = hogwild.train_hogwild(workers=2, epochs=1, batch_size=16, lock=True, train=(x, y), test=(x[:32], y[:32]))
    assert result.updates == 8


def test_lost_increments_reads_a_generator_once_and_refuses_bool_workers():
    from tinyapprox.optim.races import lost_increments
    sched = [(0, "read"), (1, "read"), (0, "begin"), (1, "begin"), (0, "end"), (1, "end")]
    assert lost_increments(iter(sched)) == lost_increments(sched) == 1
    with pytest.raises(ValueError, match="lost_increments: entry 0"):
        lost_increments([(True, "begin"), (True, "end")])
