"""Four sparse-matrix formats: COO, LIL, DOK and CSR.

Each stores a 2-D float32 matrix of ``shape`` (M, K) by its non-zero entries only, and
each answers the same questions: ``from_dense``, ``to_dense``, ``to_coo`` / ``to_lil`` /
``to_dok`` / ``to_csr``, ``nnz`` (stored entries), ``nbytes`` (the true storage: values
*and* indices), ``density`` and a product ``A @ X`` with a dense (K,) vector or (K, N)
matrix, returning float32 (M,) or (M, N).

* **COO** (coordinate): three parallel arrays ``row``, ``col``, ``data``. Easy to build.
* **LIL** (list of lists): per row, a sorted list of columns and one of values. Easy to
  edit row by row.
* **DOK** (dictionary of keys): ``{(i, j): value}``. Random access and update.
* **CSR** (compressed sparse row): ``indptr`` (M+1), ``indices``, ``data``; row ``i``'s
  entries are ``indptr[i]:indptr[i+1]``. The format arithmetic wants: its product runs on
  the C kernel ``kernels.csr_matmul``.

Storage conventions (what ``nbytes`` counts):
    values are float32 (4 bytes); row and column indices are int32 (4 bytes), which is
    enough for any dimension below 2**31 (larger shapes are refused); CSR's ``indptr`` is
    int64 (8 bytes per row + 8), because that is the layout the C kernel takes without a
    copy. LIL is counted as its packed equivalent (4 + 4 bytes per entry plus an int64
    row length per row) and DOK as two int32 keys and a float32 value per entry. The
    Python object overhead of lists and dicts is *not* counted: ``nbytes`` is the size of
    the format, not of this teaching implementation.

Explicit zeros: ``from_dense`` stores only entries that are != 0. Entries given directly
to a constructor are stored as given, zeros included (``nnz`` counts stored entries).
Every way in refuses NaN and inf values (ValueError) and non-real ones (TypeError).

Duplicates in COO: summed by default (``duplicates="sum"``, the usual convention when
assembling a matrix from pieces) or refused with ``duplicates="error"``. After
construction every format holds each (row, column) at most once, sorted by row then
column.
"""
from __future__ import annotations

import numpy as np

from .. import kernels

__all__ = ["SparseMatrix", "COO", "LIL", "DOK", "CSR", "INDEX_DTYPE", "INDPTR_DTYPE", "VALUE_DTYPE"]

VALUE_DTYPE = np.dtype(np.float32)
INDEX_DTYPE = np.dtype(np.int32)
INDPTR_DTYPE = np.dtype(np.int64)
_MAX_DIM = np.iinfo(np.int32).max


def _check_shape(op: str, shape) -> tuple:
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{op}: expected shape to be a pair of ints, got {shape!r}") from None
    if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"{op}: expected shape to be a pair of ints, got {shape!r}")
    if any(s < 0 or s > _MAX_DIM for s in shape):
        raise ValueError(f"{op}: expected each dimension in [0, {_MAX_DIM}] (int32 indices), got {shape}")
    return int(shape[0]), int(shape[1])


def _check_dense(op: str, dense) -> np.ndarray:
    arr = np.asarray(dense)
    if arr.ndim != 2:
        raise ValueError(f"{op}: expected a 2-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{op}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{op}: expected finite values, got NaN or inf")
    _check_shape(op, arr.shape)
    return arr.astype(VALUE_DTYPE, copy=False)


