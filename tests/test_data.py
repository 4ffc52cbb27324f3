"""IDX reading/writing, the bundled Fashion-MNIST, dataset lookup and the DataLoader."""
import gzip
import hashlib
import pathlib
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinyapprox import data
from tinyapprox.data import IDXError, read_idx, write_idx

pytestmark = pytest.mark.training

REPO_DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


# ---------------------------------------------------------------- IDX round trip

@given(arr=st.sampled_from(IDX_DTYPES).flatmap(
           lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5))),
       compress=st.sampled_from([None, "gzip"]))
def test_idx_round_trip(tmp_path_factory, arr, compress):
    path = tmp_path_factory.mktemp("idx") / "a.idx"
    write_idx(path, arr, compress=compress)
    back = read_idx(path)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.dtype.isnative and back.flags.writeable
    assert back.tobytes() == arr.astype(back.dtype).tobytes()     # bit for bit, NaN and -0.0 included
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (compress == "gzip")


def test_idx_round_trip_non_contiguous_and_big_endian_input(tmp_path):
    arr = np.arange(24, dtype=">i4").reshape(4, 6)[:, ::2]
    write_idx(tmp_path / "a", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)


def test_idx_header_bytes_hand_written(tmp_path):
    # int16 (0x0B), 2 dims: 1 x 2, values 1 and -2 big-endian
    (tmp_path / "h").write_bytes(bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0x00, 0x01, 0xFF, 0xFE]))
    out = read_idx(tmp_path / "h")
    assert out.dtype == np.int16 and out.shape == (1, 2) and out.tolist() == [[1, -2]]
    write_idx(tmp_path / "w", out)
    assert (tmp_path / "w").read_bytes() == (tmp_path / "h").read_bytes()


def test_gzip_detected_by_magic_not_name(tmp_path):
    arr = np.arange(6, dtype=np.uint8)
    write_idx(tmp_path / "plain.gz", arr)                # raw bytes despite the suffix
    write_idx(tmp_path / "packed", arr, compress="gzip")  # gzip without the suffix
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "packed"), arr)


def test_write_idx_is_deterministic(tmp_path):
    arr = np.arange(100, dtype=np.float32)
    write_idx(tmp_path / "a", arr, compress="gzip")
    write_idx(tmp_path / "b", arr, compress="gzip")
    assert gzip.decompress((tmp_path / "a").read_bytes()) == gzip.decompress((tmp_path / "b").read_bytes())
    assert (tmp_path / "a").read_bytes()[4:8] == b"\0\0\0\0"          # zero mtime in the gzip header


@pytest.mark.parametrize("bad, err, match", [
    (np.zeros(3, np.int64), TypeError, "int64"),
    (np.zeros(3, bool), TypeError, "bool"),
    (np.zeros(3, np.float16), TypeError, "float16"),
    (np.float32(1.0), ValueError, "ndim=0"),
])
def test_write_idx_rejects(tmp_path, bad, err, match):
    with pytest.raises(err, match=match):
        write_idx(tmp_path / "x", bad)


def test_write_idx_rejects_unknown_compression(tmp_path):
    with pytest.raises(ValueError, match="compress"):
        write_idx(tmp_path / "x", np.zeros(2, np.uint8), compress="zip")


# ---------------------------------------------------------------- damaged files

def _good_bytes():
    # uint8, shape (2, 3), payload 0..5
    return bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))


