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

from ..fileio import CorruptFileError

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
_MAX_NDIM = 64           # NumPy's limit on dimensions
_DEFLATE_MAX_RATIO = 1100  # deflate expands data by at most ~1032x
_CHUNK = 1 << 20


class IDXError(CorruptFileError):
    """A file is not a valid IDX file (bad magic, unknown dtype, wrong length, broken gzip)."""


def _describe_codes():
    return ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in IDX_DTYPES.items())


def _read_exactly(stream, n):
    """Up to ``n`` bytes from ``stream`` (fewer only at the end of the stream)."""
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _drain(stream, limit):
    """(bytes left in ``stream``, counted up to ``limit`` + 1, whether the stream ended).

    Reading on to the end of a short tail lets a gzip stream's CRC and length be checked
    (so a damaged stream is reported as such); the limit keeps a bomb from being inflated.
    """
    extra = 0
    while extra <= limit:
        chunk = stream.read(min(_CHUNK, limit + 1 - extra))
        if not chunk:
            return extra, True
        extra += len(chunk)
    return extra, False


def _parse_header(where, stream):
    """(dtype, shape, header_len) from the start of ``stream``; IDXError if it is not an IDX header."""
    head = _read_exactly(stream, 4)
    if len(head) < 4:
        raise IDXError(f"{where}: expected at least a 4-byte IDX header, found only {len(head)} bytes")
    if head[0] != 0 or head[1] != 0:
        raise IDXError(f"{where}: expected the IDX magic to start with two zero bytes, "
                       f"found {head[0]:02x} {head[1]:02x}; this is not an IDX file")
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        raise IDXError(f"{where}: expected a dtype code in {{{_describe_codes()}}}, found 0x{code:02X}")
    if ndim == 0:
        raise IDXError(f"{where}: expected at least 1 dimension in the header, found ndim=0")
    if ndim > _MAX_NDIM:
        raise IDXError(f"{where}: the header declares {ndim} dimensions; NumPy arrays have at most {_MAX_NDIM}")
    header_len = 4 + 4 * ndim
    dims = _read_exactly(stream, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise IDXError(f"{where}: header declares {ndim} dimensions, so expected a header of "
                       f"{header_len} bytes, but the file has only {4 + len(dims)} bytes")
    shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
    return IDX_DTYPES[code], shape, header_len


def read_idx(path):
    """Read an IDX file (raw or gzip-compressed) into a NumPy array.

    The header is read first (from the decompressed stream for gzip), and then at most
    the payload it declares plus one byte: a gzip bomb, or a header that lies about the
    size, is refused after reading a few bytes, never after inflating the whole stream.
    A declared payload larger than the file could hold (for gzip: ~1032x its size, the
    limit of deflate) is refused before anything is allocated.

    Args:
        path: str or os.PathLike of the file. Gzip compression is detected from the
            first two bytes (``1f 8b``), whatever the file is called.

    Returns:
        np.ndarray with the shape given by the header and the native-endian version of
        the stored dtype (uint8, int8, int16, int32, float32 or float64). The array is a
        fresh, writable, C-contiguous copy.

    Raises:
        IDXError (a ValueError): bad magic bytes, unknown dtype code, ndim of 0 or more
            than 64, a header that is cut short, a payload shorter or longer than the header
            says (or than the file can hold), or a corrupt gzip stream. The message names
            the file, the expectation and what was found.
        OSError: the file cannot be opened (e.g. FileNotFoundError).
    """
    name = os.fspath(path)
    with open(path, "rb") as raw:
        file_size = os.fstat(raw.fileno()).st_size
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        where = f"read_idx: {name}" + (" (after gzip decompression)" if compressed else "")
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            dtype, shape, header_len = _parse_header(where, stream)
            count = 1
            for d in shape:
                count *= d
            expected = count * dtype.itemsize
            room = (_DEFLATE_MAX_RATIO * file_size + 4096) if compressed else file_size - header_len
            if expected > room:
                what = (f"a gzip file of {file_size} bytes can hold at most about {room} bytes" if compressed
                        else f"found {file_size - header_len} payload bytes; the file is truncated")
                raise IDXError(f"{where}: header says shape {shape} of {dtype.name} ({expected} payload bytes), "
                               f"but {what}")
            try:
                arr = np.empty(count, dtype=dtype)
            except (MemoryError, ValueError) as exc:
                raise IDXError(f"{where}: header says shape {shape} of {dtype.name} ({expected} payload bytes), "
                               f"which cannot be allocated here ({type(exc).__name__})") from None
            view = memoryview(arr.view(np.uint8))
            found = 0
            while found < expected:
                n = stream.readinto(view[found:found + _CHUNK])
                if not n:
                    break
                found += n
            extra, ended = 0, True
            if found == expected:
                extra, ended = (_drain(stream, max(expected, _CHUNK)) if compressed
                                else (file_size - header_len - expected, True))
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXError(
                f"read_idx: {name}: the file starts with the gzip magic bytes 1f 8b "
                f"but is not a valid gzip stream ({type(exc).__name__}: {exc}); "
                "the file is probably truncated or corrupt") from None
    if found != expected or extra:
        kind = "truncated" if found < expected else "longer than its header says"
        got = f"{found + extra}" if ended else f"more than {expected + extra}"
        raise IDXError(f"{where}: header says shape {shape} of {dtype.name} ({expected} payload bytes), "
                       f"found {got} payload bytes; the file is {kind}")
    arr = arr.reshape(shape)
    native = dtype.newbyteorder("=")
    return arr if native == dtype else arr.astype(native)


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