def _check_indices(op: str, name: str, idx, bound: int) -> np.ndarray:
    arr = np.asarray(idx)
    if arr.ndim != 1:
        raise ValueError(f"{op}: expected {name} to be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{op}: expected integer {name}, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= bound):
        bad = arr[(arr < 0) | (arr >= bound)][0]
        raise ValueError(f"{op}: {name} out of range: expected values in [0, {bound}), got {bad}")
    return arr.astype(INDEX_DTYPE)


def _check_values(op: str, data, n: int) -> np.ndarray:
    """Validate the stored values of a format: real, finite, shape (n,); return float32 (n,)."""
    arr = np.asarray(data)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{op}: expected data of shape ({n},) (one value per index), got {arr.shape}")
    if arr.size and arr.dtype.kind not in "biuf":
        raise TypeError(f"{op}: expected real data, got dtype {arr.dtype}")
    if arr.size and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{op}: expected finite data, got NaN or inf")
    return arr.astype(VALUE_DTYPE)


def _check_operand(op: str, shape: tuple, x) -> np.ndarray:
    if hasattr(x, "data") and not isinstance(x, np.ndarray) and isinstance(getattr(x, "data"), np.ndarray):
        x = x.data
    arr = np.asarray(x)
    if arr.ndim not in (1, 2) or arr.shape[0] != shape[1]:
        raise ValueError(f"{op}: a sparse matrix of shape {shape} needs a dense operand of shape "
                         f"({shape[1]},) or ({shape[1]}, N), got {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{op}: expected a real numeric operand, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=VALUE_DTYPE)


class SparseMatrix:
    """Common interface of the four formats (see the module docstring)."""

    shape: tuple

    @classmethod
    def from_dense(cls, dense):
        """Build from a 2-D array, storing the entries that are != 0.

        Raises: ValueError for a non-2-D or non-finite array; TypeError for a non-numeric one.
        """
        return cls._from_coo(COO.from_dense(dense))

    @classmethod
    def _from_coo(cls, coo: "COO"):
        raise NotImplementedError

    def to_coo(self) -> "COO":
        raise NotImplementedError

    def to_dense(self) -> np.ndarray:
        """The (M, K) float32 array."""
        return self.to_coo().to_dense()

    def to_csr(self) -> "CSR":
        return CSR._from_coo(self.to_coo())

    def to_lil(self) -> "LIL":
        return LIL._from_coo(self.to_coo())

    def to_dok(self) -> "DOK":
        return DOK._from_coo(self.to_coo())

    @property
    def nnz(self) -> int:
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        raise NotImplementedError

    @property
    def density(self) -> float:
        """nnz / (M*K); 0.0 for an empty shape."""
        size = self.shape[0] * self.shape[1]
        return self.nnz / size if size else 0.0

    @property
    def sparsity(self) -> float:
        """1 - density."""
        return 1.0 - self.density if self.shape[0] * self.shape[1] else 0.0

    def matmul(self, x) -> np.ndarray:
        """A @ x for x dense (K,) -> (M,) or (K, N) -> (M, N), float32 (reference loop)."""
        raise NotImplementedError

    def __matmul__(self, x):
        if isinstance(x, SparseMatrix):
            return NotImplemented
        return self.matmul(x)

    def __repr__(self):
        return (f"{type(self).__name__}(shape={self.shape}, nnz={self.nnz}, "
                f"density={self.density:.3f}, nbytes={self.nbytes})")


class COO(SparseMatrix):
    """Coordinate format: ``row``, ``col`` (int32, nnz) and ``data`` (float32, nnz).

    Args:
        row, col: integer sequences of equal length, ``0 <= row < M``, ``0 <= col < K``.
        data: real values, same length.
        shape: (M, K).
        duplicates: "sum" adds the values of repeated (row, col) pairs; "error" raises.

    Raises:
        ValueError: lengths differ, an index is out of range, a NaN/inf value, duplicates
            with "error".
        TypeError: non-integer indices, non-real data, a malformed shape.
    """

    def __init__(self, row, col, data, shape, duplicates: str = "sum"):
        op = "COO"
        self.shape = _check_shape(op, shape)
        if duplicates not in ("sum", "error"):
            raise ValueError(f"{op}: expected duplicates='sum' or 'error', got {duplicates!r}")
        row = _check_indices(op, "row", row, self.shape[0])
        col = _check_indices(op, "col", col, self.shape[1])
        if len(row) != len(col):
            raise ValueError(f"{op}: row and col must have equal lengths, got {len(row)} and {len(col)}")
        data = _check_values(op, data, len(row))
        order = np.lexsort((col, row))
        row, col, data = row[order], col[order], data[order]
        if len(row) > 1:
            first = np.ones(len(row), dtype=bool)
            first[1:] = (row[1:] != row[:-1]) | (col[1:] != col[:-1])
            if not first.all():
                if duplicates == "error":
                    i = int(np.flatnonzero(~first)[0])
                    raise ValueError(f"{op}: duplicate entry at ({row[i]}, {col[i]}) with duplicates='error'")
                starts = np.flatnonzero(first)
                data = np.add.reduceat(data, starts).astype(VALUE_DTYPE)
                row, col = row[starts], col[starts]
        self.row, self.col, self.data = row, col, data

    @classmethod
    def from_dense(cls, dense) -> "COO":
        arr = _check_dense("COO.from_dense", dense)
        r, c = np.nonzero(arr)
        return cls(r, c, arr[r, c], arr.shape)

    @classmethod
    def _from_coo(cls, coo):
        return coo

    def to_coo(self) -> "COO":
        return self

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=VALUE_DTYPE)
        out[self.row, self.col] = self.data
        return out

    @property
    def nnz(self) -> int:
        return int(self.data.size)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.row.nbytes + self.col.nbytes)

    def transpose(self) -> "COO":
        return COO(self.col, self.row, self.data, self.shape[::-1])

    T = property(transpose)

    def matmul(self, x) -> np.ndarray:
        """Scatter-add reference: out[row[p]] += data[p] * x[col[p]]."""
        x = _check_operand("COO.matmul", self.shape, x)
        out = np.zeros((self.shape[0],) + x.shape[1:], dtype=VALUE_DTYPE)
        contrib = self.data.reshape((-1,) + (1,) * (x.ndim - 1)) * x[self.col]
        np.add.at(out, self.row, contrib)
        return out