@pytest.mark.parametrize("name, mutate, pattern", [
    ("bad magic", lambda b: b"\x01" + b[1:], r"two zero bytes.*found 01 00"),
    ("bad magic 2", lambda b: b[:1] + b"\x07" + b[2:], r"two zero bytes.*found 00 07"),
    ("bad dtype", lambda b: b[:2] + b"\x0A" + b[3:], r"dtype code.*found 0x0A"),
    ("ndim zero", lambda b: b[:3] + b"\x00" + b[4:], r"found ndim=0"),
    ("truncated payload", lambda b: b[:-1], r"shape \(2, 3\).*6 payload bytes.*found 5.*truncated"),
    ("extra bytes", lambda b: b + b"\x00", r"found 7 payload bytes.*longer than its header"),
    ("wrong dims", lambda b: b[:4] + bytes([0, 0, 0, 3]) + b[8:], r"shape \(3, 3\).*found 6"),
    ("cut header", lambda b: b[:9], r"header of 12 bytes.*only 9 bytes"),
    ("tiny file", lambda b: b[:2], r"4-byte IDX header.*only 2 bytes"),
    ("empty file", lambda b: b"", r"only 0 bytes"),
])
def test_corrupt_raw_files_raise(tmp_path, name, mutate, pattern):
    path = tmp_path / "bad-idx"
    path.write_bytes(mutate(_good_bytes()))
    with pytest.raises(IDXError, match=pattern) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    # the same damage inside a valid gzip stream is reported the same way
    gz = tmp_path / "bad-idx.gz"
    gz.write_bytes(gzip.compress(mutate(_good_bytes())))
    with pytest.raises(IDXError, match=pattern) as info:
        read_idx(gz)
    assert "after gzip decompression" in str(info.value)


@pytest.mark.parametrize("mutate", [
    lambda b: b[:len(b) // 2],                          # truncated stream
    lambda b: b[:-4],                                   # missing size trailer
    lambda b: b[:12] + bytes(x ^ 0xFF for x in b[12:20]) + b[20:],   # flipped deflate bytes
    lambda b: b[:-8] + b"\0\0\0\0" + b[-4:],            # wrong CRC
    lambda b: b + b"garbage",                           # trailing garbage
])
def test_corrupt_gzip_raises(tmp_path, mutate):
    path = tmp_path / "bad.gz"
    path.write_bytes(mutate(gzip.compress(_good_bytes() * 1 + bytes(200))))
    with pytest.raises(IDXError, match="not a valid gzip stream") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_good_bytes_fixture_is_valid(tmp_path):
    (tmp_path / "ok").write_bytes(_good_bytes())
    assert read_idx(tmp_path / "ok").tolist() == [[0, 1, 2], [3, 4, 5]]


def test_missing_file_is_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


# ---------------------------------------------------------------- bundled Fashion-MNIST

def _readme_sha256():
    text = (REPO_DATA / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"\| `([\w-]+\.gz)` \| [^|]+ \| `([0-9a-f]{64})` \| `([0-9a-f]{64})` \|", text)
    return {name: (gz_sha, raw_sha) for name, gz_sha, raw_sha in rows}


def test_bundled_files_match_readme_sha256():
    sums = _readme_sha256()
    assert sorted(sums) == sorted(f + ".gz" for f in data.FILE_NAMES.values())
    for name, (gz_sha, raw_sha) in sums.items():
        blob = (REPO_DATA / "fashion-mnist" / name).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == gz_sha, name
        assert hashlib.sha256(gzip.decompress(blob)).hexdigest() == raw_sha, name


def test_bundled_licence_present():
    text = (REPO_DATA / "fashion-mnist" / "LICENSE").read_text(encoding="utf-8")
    assert "Copyright (c) 2017 Zalando SE" in text and "Permission is hereby granted" in text


def test_load_fashion_mnist_shapes_and_histogram():
    (xtr, ytr), (xte, yte) = data.load("fashion-mnist")
    assert xtr.shape == (60000, 28, 28) and xtr.dtype == np.uint8
    assert xte.shape == (10000, 28, 28) and xte.dtype == np.uint8
    assert ytr.shape == (60000,) and ytr.dtype == np.int64 and yte.dtype == np.int64
    assert np.bincount(ytr).tolist() == [6000] * 10
    assert np.bincount(yte).tolist() == [1000] * 10
    assert xtr.max() == 255 and xtr.min() == 0
    assert len(data.CLASS_NAMES["fashion-mnist"]) == 10
    assert data.CLASS_NAMES["fashion-mnist"][9] == "Ankle boot"


def test_load_is_cached_and_read_only():
    a = data.load("fashion-mnist")
    b = data.load("fashion-mnist")
    assert a[0][0] is b[0][0]
    for arr in (a[0][0], a[0][1], a[1][0], a[1][1]):
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0] = 1


