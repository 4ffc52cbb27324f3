"""The applications' floor: the harness, sweeps on any executor, and the commands end to end.

A sweep's results must not depend on where its runs execute: in this process, in a
process pool (``--workers``) or on a Dask cluster (a real ``distributed.LocalCluster``).
"""
import functools
import json
import numpy as np
import pytest

from tinyapprox import data, models
from tinyapprox.experiments import cli, harness, sweep
from tinyapprox.experiments.parallel import grid_points, make_executor
from tinyapprox.quant import pipeline as ptq


def _small_problem():
    (tx, _), (vx, vy) = data.load("fashion-mnist", limit=300)
    return models.lenet_300_100(seed=3), tx, vx, vy


def _ptq_points(model, tx, vx, vy):
    return [dict(model=model, scheme=s, weight_bits=b, act_bits=b, calib_images=tx[:64], n_calib=64,
                 val_images=vx, val_labels=vy) for s, b in (("int8", 8), ("int8", 3), ("dfp", 4), ("pow2", 4))]


# ------------------------------------------------------------------ sweep, in process
def _sub(a, b):
    return a - b


def _div(a, b):
    return a / b


def test_sweep_returns_results_in_grid_order():
    assert sweep(_sub, [{"a": 5, "b": 1}, {"a": 1, "b": 5}]) == [4, -4]
    assert sweep(_sub, {"a": [10, 20], "b": [1, 2, 3]}) == [9, 8, 7, 19, 18, 17]
    assert sweep(_sub, []) == []


def test_grid_points_expands_a_dict_and_refuses_other_shapes():
    assert grid_points({"x": [1, 2], "y": ["a"]}) == [{"x": 1, "y": "a"}, {"x": 2, "y": "a"}]
    with pytest.raises(TypeError, match="sweep: expected each grid point to be a dict"):
        grid_points([(1, 2)])
    with pytest.raises(TypeError, match="sweep: expected a list of values for 'x'"):
        grid_points({"x": 3})


def test_sweep_raises_the_first_error_of_a_run():
    with pytest.raises(ZeroDivisionError):
        sweep(_div, [{"a": 1, "b": 1}, {"a": 1, "b": 0}])


def test_make_executor_refuses_bad_requests():
    with pytest.raises(ValueError, match="--workers or --dask, not both"):
        with make_executor(workers=2, dask="tcp://127.0.0.1:1"):
            pass
    with pytest.raises(ValueError, match="--workers >= 1"):
        with make_executor(workers=0):
            pass
    with make_executor() as ex:
        assert ex is None


# ------------------------------------------------------------------ the same results elsewhere
def test_process_pool_gives_the_in_process_results():
    model, tx, vx, vy = _small_problem()
    points = _ptq_points(model, tx, vx, vy)
    here = sweep(ptq.quantized_top1, points)
    with make_executor(workers=2) as pool:
        assert sweep(ptq.quantized_top1, points, pool) == here
        runner = functools.partial(sweep, executor=pool)
        assert ptq.search_bitwidths(model, tx, vx, vy, n_calib=64, candidates=(8, 4, 2), runner=runner) == \
            ptq.search_bitwidths(model, tx, vx, vy, n_calib=64, candidates=(8, 4, 2))
        assert ptq.sensitivity(model, tx, vx, vy, bits=3, n_calib=64, runner=runner) == \
            ptq.sensitivity(model, tx, vx, vy, bits=3, n_calib=64)


def test_search_keeps_the_ristretto_rule():
    """All candidates are evaluated, but the choice stops at each group's first failure."""
    model, tx, vx, vy = _small_problem()
    res = ptq.search_bitwidths(model, tx, vx, vy, n_calib=64, candidates=(8, 4, 2, 1), margin=0.0)
    for group, bits in res["chosen"].items():
        trials = [t for t in res["trials"] if t["group"] == group]
        passed = [t for t in trials if t["acc_loss"] <= 0.0]
        assert [t["bits"] for t in passed] == [t["bits"] for t in trials[:len(passed)]]
        assert bits == (passed[-1]["bits"] if passed else None)
        assert len(trials) == min(len(passed) + 1, 4)


def test_a_dask_local_cluster_gives_the_in_process_results():
    distributed = pytest.importorskip("distributed")
    model, tx, vx, vy = _small_problem()
    points = _ptq_points(model, tx, vx, vy)
    here = sweep(ptq.quantized_top1, points)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster:
        with make_executor(dask=cluster.scheduler_address) as ex:
            assert sweep(ptq.quantized_top1, points, ex) == here
            # a point's names never collide with the executor's own keywords (Dask's submit has workers=, key=)
            assert sweep(dict, [{"workers": 2, "key": "k", "pure": True}], ex) == [{"workers": 2, "key": "k",
                                                                                      "pure": True}]