class _Editable(SparseMatrix):
    """Shared index checking of the two formats that support ``A[i, j]`` and ``A[i, j] = v``."""

    def _check_key(self, key):
        if not (isinstance(key, tuple) and len(key) == 2):
            raise TypeError(f"{type(self).__name__}: expected an index pair (i, j), got {key!r}")
        i, j = key
        for v, n, what in ((i, self.shape[0], "row"), (j, self.shape[1], "column")):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{type(self).__name__}: expected an integer {what} index, got {v!r}")
            if not 0 <= v < n:
                raise IndexError(f"{type(self).__name__}: {what} index {v} out of range [0, {n})")
        return int(i), int(j)


class LIL(_Editable):
    """List of lists: ``rows[i]`` sorted column indices and ``values[i]`` their values.

    Build with ``from_dense``, ``LIL(shape)`` (all zeros) then ``A[i, j] = v``, or a
    conversion. Setting an entry to 0 removes it.
    """

    def __init__(self, shape):
        self.shape = _check_shape("LIL", shape)
        self.rows = [[] for _ in range(self.shape[0])]
        self.values = [[] for _ in range(self.shape[0])]

    @classmethod
    def _from_coo(cls, coo: COO) -> "LIL":
        out = cls(coo.shape)
        for r, c, v in zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist()):
            out.rows[r].append(c)
            out.values[r].append(v)
        return out

    def __getitem__(self, key) -> float:
        i, j = self._check_key(key)
        cols = self.rows[i]
        if j in cols:
            return self.values[i][cols.index(j)]
        return 0.0

    def __setitem__(self, key, value):
        i, j = self._check_key(key)
        value = float(np.float32(value))
        cols, vals = self.rows[i], self.values[i]
        pos = int(np.searchsorted(cols, j)) if cols else 0
        present = pos < len(cols) and cols[pos] == j
        if value == 0.0:
            if present:
                del cols[pos], vals[pos]
        elif present:
            vals[pos] = value
        else:
            cols.insert(pos, j)
            vals.insert(pos, value)

    def to_coo(self) -> COO:
        row = [i for i, cols in enumerate(self.rows) for _ in cols]
        col = [c for cols in self.rows for c in cols]
        val = [v for vals in self.values for v in vals]
        return COO(np.array(row, dtype=np.int64), np.array(col, dtype=np.int64),
                   np.array(val, dtype=VALUE_DTYPE), self.shape)

    @property
    def nnz(self) -> int:
        return sum(len(c) for c in self.rows)

    @property
    def nbytes(self) -> int:
        return self.nnz * (VALUE_DTYPE.itemsize + INDEX_DTYPE.itemsize) + self.shape[0] * INDPTR_DTYPE.itemsize

    def matmul(self, x) -> np.ndarray:
        """Row-by-row reference: out[i] = values[i] @ x[rows[i]]."""
        x = _check_operand("LIL.matmul", self.shape, x)
        out = np.zeros((self.shape[0],) + x.shape[1:], dtype=VALUE_DTYPE)
        for i, (cols, vals) in enumerate(zip(self.rows, self.values)):
            if cols:
                out[i] = np.asarray(vals, dtype=VALUE_DTYPE) @ x[cols]
        return out


