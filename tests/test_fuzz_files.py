"""Mutation fuzzing of the file formats the project reads: IDX (raw and gzip), model
``.npz`` files and training checkpoints.

Every mutated file must give either a clean load whose result is exactly what the bytes
say, or the project's named error (``IDXError``, ``CorruptFileError``,
``StateMismatchError``) naming the file — never another exception, a hang or a huge
allocation — and a failed load must leave the model and the optimizer untouched.
"""
import gzip
import io
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyapprox import data, models, nn, optim, train
from tinyapprox import functional as F
from tinyapprox.data import IDXError, read_idx, write_idx
from tinyapprox.fileio import CorruptFileError

EXAMPLES = settings(max_examples=150, deadline=None)


@st.composite
def mutations(draw, size):
    """A list of edits of a byte string of length ``size``: flips, overwrites, cuts, inserts."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "u32"]))
        pos = draw(st.integers(0, max(size - 1, 0)))
        if kind == "flip":
            edits.append((kind, pos, 1 << draw(st.integers(0, 7))))
        elif kind in ("set", "u32"):
            edits.append((kind, pos, draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 2**31 - 1, 2**32 - 1]))))
        elif kind == "insert":
            edits.append((kind, pos, draw(st.binary(min_size=1, max_size=16))))
        else:
            edits.append((kind, pos, draw(st.integers(1, 64))))
    return edits


def apply(blob: bytes, edits) -> bytes:
    b = bytearray(blob)
    for kind, pos, arg in edits:
        pos = min(pos, max(len(b) - 1, 0))
        if not b:
            break
        if kind == "flip":
            b[pos] ^= arg
        elif kind == "set":
            b[pos] = arg & 0xFF
        elif kind == "u32":
            b[pos:pos + 4] = (arg & 0xFFFFFFFF).to_bytes(4, "big")
        elif kind == "truncate":
            del b[max(len(b) - arg, 0):]
        elif kind == "insert":
            b[pos:pos] = arg
        else:
            del b[pos:pos + arg]
    return bytes(b)


# ------------------------------------------------------------------ IDX
def _idx_bytes(arr):
    buf = io.BytesIO()
    code = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("int16"): 0x0B, np.dtype("int32"): 0x0C,
            np.dtype("float32"): 0x0D, np.dtype("float64"): 0x0E}[arr.dtype]
    buf.write(bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape))
    buf.write(arr.astype(arr.dtype.newbyteorder(">")).tobytes())
    return buf.getvalue()


IDX_SOURCES = [np.arange(60, dtype=np.uint8).reshape(3, 4, 5), np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4),
               np.arange(-5, 5, dtype=np.int16)]


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("source", range(len(IDX_SOURCES)))
@EXAMPLES
@given(data=st.data())
def test_mutated_idx_files_load_exactly_or_fail_with_idx_error(tmp_path_factory, compressed, source, data):
    raw = _idx_bytes(IDX_SOURCES[source])
    path = tmp_path_factory.mktemp("idx") / "f.idx"
    if compressed:
        blob = gzip.compress(raw, mtime=0)
        mutated = apply(blob, data.draw(mutations(len(blob))))
    else:
        mutated = apply(raw, data.draw(mutations(len(raw))))
    path.write_bytes(mutated)
    try:
        arr = read_idx(path)
    except IDXError as exc:
        assert str(path) in str(exc)
        return
    out = path.with_name("back.idx")
    write_idx(out, arr)
    stored = out.read_bytes()
    if compressed:
        stored_source = _decompress_all(mutated)
        assert stored == stored_source
    else:
        assert stored == mutated


def _decompress_all(blob):
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(blob)
    while d.unused_data:                              # concatenated gzip members
        rest = d.unused_data
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += d.decompress(rest)
    return out


# ------------------------------------------------------------------ model .npz files
def _tiny():
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def _state_equal(model, snap):
    now = model.state_dict()
    return list(now) == list(snap) and all(np.array_equal(now[k], snap[k]) and now[k].dtype == snap[k].dtype
                                           for k in snap)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("npz") / "m.npz"
    train.save_model(_tiny(), path)
    return path.read_bytes()


@EXAMPLES
@given(data=st.data())
def test_mutated_model_files_load_or_fail_cleanly_leaving_the_model_untouched(tmp_path_factory, model_file, data):
    path = tmp_path_factory.mktemp("m") / "m.npz"
    path.write_bytes(apply(model_file, data.draw(mutations(len(model_file)))))
    target = _tiny()
    snap = {k: v.copy() for k, v in target.state_dict().items()}
    try:
        train.load_model(target, path)
    except (CorruptFileError, train.StateMismatchError) as exc:
        assert str(path) in str(exc) and "allow_pickle" not in str(exc)
        assert _state_equal(target, snap)
        return
    loaded = train.read_npz("check", path)
    for k, v in target.state_dict().items():
        np.testing.assert_array_equal(v, loaded[k].astype(v.dtype))


# ------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = rng.integers(0, 2, 32).astype(np.int64)
    model = _tiny()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path_factory.mktemp("ckpt") / "c.npz"
    train.fit(model, data.DataLoader(x, y, batch_size=8, seed=0), F.cross_entropy, opt, 1, verbose=False,
              checkpoint=path, scheduler=optim.StepLR(opt, 1, 0.5))
    return path.read_bytes()


@EXAMPLES
@given(data=st.data())
def test_mutated_checkpoints_load_or_fail_cleanly_leaving_everything_untouched(tmp_path_factory, checkpoint_file,
                                                                                data):
    path = tmp_path_factory.mktemp("c") / "c.npz"
    path.write_bytes(apply(checkpoint_file, data.draw(mutations(len(checkpoint_file)))))
    model = _tiny()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    sched = optim.StepLR(opt, 1, 0.5)
    snap = {k: v.copy() for k, v in model.state_dict().items()}
    try:
        train.load_checkpoint(path, model, opt, sched)
    except (CorruptFileError, train.StateMismatchError) as exc:
        assert str(path) in str(exc) and "allow_pickle" not in str(exc)
        ok = True
    else:
        ok = False
    if ok:
        assert _state_equal(model, snap)
        assert opt.lr == 0.01 and opt.momentum == 0.5 and opt.state == [{} for _ in opt.params]
        assert sched.last_epoch == 0 and sched.gamma == 0.5
    else:
        assert 0 <= opt.momentum < 1 and opt.lr >= 0 and opt.params == model.parameters()