# ------------------------------------------------------------------ the harness
def test_to_jsonable_turns_numpy_values_into_json():
    obj = {"a": np.float32(0.5), "b": np.arange(3), (1, 2): [np.int64(4), (np.bool_(True), None)]}
    out = harness.to_jsonable(obj)
    assert out == {"a": 0.5, "b": [0, 1, 2], "(1, 2)": [4, [True, None]]}
    assert json.loads(json.dumps(out)) == out


def test_median_time_counts_calls_and_returns_seconds():
    calls = []
    t = harness.median_time(lambda: calls.append(1), repeat=4, number=3, warmup=2)
    assert len(calls) == 2 + 4 * 3 and isinstance(t, float) and t >= 0
    wall, cpu = harness.median_wall_cpu(lambda: None, repeat=3)
    assert wall >= 0 and cpu >= 0


def test_quick_mode_is_one_size_everywhere(monkeypatch):
    (tx, _), (vx, _) = harness.load_dataset(quick=True)
    assert (len(tx), len(vx)) == (harness.QUICK_TRAIN_IMAGES, harness.QUICK_TEST_IMAGES)
    assert harness.resolve_epochs(None, 10, quick=True) == harness.QUICK_EPOCHS
    assert harness.resolve_epochs(None, 10, quick=False) == 10
    assert harness.resolve_epochs(4, 10, quick=True) == 4
    with pytest.raises(ValueError, match="--epochs >= 0"):
        harness.resolve_epochs(-1, 10, quick=False)

    class Args:
        quick = False
    monkeypatch.setenv("TINYAPPROX_QUICK", "1")
    assert harness.is_quick(Args())


def test_train_baseline_caches_under_a_name_with_every_setting(tmp_path):
    dataset = data.load("fashion-mnist", limit=256)
    model, hist, metrics = harness.train_baseline("lenet-300-100", epochs=1, out_dir=tmp_path, verbose=False,
                                                  dataset=dataset)
    cached = sorted(p.name for p in tmp_path.iterdir())
    assert cached == ["dense_lenet-300-100_e1_s0_lr0.1_b128_n256.npz"] and hist is not None
    again, hist2, metrics2 = harness.train_baseline("lenet-300-100", epochs=1, out_dir=tmp_path, verbose=False,
                                                    dataset=dataset)
    assert hist2 is None and metrics2 == metrics
    with pytest.raises(ValueError, match="train_baseline: no recipe for 'vgg'"):
        harness.train_baseline("vgg")


# ------------------------------------------------------------------ the commands
def test_quantize_command_gives_the_same_results_with_workers(tmp_path):
    common = ["quantize", "--quick", "--search", "--sensitivity", "--scheme", "dfp", "--bits", "4"]
    assert cli.main(common + ["--out", str(tmp_path / "here")]) == 0
    assert cli.main(common + ["--workers", "2", "--out", str(tmp_path / "pool")]) == 0
    here, pool = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("here", "pool"))
    for key in ("sweep", "search", "sensitivity"):
        assert here[key] == pool[key], key
    assert here["quick"] is True and here["n_test"] == harness.QUICK_TEST_IMAGES


def _tiny_idx_dataset(folder, n_train=2000, n_test=200, seed=0):
    """Write the four MNIST-named IDX files of a small learnable dataset into folder."""
    from tinyapprox import data

    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        images[np.arange(n), labels * 2, :] = 255
        data.write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        data.write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)


def test_every_command_takes_another_dataset_from_a_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(harness.DATASET_ENV, raising=False)
    monkeypatch.delenv(harness.DATA_DIR_ENV, raising=False)
    folder = tmp_path / "mnist"
    folder.mkdir()
    _tiny_idx_dataset(folder)
    assert cli.main(["train", "--quick", "--dataset", "mnist", "--data-dir", str(folder),
                     "--out", str(tmp_path / "run")]) == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["epochs"][-1]["val_top1"] > 0.9   # the easy tiny set (Fashion-MNIST quick reaches ~0.7)
    for command in ("compress", "quantize", "binarize", "hogwild"):
        parser = cli.build_parser([command])
        args = parser.parse_args([command, "--dataset", "mnist", "--data-dir", str(folder)])
        assert (args.dataset, args.data_dir) == ("mnist", str(folder))
    assert cli.main(["train", "--quick", "--dataset", "mnist", "--data-dir", str(tmp_path / "empty"),
                     "--out", str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data-dir" in err and "train-images-idx3-ubyte" in err
    assert cli.main(["train", "--quick", "--out", str(tmp_path / "run3")]) == 0   # back to the bundled default
    assert harness.dataset_choice() == ("fashion-mnist", None)