class DOK(_Editable):
    """Dictionary of keys: ``entries[(i, j)] = value`` for each stored entry."""

    def __init__(self, shape):
        self.shape = _check_shape("DOK", shape)
        self.entries = {}

    @classmethod
    def _from_coo(cls, coo: COO) -> "DOK":
        out = cls(coo.shape)
        out.entries = {(r, c): v for r, c, v in zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist())}
        return out

    def __getitem__(self, key) -> float:
        return self.entries.get(self._check_key(key), 0.0)

    def __setitem__(self, key, value):
        key = self._check_key(key)
        value = float(np.float32(value))
        if value == 0.0:
            self.entries.pop(key, None)
        else:
            self.entries[key] = value

    def to_coo(self) -> COO:
        keys = list(self.entries)
        row = np.array([k[0] for k in keys], dtype=np.int64)
        col = np.array([k[1] for k in keys], dtype=np.int64)
        return COO(row, col, np.array(list(self.entries.values()), dtype=VALUE_DTYPE), self.shape)

    @property
    def nnz(self) -> int:
        return len(self.entries)

    @property
    def nbytes(self) -> int:
        return self.nnz * (VALUE_DTYPE.itemsize + 2 * INDEX_DTYPE.itemsize)

    def matmul(self, x) -> np.ndarray:
        """Entry-by-entry reference: out[i] += v * x[j] for each (i, j) -> v."""
        x = _check_operand("DOK.matmul", self.shape, x)
        out = np.zeros((self.shape[0],) + x.shape[1:], dtype=VALUE_DTYPE)
        for (i, j), v in self.entries.items():
            out[i] += np.float32(v) * x[j]
        return out