def test_load_limit():
    full = data.load("fashion-mnist")
    (xtr, ytr), (xte, yte) = data.load("fashion-mnist", limit=100)
    assert xtr.shape == (100, 28, 28) and yte.shape == (100,)
    np.testing.assert_array_equal(xte, full[1][0][:100])
    assert not xtr.flags.writeable
    assert data.load("fashion-mnist", limit=0)[0][0].shape == (0, 28, 28)
    assert data.load("fashion-mnist", limit=10**9)[1][0].shape == (10000, 28, 28)
    with pytest.raises(ValueError, match="limit >= 0"):
        data.load("fashion-mnist", limit=-1)
    with pytest.raises(TypeError, match="limit"):
        data.load("fashion-mnist", limit=2.5)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        data.load("cifar")


# ---------------------------------------------------------------- user-supplied datasets

def _write_fake(directory, n_train=7, n_test=3, compress="gzip", classes=10, seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, classes, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, classes, n_test, dtype=np.uint8),
    }
    for part, arr in arrays.items():
        name = data.FILE_NAMES[part] + (".gz" if compress else "")
        write_idx(directory / name, arr, compress=compress)
    return arrays


@pytest.mark.parametrize("compress", [None, "gzip"])
def test_mnist_from_path(tmp_path, compress):
    arrays = _write_fake(tmp_path / "m", compress=compress)
    (xtr, ytr), (xte, yte) = data.load("mnist", path=tmp_path / "m")
    np.testing.assert_array_equal(xtr, arrays["train_images"])
    np.testing.assert_array_equal(yte, arrays["test_labels"])
    assert ytr.dtype == np.int64 and not xtr.flags.writeable
    # path may also be the parent of a <name>/ directory
    _write_fake(tmp_path / "root" / "mnist", compress=compress)
    assert data.load("mnist", path=tmp_path / "root")[0][0].shape == (7, 28, 28)


def test_mnist_from_env(tmp_path, monkeypatch):
    _write_fake(tmp_path / "mnist", n_train=5)
    monkeypatch.setenv("TINYAPPROX_DATA", str(tmp_path))
    assert data.load("mnist")[0][0].shape == (5, 28, 28)
    # no fashion-mnist/ under $TINYAPPROX_DATA: the bundled copy is still found
    assert data.data_dir("fashion-mnist").name == "fashion-mnist"
    assert data.data_dir("fashion-mnist").parent != tmp_path


def test_env_overrides_bundled(tmp_path, monkeypatch):
    _write_fake(tmp_path / "fashion-mnist", n_train=4, n_test=2)
    monkeypatch.setenv("TINYAPPROX_DATA", str(tmp_path))
    (xtr, _), (xte, _) = data.load("fashion-mnist")
    assert xtr.shape == (4, 28, 28) and xte.shape == (2, 28, 28)


def test_incomplete_env_dir_is_an_error(tmp_path, monkeypatch):
    _write_fake(tmp_path / "fashion-mnist")
    (tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("TINYAPPROX_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.load("fashion-mnist")


def test_mnist_missing_says_where(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYAPPROX_DATA", raising=False)
    with pytest.raises(FileNotFoundError) as info:
        data.load("mnist")
    msg = str(info.value)
    for stem in data.FILE_NAMES.values():
        assert stem in msg
    assert "not bundled" in msg and "TINYAPPROX_DATA" in msg and "path=" in msg
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        data.load("mnist", path=tmp_path)


def test_cache_sees_rewritten_files(tmp_path):
    _write_fake(tmp_path, n_train=3, seed=1)
    first = data.load("mnist", path=tmp_path)[0][1].copy()
    _write_fake(tmp_path, n_train=4, seed=2)
    assert data.load("mnist", path=tmp_path)[0][1].shape == (4,)
    assert first.shape == (3,)


@pytest.mark.parametrize("problem, pattern", [
    ("label_range", r"labels in \[0, 9\]"),
    ("count", r"holds 6 labels but .* holds 7 images"),
    ("image_shape", r"shape \(N, 28, 28\)"),
])
def test_inconsistent_dataset_files(tmp_path, problem, pattern):
    _write_fake(tmp_path)
    if problem == "label_range":
        write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(7, 10, np.uint8), compress="gzip")
    elif problem == "count":
        write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(6, np.uint8), compress="gzip")
    else:
        write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((7, 27, 28), np.uint8), compress="gzip")
    with pytest.raises(ValueError, match=pattern):
        data.load("mnist", path=tmp_path)


