"""Loaders that validate everything before assigning, damaged files named in one clear error,
atomic and umask-respecting writes, and the smaller reliability fixes (empty loaders, the
gradcheck step, the bundled data's checksums)."""
import io
import json
import os
import stat
import zipfile

import numpy as np
import pytest

from tinyapprox import data, models, nn, optim, quant, train
from tinyapprox import functional as F
from tinyapprox.fileio import CorruptFileError, atomic_savez, atomic_write, atomic_write_json, read_npz
from tinyapprox.testing import gradcheck


def snapshot(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def assert_same(model, snap):
    now = model.state_dict()
    assert list(now) == list(snap)
    for k in snap:
        np.testing.assert_array_equal(now[k], snap[k], err_msg=k)
        assert now[k].dtype == snap[k].dtype


def small_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def bn_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))


# ------------------------------------------------------------------ load_state_dict
def test_failed_load_state_dict_leaves_the_model_untouched():
    src, dst = models.lenet_300_100(seed=1), models.lenet_300_100(seed=2)
    before = snapshot(dst)
    state = src.state_dict()
    last = list(state)[-1]
    state[last] = np.zeros((3,), dtype=np.float32)          # the last key is bad: all others are fine
    with pytest.raises(ValueError, match=rf"load_state_dict: {last} expected shape"):
        dst.load_state_dict(state)
    assert_same(dst, before)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex64, "datetime64[s]", "U3"])
def test_non_float_weights_are_refused(dtype):
    model = models.lenet_300_100(seed=0)
    before = snapshot(model)
    state = model.state_dict()
    state["1.weight"] = np.zeros(state["1.weight"].shape, dtype=dtype)
    with pytest.raises(ValueError, match=r"1.weight expected a floating-point array, got dtype"):
        model.load_state_dict(state)
    assert_same(model, before)


def test_buffer_dtype_and_kind_are_checked():
    model = bn_model()
    before = snapshot(model)
    name = next(k for k in model.state_dict() if k.endswith("running_mean"))
    state = model.state_dict()
    state[name] = np.zeros(state[name].shape, dtype=np.bool_)
    with pytest.raises(ValueError, match=rf"buffer {name} expected dtype float32"):
        model.load_state_dict(state)
    assert_same(model, before)
    state[name] = np.full(state[name].shape, 0.5, dtype=np.float64)
    model.load_state_dict(state)
    assert model.state_dict()[name].dtype == np.float32 and model.state_dict()[name][0] == 0.5


def test_damaged_transform_keys_are_refused_cleanly():
    from tinyapprox import prune

    model = models.lenet_300_100(seed=0)
    prune.magnitude(model, amount=0.5)
    before = snapshot(model)
    state = model.state_dict()
    key = next(k for k in state if ".transform" in k)
    state[key.replace("transform0", "transformX")] = state.pop(key)
    with pytest.raises(ValueError, match="load_state_dict"):
        model.load_state_dict(state)
    assert_same(model, before)


# ------------------------------------------------------------------ checkpoints
def make_run(seed=0, momentum=0.9):
    model = models.lenet_300_100(seed=seed)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
    x, y = small_data()
    loader = data.DataLoader(x, y, batch_size=64, shuffle=True, seed=seed)
    return model, opt, loader