class CSR(SparseMatrix):
    """Compressed sparse row: ``indptr`` int64 (M+1,), ``indices`` int32 (nnz,), ``data`` float32 (nnz,).

    Row ``i`` holds columns ``indices[indptr[i]:indptr[i+1]]`` (sorted, unique after
    validation) with values ``data[indptr[i]:indptr[i+1]]``.

    Raises:
        ValueError: indptr of the wrong length, not starting at 0, decreasing or not
            ending at nnz; a column index out of range; duplicate or unsorted columns
            in a row; arrays of the wrong rank; a NaN/inf value.
        TypeError: non-integer indptr or indices, non-real data, a malformed shape.
    """

    def __init__(self, indptr, indices, data, shape):
        op = "CSR"
        self.shape = _check_shape(op, shape)
        m, k = self.shape
        indptr = np.asarray(indptr)
        if indptr.ndim != 1 or len(indptr) != m + 1:
            raise ValueError(f"{op}: expected indptr of shape ({m + 1},), got {indptr.shape}")
        if indptr.dtype.kind not in "iu":
            raise TypeError(f"{op}: expected integer indptr, got dtype {indptr.dtype}")
        indices = _check_indices(op, "indices", indices, k)
        data = _check_values(op, data, len(indices))
        if indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
            raise ValueError(f"{op}: indptr must start at 0, never decrease and end at nnz={len(indices)}, "
                             f"got start {indptr[0]}, end {indptr[-1]}")
        if len(indices) > 1:
            row_of = _entry_rows(indptr)
            same_row = row_of[1:] == row_of[:-1]
            if np.any(same_row & (indices[1:] <= indices[:-1])):
                raise ValueError(f"{op}: column indices within a row must be strictly increasing "
                                 "(sorted, no duplicates); build through COO to sum duplicates")
        self.indptr = np.ascontiguousarray(indptr, dtype=INDPTR_DTYPE)
        self.indices = np.ascontiguousarray(indices, dtype=INDEX_DTYPE)
        self.data = np.ascontiguousarray(data, dtype=VALUE_DTYPE)

    @classmethod
    def _from_coo(cls, coo: COO) -> "CSR":
        counts = np.bincount(coo.row, minlength=coo.shape[0])
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(INDPTR_DTYPE)
        return cls(indptr, coo.col, coo.data, coo.shape)

    def to_coo(self) -> COO:
        return COO(_entry_rows(self.indptr), self.indices, self.data, self.shape)

    def to_csr(self) -> "CSR":
        return self

    @property
    def nnz(self) -> int:
        return int(self.data.size)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.indices.nbytes + self.indptr.nbytes)

    def matmul(self, x, backend=None) -> np.ndarray:
        """A @ x on ``kernels.csr_matmul`` (C when built, else its NumPy twin).

        x: (K,) or (K, N) real -> float32 (M,) or (M, N). ``backend`` is passed to the
        kernel ("numpy", "c" or None for the default).
        """
        x = _check_operand("CSR.matmul", self.shape, x)
        vec = x.ndim == 1
        x2 = x.reshape(-1, 1) if vec else x
        out = csr_matmul(self.indptr, self.indices, self.data, x2, backend=backend)
        return out.reshape(-1) if vec else out

    def matmul_reference(self, x) -> np.ndarray:
        """The plain row loop, the oracle the kernel is tested against."""
        x = _check_operand("CSR.matmul_reference", self.shape, x)
        return csr_matmul_reference(self.indptr, self.indices, self.data, x)


def _entry_rows(indptr) -> np.ndarray:
    """Row index of every stored entry: indptr (M+1,) -> int64 (nnz,), e.g. [0, 2, 2, 3] -> [0, 0, 2]."""
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def csr_matmul_reference(indptr, indices, data, x) -> np.ndarray:
    """Y[i] = sum_p data[p] * x[indices[p]] over p in indptr[i]:indptr[i+1] (float32)."""
    m = len(indptr) - 1
    out = np.zeros((m,) + x.shape[1:], dtype=VALUE_DTYPE)
    for i in range(m):
        lo, hi = indptr[i], indptr[i + 1]
        if hi > lo:
            out[i] = data[lo:hi] @ x[indices[lo:hi]]
    return out


def csr_matmul(indptr, indices, data, x, backend=None) -> np.ndarray:
    """Dispatch a validated CSR (M x K) @ x (K x N) product to ``kernels.csr_matmul``
    (which itself falls back to its NumPy twin when the C extension is absent).

    Empty shapes are answered here: (M, N) float32 zeros.
    """
    m, n = len(indptr) - 1, x.shape[1]
    if m == 0 or n == 0 or x.shape[0] == 0 or len(data) == 0:
        return np.zeros((m, n), dtype=VALUE_DTYPE)
    return kernels.csr_matmul(indptr, indices, data, x, backend=backend)