# ---------------------------------------------------------------- DataLoader

def _toy(n=10, h=2, w=3):
    images = np.arange(n * h * w, dtype=np.uint8).reshape(n, h, w)
    labels = np.arange(n) % 3
    return images, labels


def test_loader_batches_in_order():
    images, labels = _toy()
    loader = data.DataLoader(images, labels, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert [x.shape for x, _ in batches] == [(4, 1, 2, 3), (4, 1, 2, 3), (2, 1, 2, 3)]
    x, y = batches[0]
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x[1, 0], images[1] / 255.0, rtol=1e-6)
    assert np.concatenate([y for _, y in batches]).tolist() == labels.tolist()


def test_loader_drop_last_flatten_no_scale():
    images, labels = _toy()
    loader = data.DataLoader(images, labels, batch_size=4, drop_last=True, flatten=True, scale=False)
    batches = list(loader)
    assert len(loader) == 2 and [x.shape for x, _ in batches] == [(4, 6), (4, 6)]
    np.testing.assert_array_equal(batches[1][0][0], images[4].reshape(-1).astype(np.float32))


def test_loader_nchw_and_float_input():
    x4 = np.ones((5, 2, 3, 3), np.float64) * 7
    (x, _), = list(data.DataLoader(x4, np.zeros(5, np.int32), batch_size=5))
    assert x.shape == (5, 2, 3, 3) and x.dtype == np.float32 and x.max() == 7   # floats are not scaled
    (x, _), = list(data.DataLoader(x4, np.zeros(5, np.int32), batch_size=8, flatten=True))
    assert x.shape == (5, 18)


def test_loader_float_targets():
    (_, y), = list(data.DataLoader(np.zeros((3, 4)), np.array([0.5, 1.0, 0.0]), batch_size=3))
    assert y.dtype == np.float32


def _orders(loader):
    return np.concatenate([y for _, y in loader]).tolist()


def test_loader_shuffle_reproducible_and_epoch_dependent():
    n = 50
    images = np.zeros((n, 2, 2), np.uint8)
    labels = np.arange(n)
    a = data.DataLoader(images, labels, batch_size=7, shuffle=True, seed=3)
    b = data.DataLoader(images, labels, batch_size=7, shuffle=True, seed=3)
    a0, a1 = _orders(a), _orders(a)
    assert a.epoch == 2
    assert a0 == _orders(b) and a1 == _orders(b)
    assert a0 != a1 and sorted(a0) == list(range(n))
    assert a0 == np.random.default_rng((3, 0)).permutation(n).tolist()
    c = data.DataLoader(images, labels, batch_size=7, shuffle=True, seed=4)
    assert _orders(c) != a0


def test_loader_resume_with_set_epoch():
    images, labels = np.zeros((20, 1, 1), np.uint8), np.arange(20)
    run = data.DataLoader(images, labels, batch_size=6, shuffle=True, seed=11)
    orders = [_orders(run) for _ in range(4)]
    resumed = data.DataLoader(images, labels, batch_size=6, shuffle=True, seed=11)
    resumed.set_epoch(2)
    assert _orders(resumed) == orders[2] and _orders(resumed) == orders[3]


def test_loader_early_break_does_not_advance_epoch():
    loader = data.DataLoader(np.zeros((10, 1, 1)), np.arange(10), batch_size=2, shuffle=True, seed=0)
    for _ in loader:
        break
    assert loader.epoch == 0