def rewrite_meta(path, out, change):
    arrays = read_npz("test", path)
    meta = json.loads(str(arrays["meta"]))
    change(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(out, **arrays)


@pytest.mark.parametrize("change, match", [
    (lambda m: m["optimizer"]["__dict__"][1][1]["__dict__"].append(["params", 1]), "hyper-parameters"),
    (lambda m: m["optimizer"]["__dict__"][1][1]["__dict__"].__setitem__(1, ["momentum", 7.5]), "momentum"),
    (lambda m: m["optimizer"]["__dict__"][1][1]["__dict__"].__setitem__(2, ["nesterov", "yes"]), "nesterov"),
    (lambda m: m.__setitem__("epoch", -3), "epoch must be an int"),
    (lambda m: m.__setitem__("history", "x"), "history"),
    (lambda m: m.__setitem__("loader_seed", 99), "seed"),
    (lambda m: m.__setitem__("generators", {"x": 1}) or m.pop("optimizer"), "no optimizer state"),
])
def test_a_damaged_checkpoint_changes_nothing(tmp_path, change, match):
    model, opt, loader = make_run()
    train.fit(model, loader, F.cross_entropy, opt, 1, verbose=False, checkpoint=tmp_path / "c.npz")
    rewrite_meta(tmp_path / "c.npz", tmp_path / "bad.npz", change)
    fresh, fopt, floader = make_run(seed=0, momentum=0.5)
    before, hyper = snapshot(fresh), dict(vars(fopt))
    with pytest.raises(ValueError, match=match):
        train.load_checkpoint(tmp_path / "bad.npz", fresh, fopt, loader=floader)
    assert_same(fresh, before)
    assert fopt.momentum == 0.5 and fopt.params is hyper["params"] and fopt.state == [{} for _ in fopt.params]


def test_checkpoint_buffer_of_wrong_dtype_is_refused(tmp_path):
    model, opt, loader = make_run()
    train.fit(model, loader, F.cross_entropy, opt, 1, verbose=False, checkpoint=tmp_path / "c.npz")
    arrays = read_npz("test", tmp_path / "c.npz")
    key = next(k for k in arrays if k.startswith("optimizer#"))
    arrays[key] = arrays[key].astype(np.float64)
    np.savez(tmp_path / "bad.npz", **arrays)
    fresh, fopt, _ = make_run()
    before = snapshot(fresh)
    with pytest.raises(ValueError, match="has dtype float64, expected float32"):
        train.load_checkpoint(tmp_path / "bad.npz", fresh, fopt)
    assert_same(fresh, before)


def test_checkpoint_of_another_model_is_refused_in_one_line(tmp_path):
    model, opt, loader = make_run()
    train.fit(model, loader, F.cross_entropy, opt, 1, verbose=False, checkpoint=tmp_path / "c.npz")
    other = models.get("small-convnet")
    before = snapshot(other)
    with pytest.raises(train.CheckpointMismatchError, match="does not fit this model") as info:
        train.load_checkpoint(tmp_path / "c.npz", other, optim.SGD(other.parameters(), lr=0.1))
    assert "\n" not in str(info.value)
    assert_same(other, before)


def test_checkpoint_config_is_compared(tmp_path, capsys):
    cfg = {"model": "lenet-300-100", "seed": 0, "lr": 0.1, "batch_size": 64, "epochs": 2}
    model, opt, loader = make_run()
    train.fit(model, loader, F.cross_entropy, opt, 1, verbose=False, checkpoint=tmp_path / "c.npz", config=cfg)
    fresh, fopt, floader = make_run()
    before = snapshot(fresh)
    with pytest.raises(train.CheckpointMismatchError, match=r"configured differently \(lr 0.1 -> 0.01\)"):
        train.fit(fresh, floader, F.cross_entropy, fopt, 2, verbose=False, checkpoint=tmp_path / "c.npz",
                  resume=True, config=dict(cfg, lr=0.01))
    assert_same(fresh, before)
    hist = train.fit(fresh, floader, F.cross_entropy, fopt, 2, checkpoint=tmp_path / "c.npz", resume=True,
                     config=cfg)
    assert "resumed from" in capsys.readouterr().out and len(hist) == 2
    again, aopt, aloader = make_run()
    train.fit(again, aloader, F.cross_entropy, aopt, 3, verbose=False, checkpoint=tmp_path / "c.npz",
              resume=True, config=dict(cfg, epochs=3), accept_config=True)


# ------------------------------------------------------------------ damaged files
def npy_member(header: dict, payload: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def write_zip(path, members, compress=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)


def test_a_plain_npy_file_is_named_as_such(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros(3))
    with pytest.raises(CorruptFileError, match=r"load_model: .*w.npy .*single .npy array"):
        train.load_model(models.lenet_300_100(), tmp_path / "w.npy")


def test_a_huge_declared_shape_is_refused_before_allocating(tmp_path):
    blob = npy_member({"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)}, b"\0" * 64)
    write_zip(tmp_path / "huge.npz", {"1.weight.npy": blob})
    with pytest.raises(CorruptFileError, match=r"huge.npz .*declares shape \(100000, 100000\)"):
        train.load_model(models.lenet_300_100(), tmp_path / "huge.npz")
    # a deflate bomb whose central directory claims 40 GB from a few KB
    blob = npy_member({"descr": "<f4", "fortran_order": False, "shape": (10**10,)}, b"")
    write_zip(tmp_path / "bomb.npz", {"a.npy": blob})
    with zipfile.ZipFile(tmp_path / "bomb.npz") as zf:
        info = zf.infolist()[0]
    raw = bytearray((tmp_path / "bomb.npz").read_bytes())
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = raw.find(sig)
        raw[pos + off:pos + off + 4] = (4 * 10**9 - 1).to_bytes(4, "little")
    (tmp_path / "bomb.npz").write_bytes(bytes(raw))
    assert info.file_size < 4 * 10**9
    with pytest.raises(CorruptFileError, match="bomb.npz"):
        read_npz("load_model", tmp_path / "bomb.npz")


def test_pickles_are_refused_and_never_run(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    arr = np.empty(1, dtype=object)
    arr[0] = Boom()
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=True)
    write_zip(tmp_path / "evil.npz", {"1.weight.npy": buf.getvalue()})
    with pytest.raises(CorruptFileError, match="Python objects") as info:
        train.load_model(models.lenet_300_100(), tmp_path / "evil.npz")
    assert "allow_pickle" not in str(info.value)
    assert not (tmp_path / "ran").exists()
    assert pickle  # the payload above is a real pickle


@pytest.mark.parametrize("content", [os.urandom(2048), b"\x93NUMPY\x01\x00garbage", b"PK\x05\x06" + b"\0" * 18])
def test_random_bytes_give_one_named_error_without_pickle_advice(tmp_path, content):
    (tmp_path / "r.npz").write_bytes(content)
    model, opt, _ = make_run()
    for call in (lambda: train.load_model(model, tmp_path / "r.npz"),
                 lambda: train.load_checkpoint(tmp_path / "r.npz", model, opt)):
        with pytest.raises((CorruptFileError, train.StateMismatchError), match="r.npz") as info:
            call()
        assert "allow_pickle" not in str(info.value)


def test_bad_checkpoint_json_names_the_file(tmp_path):
    model, opt, _ = make_run()
    arrays = dict(model.state_dict())
    np.savez(tmp_path / "c.npz", meta=np.array("{not json"), **{f"model/{k}": v for k, v in arrays.items()})
    with pytest.raises(CorruptFileError, match=r"c.npz has damaged metadata: not valid JSON"):
        train.load_checkpoint(tmp_path / "c.npz", model, opt)
    np.savez(tmp_path / "d.npz", meta=np.arange(3))
    with pytest.raises(CorruptFileError, match=r"d.npz has damaged metadata: expected a text entry"):
        train.load_checkpoint(tmp_path / "d.npz", model, opt)


def test_quant_load_npz_checks_shapes_and_changes_nothing_on_failure(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10))
    x, _ = small_data(32)
    q = quant.ptq(model, "int8", 8, 8, x.astype(np.float32) / 255)
    arrays = quant.export_npz(q, tmp_path / "q.npz")
    fresh = quant.prepare(nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10)), "int8", 8, 8)
    before = snapshot(fresh)
    key = next(k for k in arrays if k.endswith(".codes"))
    bad = dict(arrays, **{key: arrays[key][:, :3]})
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(CorruptFileError, match=rf"quant.load_npz: .*bad.npz: {key} must be numeric of shape"):
        quant.load_npz(tmp_path / "bad.npz", fresh)
    assert_same(fresh, before)
    quant.load_npz(tmp_path / "q.npz", fresh)


# ------------------------------------------------------------------ atomic writes
def test_writes_respect_the_umask_and_leave_no_temporaries(tmp_path):
    old = os.umask(0o022)
    try:
        train.save_model(models.lenet_300_100(), tmp_path / "m.npz")
        atomic_write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.npz").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "r.json"]
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}


