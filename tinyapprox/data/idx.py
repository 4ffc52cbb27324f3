"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a small big-endian header followed by the array payload::

    bytes 0-1   0x00 0x00                 (magic, always zero)
    byte  2     dtype code                (see ``IDX_DTYPES``)
    byte  3     ndim                      (number of dimensions, 1..255)
    ndim x 4    each dimension, uint32 big-endian
    payload     prod(dims) items, big-endian, C order

Files may be gzip-compressed; ``read_idx`` recognises gzip by its magic bytes
``1f 8b``, not by the file name. Every size is checked: a file that is truncated, too long,
or has a header that does not describe its payload raises ``IDXError`` naming the file,
what was expected and what was found. A damaged file never yields a wrong array.
"""
import gzip
import os
import zlib

import numpy as np

__all__ = ["IDXError", "IDX_DTYPES", "read_idx", "write_idx"]

#: IDX dtype code -> NumPy dtype as stored in the file (big-endian where it matters).
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DIM = 2**32 - 1


class IDXError(ValueError):
    """A file is not a valid IDX file (bad magic, unknown dtype, wrong length, broken gzip)."""


def _describe_codes():
    return ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in IDX_DTYPES.items())


def _read_bytes(path):
    """Return the decompressed bytes of ``path`` (gzip detected by magic bytes)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw, False
    try:
        return gzip.decompress(raw), True
    except (OSError, EOFError, zlib.error) as exc:
        raise IDXError(
            f"read_idx: {os.fspath(path)!s}: the file starts with the gzip magic bytes 1f 8b "
            f"but is not a valid gzip stream ({type(exc).__name__}: {exc}); "
            "the file is probably truncated or corrupt") from None


def read_idx(path):
    """Read an IDX file (raw or gzip-compressed) into a NumPy array.

    Args:
        path: str or os.PathLike of the file. Gzip compression is detected from the
            first two bytes (``1f 8b``), whatever the file is called.

    Returns:
        np.ndarray with the shape given by the header and the native-endian version of
        the stored dtype (uint8, int8, int16, int32, float32 or float64). The array is a
        fresh, writable, C-contiguous copy.

    Raises:
        IDXError (a ValueError): bad magic bytes, unknown dtype code, ndim of 0, a header
            that is cut short, a payload shorter or longer than the header says, or a
            corrupt gzip stream. The message names the file, the expectation and what
            was found.
        OSError: the file cannot be opened (e.g. FileNotFoundError).
    """
    name = os.fspath(path)
    buf, compressed = _read_bytes(path)
    where = f"read_idx: {name}" + (" (after gzip decompression)" if compressed else "")
    if len(buf) < 4:
        raise IDXError(f"{where}: expected at least a 4-byte IDX header, found only {len(buf)} bytes")
    if buf[0] != 0 or buf[1] != 0:
        raise IDXError(f"{where}: expected the IDX magic to start with two zero bytes, "
                       f"found {buf[0]:02x} {buf[1]:02x}; this is not an IDX file")
    code, ndim = buf[2], buf[3]
    if code not in IDX_DTYPES:
        raise IDXError(f"{where}: expected a dtype code in {{{_describe_codes()}}}, found 0x{code:02X}")
    if ndim == 0:
        raise IDXError(f"{where}: expected at least 1 dimension in the header, found ndim=0")
    header_len = 4 + 4 * ndim
    if len(buf) < header_len:
        raise IDXError(f"{where}: header declares {ndim} dimensions, so expected a header of "
                       f"{header_len} bytes, but the file has only {len(buf)} bytes")
    shape = tuple(int.from_bytes(buf[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    count = 1
    for d in shape:
        count *= d
    expected = count * dtype.itemsize
    found = len(buf) - header_len
    if found != expected:
        kind = "truncated" if found < expected else "longer than its header says"
        raise IDXError(f"{where}: header says shape {shape} of {dtype.name} ({expected} payload bytes), "
                       f"found {found} payload bytes; the file is {kind}")
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=header_len).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path, array, compress=None):
    """Write ``array`` to ``path`` in IDX format.

    Args:
        path: str or os.PathLike of the output file (overwritten if present).
        array: array-like of dtype uint8, int8, int16, int32, float32 or float64 with
            1..255 dimensions, each < 2**32. Size-0 dimensions are allowed.
        compress: None writes the raw IDX bytes; ``"gzip"`` gzip-compresses them (with a
            zero timestamp, so the same array always gives the same bytes).

    Raises:
        TypeError: the dtype has no IDX code (e.g. int64, bool, uint16, float16); cast
            first, e.g. ``labels.astype(np.uint8)``.
        ValueError: a 0-d array, more than 255 dimensions, a dimension >= 2**32, or an
            unknown ``compress`` value.
    """
    arr = np.asarray(array)
    if compress not in (None, "gzip"):
        raise ValueError(f"write_idx: expected compress=None or 'gzip', got {compress!r}")
    code = _CODE_OF_KIND.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise TypeError(f"write_idx: expected dtype uint8, int8, int16, int32, float32 or float64, "
                        f"got {arr.dtype}; cast the array first (e.g. .astype(np.uint8))")
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"write_idx: expected an array with 1..255 dimensions, got ndim={arr.ndim}")
    if any(d > _MAX_DIM for d in arr.shape):
        raise ValueError(f"write_idx: every dimension must be < 2**32, got shape {arr.shape}")
    header = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    payload = np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    if compress == "gzip":
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(header)
            gz.write(payload)
    else:
        with open(path, "wb") as fh:
            fh.write(header)
            fh.write(payload)
