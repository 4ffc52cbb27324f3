"""Hogwild! workers on shared memory, the update counters, and low-precision weight storage."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyapprox import models, optim, train
from tinyapprox.nn import Parameter
from tinyapprox.optim import hogwild as hw
from tinyapprox.experiments.lowprec import train_lowprec
from tinyapprox.quant.lowprec import StoredLowPrecision, apply_variant
from tinyapprox.quant import FP16, DynamicFixedPoint, WeightQuant

pytestmark = pytest.mark.hogwild


def _toy_data(n, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    images[np.arange(n), labels, :] = 255  # learnable: the label is a bright row
    return images, labels.astype(np.int64)


def _our_segments():
    if not os.path.isdir("/dev/shm"):
        return set()
    return {n for n in os.listdir("/dev/shm") if n.startswith(f"{hw.SEGMENT_PREFIX}{os.getpid()}_")}


# ------------------------------------------------------------------ the training run
_PLAIN_SGD = """
import sys
import numpy as np
from tinyapprox import data, functional as F, models, optim, train
with np.load(sys.argv[1]) as z:
    images, labels = z["images"], z["labels"]
model = models.lenet_300_100(seed=3)
loader = data.DataLoader(images, labels, batch_size=32, shuffle=True, seed=3)
train.fit(model, loader, F.cross_entropy, optim.SGD(model.parameters(), lr=0.05), 2, verbose=False)
train.save_model(model, sys.argv[2])
"""


def _plain_sgd_one_blas_thread(trainset, tmp_path):
    """The reference run in a process with one BLAS thread, like a Hogwild worker.

    BLAS results depend (in the last bit) on the thread count, so a bit-for-bit
    comparison must run both sides with the same setting.
    """
    np.savez(tmp_path / "train.npz", images=trainset[0], labels=trainset[1])
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", _PLAIN_SGD, str(tmp_path / "train.npz"), str(tmp_path / "model.npz")],
                   env=env, check=True)
    return train.load_model(models.lenet_300_100(seed=3), tmp_path / "model.npz")


def test_one_worker_equals_plain_sgd_bit_for_bit(tmp_path):
    trainset, testset = _toy_data(200, 1), _toy_data(64, 2)
    before = _our_segments()
    result = hw.train_hogwild(workers=1, epochs=2, lr=0.05, batch_size=32, seed=3, train=trainset, test=testset)
    model = _plain_sgd_one_blas_thread(trainset, tmp_path)
    for name, p in model.named_parameters():
        assert result.params[name].tobytes() == p.data.tobytes(), name
    assert result.updates == 2 * -(-len(trainset[1]) // 32)
    assert result.stale_updates == result.overlapping_updates == result.lost_increments == 0
    assert result.test_top1 == pytest.approx(train.evaluate(model, *testset)["top1"])
    for name in result.segments:
        assert not hw.segment_exists(name)
    assert _our_segments() == before


def test_two_workers_share_the_work_and_release_memory():
    trainset, testset = _toy_data(256, 1), _toy_data(64, 2)
    result = hw.train_hogwild(workers=2, epochs=1, lr=0.05, batch_size=32, seed=0, train=trainset, test=testset)
    assert result.variant == "lock-free"
    assert [s["samples"] for s in result.per_worker] == [128, 128]
    assert result.updates == 8
    assert 0 <= result.lost_increments <= result.overlapping_updates <= result.updates
    assert not any(hw.segment_exists(n) for n in result.segments)


def test_a_failing_worker_is_reported_and_memory_released():
    trainset, testset = _toy_data(256, 1), _toy_data(64, 2)
    before = _our_segments()
    with pytest.raises(hw.HogwildWorkerError) as info:
        hw.train_hogwild(workers=2, epochs=3, lock=True, batch_size=32, train=trainset, test=testset,
                         _fail_at=(1, 2))
    err = info.value
    assert [f["worker"] for f in err.failures] == [1]
    assert err.failures[0]["exitcode"] == 1
    assert "injected failure at step 2" in err.failures[0]["error"]
    assert "worker 1 exited with code 1" in str(err)
    assert len(err.segments) == 2
    for name in err.segments:
        assert not hw.segment_exists(name)
    assert _our_segments() == before


def test_bad_arguments_are_refused():
    trainset = _toy_data(64)
    with pytest.raises(ValueError, match="workers must be an int >= 1, got 0"):
        hw.train_hogwild(workers=0, train=trainset, test=trainset)
    with pytest.raises(ValueError, match="workers must be an int >= 1, got 1.5"):
        hw.train_hogwild(workers=1.5, train=trainset, test=trainset)
    with pytest.raises(ValueError, match="lr must be a number > 0, got -0.1"):
        hw.train_hogwild(lr=-0.1, train=trainset, test=trainset)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        hw.train_hogwild(batch_size=0, train=trainset, test=trainset)
    with pytest.raises(ValueError, match="fewer than one batch"):
        hw.train_hogwild(workers=4, batch_size=32, train=trainset, test=trainset)
    with pytest.raises(ValueError, match="entry 1"):
        hw.replay_schedule([(0, "read"), (2, "begin")], processes=False)


# ------------------------------------------------------------------ counting, on constructed races
RACE = [(0, "read"), (1, "read"), (0, "begin"), (1, "begin"), (0, "end"), (1, "end")]


def test_constructed_race_in_two_processes_is_counted_exactly():
    # both read the same weights; 0 starts writing, 1 starts while 0 writes (so 1's gradient
    # is stale by one update and the two writes overlap); both counter increments load 0.
    out = hw.replay_schedule(RACE, processes=True)
    assert out["per_worker"] == [{"updates": 1, "stale_updates": 0, "staleness_sum": 0, "overlapping_updates": 1},
                                 {"updates": 1, "stale_updates": 1, "staleness_sum": 1, "overlapping_updates": 1}]
    assert (out["updates"], out["stale_updates"], out["overlapping_updates"]) == (2, 1, 2)
    assert (out["counter"], out["lost_increments"]) == (1, 1)


@pytest.mark.parametrize("schedule, stale, overlapping, lost", [
    # 1 writes completely between 0's read and 0's write: 0 is stale, nothing overlaps or is lost
    ([(0, "read"), (1, "read"), (1, "begin"), (1, "end"), (0, "begin"), (0, "end")], 1, 0, 0),
    # strictly one after the other: nothing stale
    ([(0, "read"), (0, "begin"), (0, "end"), (1, "read"), (1, "begin"), (1, "end")], 0, 0, 0),
    # 1 reads while 0 is writing (a torn read), writes after: stale, no overlap
    ([(0, "read"), (0, "begin"), (1, "read"), (0, "end"), (1, "begin"), (1, "end")], 1, 0, 0),
    # 1's whole write nested inside 0's: both overlap; 1's increment is overwritten by 0's
    ([(0, "read"), (1, "read"), (0, "begin"), (1, "begin"), (1, "end"), (0, "end")], 1, 2, 1),
])
def test_constructed_schedules(schedule, stale, overlapping, lost):
    out = hw.replay_schedule(schedule, processes=False)
    assert (out["stale_updates"], out["overlapping_updates"], out["lost_increments"]) == (stale, overlapping, lost)


@st.composite
def schedules(draw):
    """Interleavings of 2-3 workers, each doing 1-3 updates (read, begin, end)."""
    workers = draw(st.integers(2, 3))
    remaining = {k: ["read", "begin", "end"] * draw(st.integers(1, 3)) for k in range(workers)}
    out = []
    while any(remaining.values()):
        k = draw(st.sampled_from(sorted(k for k, ops in remaining.items() if ops)))
        out.append((k, remaining[k].pop(0)))
    return workers, out


def _reference_counts(schedule):
    """Counts from the update intervals: read at r, write over [b, e] (positions in the schedule)."""
    updates, open_ = [], {}
    for t, (k, op) in enumerate(schedule):
        if op == "read":
            open_[k] = {"k": k, "r": t}
        elif op == "begin":
            open_[k]["b"] = t
        else:
            open_[k]["e"] = t
            updates.append(open_.pop(k))
    stale = overlapping = tau = 0
    for u in updates:
        others = [v for v in updates if v["k"] != u["k"]]
        missed = sum(1 for v in others if v["b"] < u["b"] and not v["e"] < u["r"])
        stale += missed > 0
        tau += missed
        overlapping += any(v["b"] < u["e"] and u["b"] < v["e"] for v in others)
    counter, loaded = 0, {}
    for k, op in schedule:
        if op == "begin":
            loaded[k] = counter
        elif op == "end":
            counter = loaded[k] + 1
    return stale, tau, overlapping, len(updates) - counter


@given(schedules())
def test_counts_match_the_interval_definition(drawn):
    workers, schedule = drawn
    out = hw.replay_schedule(schedule, workers=workers, processes=False)
    stale, tau, overlapping, lost = _reference_counts(schedule)
    assert out["stale_updates"] == stale
    assert sum(s["staleness_sum"] for s in out["per_worker"]) == tau
    assert out["overlapping_updates"] == overlapping
    assert out["lost_increments"] == lost


# ------------------------------------------------------------------ low-precision storage
def _step(param, delta, steps=1):
    opt = optim.SGD([param], lr=1.0)
    for _ in range(steps):
        param.grad = np.full(param.shape, delta, dtype=np.float32)
        opt.step()


def test_stored_fixed_point_by_hand():
    fmt = DynamicFixedPoint(8, 7)  # step 2**-7 = 0.0078125
    p = StoredLowPrecision(fmt).attach(Parameter(np.array([0.5, -0.25], dtype=np.float32)))
    _step(p, 0.0039)  # just under half a step: vanishes
    assert p.data.tolist() == [0.5, -0.25]
    _step(p, 0.0040)  # just over: one step down
    assert p.data.tolist() == [0.5 - 0.0078125, -0.25 - 0.0078125]
    t = p.find_transform(StoredLowPrecision)
    assert (t.vanished, t.attempted) == (2, 4)


def test_stored_fp16_by_hand():
    p = StoredLowPrecision(FP16()).attach(Parameter(np.array([1.0], dtype=np.float32)))
    _step(p, 0.0002, steps=50)  # half the fp16 step below 1.0 is 2**-12 = 0.000244
    assert p.data.tolist() == [1.0]


@given(st.lists(st.integers(-100, 100), min_size=1, max_size=8), st.floats(-0.49, 0.49), st.integers(0, 10))
def test_stored_weights_stop_changing_below_half_a_step(codes, frac, fl):
    fmt = DynamicFixedPoint(8, fl)
    w0 = np.array(codes, dtype=np.float32) * np.float32(fmt.step)
    p = StoredLowPrecision(fmt).attach(Parameter(w0.copy()))
    _step(p, frac * fmt.step, steps=5)
    assert np.array_equal(p.data, w0)


@given(st.lists(st.integers(-100, 100), min_size=1, max_size=8), st.floats(0.2, 0.49), st.integers(0, 10))
def test_shadow_weights_accumulate_small_updates(codes, frac, fl):
    fmt = DynamicFixedPoint(8, fl)
    w0 = np.array(codes, dtype=np.float32) * np.float32(fmt.step)
    p = Parameter(w0.copy())
    p.add_transform(WeightQuant("dfp", bits=8, dynamic=False, fmt=fmt))
    _step(p, frac * fmt.step, steps=10)  # 10 * frac >= 2 steps in total
    effective = p.effective().data
    assert np.all(effective <= w0 - fmt.step)
    assert np.allclose(p.data, w0 - 10 * np.float32(frac * fmt.step), atol=1e-6 * max(1.0, fmt.step * 128))


def test_stored_low_precision_round_trips_and_refuses_bad_input():
    model = models.lenet_300_100(seed=0)
    apply_variant(model, "fixed8-store")
    state = model.state_dict()
    again = models.lenet_300_100(seed=1).load_state_dict(state)
    t = again[1].weight.find_transform(StoredLowPrecision)
    assert isinstance(t.fmt, DynamicFixedPoint)
    assert t.fmt.frac_length == model[1].weight.find_transform(StoredLowPrecision).fmt.frac_length
    with pytest.raises(ValueError, match="rounding"):
        StoredLowPrecision(FP16(), rounding="up")
    with pytest.raises(TypeError, match="quant format"):
        StoredLowPrecision(0.5)
    with pytest.raises(ValueError, match="unknown variant"):
        apply_variant(model, "int3")


def test_train_lowprec_small_run():
    trainset, testset = _toy_data(128, 1), _toy_data(64, 2)
    curves = train_lowprec(("fp32", "fixed8-store", "fixed8-shadow"), epochs=1, batch_size=32, train=trainset,
                           test=testset, evals_per_epoch=2)
    assert curves["fp32"]["vanished_fraction"] is None
    assert 0 < curves["fixed8-store"]["vanished_fraction"] <= 1
    assert len(curves["fixed8-shadow"]["epoch"]) == len(curves["fixed8-shadow"]["test_top1"]) == 3