def test_loader_seed_none_is_recorded():
    loader = data.DataLoader(np.zeros((9, 1, 1)), np.arange(9), shuffle=True)
    again = data.DataLoader(np.zeros((9, 1, 1)), np.arange(9), shuffle=True, seed=loader.seed)
    assert _orders(loader) == _orders(again)


def test_loader_empty_dataset():
    loader = data.DataLoader(np.zeros((0, 2, 2), np.uint8), np.zeros(0, np.int64), batch_size=3)
    assert len(loader) == 0 and list(loader) == [] and loader.epoch == 1


@given(n=st.integers(0, 40), bs=st.integers(1, 12), drop_last=st.booleans(), seed=st.integers(0, 2**32))
def test_loader_covers_each_example_once(n, bs, drop_last, seed):
    loader = data.DataLoader(np.zeros((n, 1, 1), np.uint8), np.arange(n), batch_size=bs,
                             shuffle=True, seed=seed, drop_last=drop_last)
    seen = [y for _, y in loader]
    assert len(seen) == len(loader)
    flat = np.concatenate(seen).tolist() if seen else []
    assert len(set(flat)) == len(flat)
    assert len(flat) == (n // bs * bs if drop_last else n)
    assert all(len(y) == bs for y in seen[:-1])


def test_loader_on_bundled_data():
    (xtr, ytr), _ = data.load("fashion-mnist", limit=256)
    x, y = next(iter(data.DataLoader(xtr, ytr, batch_size=64, shuffle=True, seed=0)))
    assert x.shape == (64, 1, 28, 28) and 0.0 <= x.min() and x.max() <= 1.0 and y.shape == (64,)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(images=np.zeros((3, 2, 2)), labels=np.zeros(4)), ValueError, "first dimension N=3"),
    (dict(images=np.zeros(3), labels=np.zeros(3)), ValueError, "shape"),
    (dict(images=np.zeros((3, 1, 1, 1, 1)), labels=np.zeros(3)), ValueError, "shape"),
    (dict(images=np.array([["a"]]), labels=np.zeros(1)), TypeError, "numeric images"),
    (dict(images=np.zeros((3, 2)), labels=np.zeros(3), batch_size=0), ValueError, "batch_size >= 1"),
    (dict(images=np.zeros((3, 2)), labels=np.zeros(3), batch_size=2.0), TypeError, "batch_size"),
    (dict(images=np.zeros((3, 2)), labels=np.zeros(3), seed=-1), ValueError, "seed >= 0"),
])
def test_loader_rejects_bad_input(kwargs, err, match):
    with pytest.raises(err, match=match):
        data.DataLoader(**kwargs)


def test_loader_set_epoch_validates():
    loader = data.DataLoader(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="epoch >= 0"):
        loader.set_epoch(-1)


@given(hnp.arrays(np.uint8, st.tuples(st.integers(0, 4), st.integers(1, 5), st.integers(1, 5))))
def test_images_to_float_is_the_one_scaling(images):
    x = data.images_to_float(images)
    assert x.dtype == np.float32 and x.shape == (len(images), 1) + images.shape[1:]
    assert x.min(initial=0) >= 0 and x.max(initial=1) <= 1
    np.testing.assert_array_equal(np.rint(x[:, 0] * 255).astype(np.uint8), images)
    if len(images):
        batch, _ = next(iter(data.DataLoader(images, np.zeros(len(images), np.int64), batch_size=len(images))))
        np.testing.assert_array_equal(batch, x)


def test_images_to_float_passes_floats_and_refuses_non_numbers():
    f = np.array([[0.5, 3.0]], np.float64)
    out = data.images_to_float(f)
    assert out.dtype == np.float32 and out.tolist() == [[0.5, 3.0]]        # already scaled: not divided again
    assert data.images_to_float(np.zeros((2, 3, 4, 4), np.uint8)).shape == (2, 3, 4, 4)
    with pytest.raises(TypeError, match="images_to_float: expected numeric images, got dtype <U1"):
        data.images_to_float(np.array([["a"]]))
