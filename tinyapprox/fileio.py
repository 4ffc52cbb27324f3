"""Safe files: atomic writes and a checked ``.npz`` reader, used by every saver and loader.

* ``atomic_write(path, write)`` writes through a temporary file in the same directory,
  flushes it to disk (``fsync``), renames it over ``path`` (``os.replace``, atomic on POSIX
  and Windows) and flushes the directory entry. A reader therefore sees either the old file
  or the new one, never half of one, even after a crash or a SIGKILL. The file gets the
  usual permissions (``0o666`` minus the umask). Temporary files left by a process that was
  killed mid-write (``.<name>.<pid>.<hex>.tmp``, a pid no longer alive) are removed by the
  next write to the same path.
* ``read_npz(op, path)`` reads an ``.npz`` of named arrays without ever unpickling and
  without trusting the sizes the file declares: every member's header (shape and dtype) is
  checked against the member's stored size *before* any payload is allocated, so a 2 KB
  file claiming 10**10 values is refused at once. Every failure is a ``CorruptFileError``
  naming the operation and the file.
"""
from __future__ import annotations

import json
import os
import secrets
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["CorruptFileError", "atomic_write", "atomic_write_text", "atomic_write_json", "atomic_savez",
           "read_npz"]

_NPY_MAGIC = b"\x93NUMPY"
_DEFLATE_MAX_RATIO = 1100  # deflate cannot expand data by more than ~1032x


class CorruptFileError(ValueError):
    """A file is damaged or is not the kind of file expected; the message names the file."""


# ------------------------------------------------------------------ writing
def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete temporaries of ``path`` written by processes that no longer exist."""
    prefix = f".{path.name}."
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        parts = name[len(prefix):-len(".tmp")].split(".")
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) == os.getpid():
            continue
        if not _pid_alive(int(parts[0])):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write) -> Path:
    """Replace ``path`` with the bytes that ``write(fh)`` writes to a binary file object.

    The parent directory is created if needed. On any exception (including
    KeyboardInterrupt) the temporary file is removed and ``path`` is left as it was.
    Returns ``path`` as a ``Path``.
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise ValueError(f"atomic_write: expected a file path, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"atomic_write: {path} is a directory, expected a file path")
    _remove_stale_temps(path)
    tmp = _tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path, text: str) -> Path:
    """``atomic_write`` of a UTF-8 string."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path, obj, **kwargs) -> Path:
    """``atomic_write`` of ``json.dumps(obj, indent=2, **kwargs)`` (serialised before the file is opened)."""
    kwargs.setdefault("indent", 2)
    return atomic_write_text(path, json.dumps(obj, **kwargs))


def atomic_savez(path, arrays: dict, compressed: bool = False) -> Path:
    """``atomic_write`` of ``np.savez`` (or ``savez_compressed``) of the named ``arrays``."""
    save = np.savez_compressed if compressed else np.savez
    return atomic_write(path, lambda fh: save(fh, **arrays))


# ------------------------------------------------------------------ reading
def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One ``.npy`` member, its declared size checked before the payload is read."""
    if info.compress_type == zipfile.ZIP_DEFLATED:
        if info.file_size > _DEFLATE_MAX_RATIO * info.compress_size + 4096:
            raise ValueError(f"member {info.filename!r} declares {info.file_size} bytes from {info.compress_size} "
                             "compressed bytes, more than deflate can produce")
    elif info.compress_type == zipfile.ZIP_STORED:
        if info.file_size != info.compress_size:
            raise ValueError(f"member {info.filename!r} is stored but its sizes differ")
    else:
        raise ValueError(f"member {info.filename!r} uses compression method {info.compress_type}, "
                         "expected stored or deflated")
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"member {info.filename!r} has .npy format version {version}")
        if dtype.hasobject:
            raise ValueError(f"member {info.filename!r} holds Python objects (a pickle); refused")
        count = 1
        for d in shape:
            count *= int(d)
        nbytes = count * dtype.itemsize
        header_end = fh.tell()
        if header_end + nbytes != info.file_size:
            raise ValueError(f"member {info.filename!r} declares shape {shape} of {dtype} ({nbytes} bytes) but "
                             f"stores {info.file_size - header_end} bytes")
        payload = fh.read(nbytes)
    if len(payload) != nbytes:
        raise ValueError(f"member {info.filename!r} is truncated")
    arr = np.frombuffer(payload, dtype=dtype, count=count)
    arr = arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)
    return np.array(arr, copy=True)


def read_npz(op: str, path) -> dict:
    """Every array of the ``.npz`` at ``path`` as ``{name: ndarray}`` (fresh, writable copies).

    Raises:
        FileNotFoundError / IsADirectoryError / PermissionError: the file cannot be opened.
        CorruptFileError: anything else — not a zip, a single ``.npy`` array, an object
            (pickled) array, a member whose header disagrees with its stored size, a
            corrupt compressed stream — with ``"{op}: {path} is not a readable .npz of named
            arrays (no pickles): {reason}"``.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(len(_NPY_MAGIC))

    def fail(reason):
        return CorruptFileError(f"{op}: {path} is not a readable .npz of named arrays (no pickles): {reason}")

    if head == _NPY_MAGIC:
        raise fail("it holds a single .npy array, not named arrays (save with np.savez or save_model)")
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not a .npy array")
                out[info.filename[:-4]] = _read_member(zf, info)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError, RuntimeError,
            NotImplementedError, UnicodeDecodeError, SyntaxError, TypeError, KeyError) as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise fail(f"{type(exc).__name__}: {exc}") from None
    return out