def test_an_interrupted_write_keeps_the_old_file_and_stale_temporaries_are_cleaned(tmp_path):
    atomic_savez(tmp_path / "m.npz", {"a": np.arange(3)})

    def die(fh):
        fh.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "m.npz", die)
    np.testing.assert_array_equal(read_npz("t", tmp_path / "m.npz")["a"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
    dead = 2**22 + 12345                                   # above the default pid_max: never alive
    stale = tmp_path / f".m.npz.{dead}.0badc0de.tmp"
    foreign = tmp_path / "m.npz.tmp"                        # not ours: left alone
    stale.write_bytes(b"x")
    foreign.write_bytes(b"x")
    atomic_savez(tmp_path / "m.npz", {"a": np.arange(4)})
    assert not stale.exists() and foreign.exists()


def test_atomic_write_refuses_a_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        atomic_write_json(tmp_path, {})


# ------------------------------------------------------------------ smaller items
def test_fit_on_an_empty_loader_says_so():
    model, opt, _ = make_run()
    x, y = small_data(0)
    with pytest.raises(ValueError, match="fit: the loader yields no batch"):
        train.fit(model, data.DataLoader(x, y, batch_size=8), F.cross_entropy, opt, 1, verbose=False)


def test_gradcheck_uses_a_step_relative_to_x():
    for x0 in (1e6, -3e7, 1e-3, 0.0):
        assert gradcheck(lambda t: t * t, [np.array([x0, x0 / 2 + 1.0])], name="square")


def test_bundled_checksums_are_verified(monkeypatch):
    from tinyapprox.data import datasets

    root = datasets.bundled_data_dir()
    path = root / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    datasets._check_bundled(path)                          # the real file matches data/README.md
    readme = (root / "README.md").read_text()               # shipped with the data, so it must be there
    for name, digest in datasets.BUNDLED_SHA256["fashion-mnist"].items():
        assert digest in readme, name
    table = {"fashion-mnist": dict(datasets.BUNDLED_SHA256["fashion-mnist"])}
    table["fashion-mnist"][path.name] = "0" * 64
    monkeypatch.setattr(datasets, "BUNDLED_SHA256", table)
    with pytest.raises(datasets.ChecksumError, match="t10k-labels-idx1-ubyte.gz is damaged"):
        datasets._check_bundled(path)


# ------------------------------------------------------------------ validated formats and kernel handles
@pytest.mark.parametrize("bits", [0, -1, 17, 40, 64, True, 2.5, "5", None])
def test_kmeans_quant_bits_are_checked(bits):
    from tinyapprox.quant.compress import KMeansQuant

    with pytest.raises(ValueError, match=r"KMeansQuant: bits must be an int in \[1, 16\]"):
        KMeansQuant(bits)
    with pytest.raises(ValueError, match="KMeansQuant: bits"):
        KMeansQuant.from_state({"bits": np.array(40), "centroids": np.zeros(4)})


def test_kmeans_quant_sorts_centroids_from_the_constructor_and_from_a_file():
    from tinyapprox.quant.compress import KMeansQuant
    from tinyapprox.tensor import Tensor

    w = Tensor(np.array([0.9, -0.9, 0.0, 0.1, -0.1], dtype=np.float32))
    shuffled = np.array([0.9, -0.9, 0.1, -0.1])
    expected = np.array([0.9, -0.9, 0.0, 0.1, -0.1], dtype=np.float32)
    for t in (KMeansQuant(2, centroids=shuffled), KMeansQuant.from_state({"bits": np.array(2), "centroids": shuffled})):
        np.testing.assert_array_equal(t(w).data, expected)
        assert np.all(np.diff(t.centroids) >= 0)
    with pytest.raises(ValueError, match="expected 4 centroids for bits=2"):
        KMeansQuant(2, centroids=[0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        KMeansQuant(1, centroids=[0.1, np.nan])


def test_int8_weights_handles_are_read_only_and_backends_cannot_disagree():
    from tinyapprox import kernels

    rng = np.random.default_rng(0)
    B = rng.integers(-128, 128, (40, 24), dtype=np.int8)
    A = rng.integers(-128, 128, (5, 40), dtype=np.int8)
    w = kernels.prepare_int8(B)
    backends = ["numpy"] + (["c"] if kernels._ext.lib is not None else [])
    before = {b: kernels.gemm_int8(A, w, backend=b) for b in backends}
    for attr, value in (("B", B[:2].copy()), ("B", np.zeros_like(B)), ("K", 1), ("N", 1000), ("has_min", False)):
        with pytest.raises(AttributeError):
            setattr(w, attr, value)
    with pytest.raises(ValueError):
        w.B[0, 0] = 1
    with pytest.raises(ValueError):
        w.B.setflags(write=True)
    with pytest.raises(ValueError):
        w.B.view().setflags(write=True)
    B[...] = 0                                           # the caller's array: w keeps its own copy
    for b in backends:
        np.testing.assert_array_equal(kernels.gemm_int8(A, w, backend=b), before[b])
    np.testing.assert_array_equal(before["numpy"], A.astype(np.int32) @ w.B.astype(np.int32))
    if "c" in backends:
        np.testing.assert_array_equal(before["c"], before["numpy"])


# ------------------------------------------------------------------ IDX: bounded decompression
def test_an_idx_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    import gzip
    import time

    from tinyapprox.data import IDXError, read_idx

    header = bytes([0, 0, 0x08, 1]) + (10).to_bytes(4, "big")
    body = header + bytes(10) + bytes(200 * 2**20)          # 200 MiB of zeros after a 10-byte payload
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(body, compresslevel=9))
    assert path.stat().st_size < 1 << 20
    t0 = time.process_time()
    with pytest.raises(IDXError, match=r"bomb.gz .*longer than its header says"):
        read_idx(path)
    assert time.process_time() - t0 < 5          # only a bounded prefix was inflated (generous bound)
    big = bytes([0, 0, 0x08, 2]) + (10**5).to_bytes(4, "big") * 2     # declares 10 GB in a tiny file
    path.write_bytes(gzip.compress(big + bytes(100)))
    with pytest.raises(IDXError, match=r"bomb.gz .*can hold at most"):
        read_idx(path)
    path.write_bytes(big + bytes(100))
    with pytest.raises(IDXError, match=r"bomb.gz: header says shape \(100000, 100000\).*truncated"):
        read_idx(path)


@pytest.mark.parametrize("ndim", [65, 200, 255])
def test_idx_with_too_many_dimensions_is_refused_clearly(tmp_path, ndim):
    from tinyapprox.data import IDXError, read_idx

    path = tmp_path / "deep"
    path.write_bytes(bytes([0, 0, 0x08, ndim]) + (1).to_bytes(4, "big") * ndim + b"\0")
    with pytest.raises(IDXError, match=rf"deep: the header declares {ndim} dimensions; NumPy arrays have at most 64"):
        read_idx(path)


def test_idx_with_an_overflowing_shape_is_refused_clearly(tmp_path):
    from tinyapprox.data import IDXError, read_idx

    path = tmp_path / "wide"
    path.write_bytes(bytes([0, 0, 0x0E, 8]) + (2**32 - 1).to_bytes(4, "big") * 8 + bytes(16))
    with pytest.raises(IDXError, match=r"wide: header says shape \(4294967295,.*truncated"):
        read_idx(path)


# ------------------------------------------------------------------ the command line
BAD_COMMAND_LINES = [
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--seed", "4294967296"], "--seed"),
    (["train", "--epochs", "abc"], "--epochs"),
    (["train", "--epochs", "-2"], "--epochs"),
    (["train", "--lr", "-0.1"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--lr", "1e23"], "--lr"),
    (["train", "--momentum", "1.5"], "--momentum"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--model", "resnet"], "--model"),
    (["train", "--out", ""], "--out"),
    (["train", "--bogus"], "--bogus"),
    (["compress", "--target", "nan"], "--target"),
    (["compress", "--target", "0.5"], "--target"),
    (["compress", "--quant-bits", "0"], "--quant-bits"),
    (["compress", "--quant-bits", "33"], "--quant-bits"),
    (["compress", "--rounds", "0"], "--rounds"),
    (["compress", "--repeats", "0"], "--repeats"),
    (["quantize", "--bits", "1", "--scheme", "int8"], "--bits"),
    (["quantize", "--bits", "64"], "--bits"),
    (["quantize", "--exp-bits", "0", "--scheme", "minifloat"], "--exp-bits"),
    (["quantize", "--calib", "0"], "--calib"),
    (["quantize", "--scheme", "int3"], "--scheme"),
    (["binarize", "--quick", "--hidden", "abc"], "--hidden"),
    (["binarize", "--hidden", "128,0"], "--hidden"),
    (["binarize", "--gemm", "x"], "--gemm"),
    (["binarize", "--lr-start", "0"], "--lr-start"),
    (["hogwild", "--workers", "1"], "--workers"),
    (["hogwild", "--seeds", "1", "-5"], "--seeds"),
    (["hogwild", "--limit", "0"], "--limit"),
    (["bench", "kernels", "--threads", "0"], "--threads"),
    (["bench", "kernels", "--threads", "1,0"], "--threads"),
    (["bench", "kernels", "--threads", "1,x"], "--threads"),
    (["bench", "nothing"], "what"),
    (["nosuch"], "command"),
    ([], "command"),
    (["train", "--epochs", "99999999999999999999999"], "--epochs"),
    (["train", "--batch-size", "99999999999999999999999"], "--batch-size"),
    (["compress", "--target", "1e23"], "--target"),
    (["compress", "--rounds", "100000"], "--rounds"),
    (["compress", "--quant-bits", "-inf"], "-inf"),
    (["quantize", "--calib", "99999999999999999999999"], "--calib"),
    (["binarize", "--hidden", "99999999999999999999999"], "--hidden"),
    (["binarize", "--gemm", "99999999999999999999999"], "--gemm"),
    (["hogwild", "--workers", "100000"], "--workers"),
    (["bench", "kernels", "--threads", "99999999999999999999999"], "--threads"),
]


@pytest.mark.parametrize("argv, option", BAD_COMMAND_LINES, ids=[" ".join(a) or "(none)" for a, _ in BAD_COMMAND_LINES])
def test_bad_command_lines_get_one_line_naming_the_option(argv, option, capsys, tmp_path):
    from tinyapprox.experiments import cli

    try:
        status = cli.main(argv)
    except SystemExit as exc:
        status = exc.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2, captured
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert option in lines[0]
    assert captured.out == ""                      # refused before any work


def test_out_pointing_at_a_file_is_named(tmp_path, capsys):
    from tinyapprox.experiments import cli

    (tmp_path / "f").write_text("x")
    for argv in (["train", "--out", str(tmp_path / "f")], ["train", "--out", str(tmp_path / "f" / "sub")],
                 ["bench", "kernels", "--json", str(tmp_path)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(tmp_path) in err


def test_train_refuses_a_stale_checkpoint_in_one_line_unless_resume(tmp_path, capsys):
    from tinyapprox.experiments import cli

    out = str(tmp_path)
    assert cli.main(["train", "--quick", "--checkpoint", "--out", out]) == 0
    first = capsys.readouterr()
    assert "resumed" not in first.out
    from tinyapprox.experiments.harness import QUICK_EPOCHS

    more = str(QUICK_EPOCHS + 1)
    assert cli.main(["train", "--quick", "--checkpoint", "--lr", "0.01", "--epochs", more, "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint.npz" in err and "lr 0.1 -> 0.01" in err and "--resume" in err
    assert cli.main(["train", "--quick", "--checkpoint", "--seed", "3", "--out", out]) == 2
    assert "seed 0 -> 3" in capsys.readouterr().err
    assert cli.main(["train", "--quick", "--checkpoint", "--model", "lenet5", "--out", out]) == 2
    assert "model 'lenet-300-100' -> 'lenet5'" in capsys.readouterr().err
    assert cli.main(["train", "--quick", "--resume", "--epochs", more, "--out", out]) == 0
    resumed = capsys.readouterr().out
    assert ("resumed from" in resumed and f"{QUICK_EPOCHS} epoch(s) done" in resumed
            and f"epochs {QUICK_EPOCHS} -> {more}" in resumed)
    assert json.loads((tmp_path / "history.json").read_text())["epochs"][-1]["epoch"] == QUICK_EPOCHS + 1


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "tinyapprox.experiments.cli", "train", "--epochs", "50",
                             "--out", str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    banner = proc.stdout.readline()                 # printed once the command runs (after the imports)
    assert banner.startswith(b"training"), banner
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err.decode() and err.decode().strip().splitlines() == ["tinyapprox train: interrupted"]


def test_a_diverging_hogwild_run_says_so():
    from tinyapprox.optim import hogwild

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 64).astype(np.int64)
    with pytest.raises(FloatingPointError, match=r"train_hogwild: the weights became NaN or infinite .*lower the learning rate"):
        hogwild.train_hogwild(workers=1, epochs=1, lr=1e30, batch_size=16, train=(x, y), test=(x, y))
