"""Plain NumPy twins of the C kernels: they define the right answer.

Each function here has the same name and contract as its fast version in
``tinyapprox.kernels`` and is written to be read, not to be fast. The public
wrappers validate their inputs before calling either backend; these functions
assume already-valid inputs (right dtypes and shapes, indices in range).

Conventions shared with the C code:

* CSR: ``indptr`` (M+1,), ``indices`` (nnz,) column of each stored value,
  ``data`` (nnz,). Column indices need not be sorted; duplicates add up.
* int8 GEMM: int8 (M, K) x int8 (K, N) -> int32 (M, N), exact.
* Requantization: integer multiplier and shift, round half to even (:func:`requantize`).
  The fused int8 layer (:func:`int8_linear`) takes row-major activations x (N, K) and
  B = W_codes.T (K, M).
* Bit packing: bit 1 = +1, bit 0 = -1 and sign(0) = +1; element ``k`` of a row is
  bit ``k % 64`` of word ``k // 64``; bits at positions >= K are 0.
"""
import numpy as np

#: Largest K for which an int8 dot product always fits int32: K * 128 * 128 <= 2**31 - 1.
INT8_MAX_K = 131071


def csr_matmul(indptr, indices, data, X):
    """Y = A @ X for A in CSR form.

    indptr: (M+1,) int, indices: (nnz,) int in [0, K), data: (nnz,) float32,
    X: (K, N) float32 -> Y: (M, N) float32. Each row is accumulated in float64
    and rounded once, so this is at least as accurate as the C kernel.
    """
    M = len(indptr) - 1
    Y = np.zeros((M, X.shape[1]), dtype=np.float64)
    for i in range(M):
        start, end = int(indptr[i]), int(indptr[i + 1])
        cols = indices[start:end]
        Y[i] = data[start:end].astype(np.float64) @ X[cols].astype(np.float64)
    return Y.astype(np.float32)


def gemm_int8(A, B):
    """C = A @ B exactly: A (M, K) int8, B (K, N) int8 -> (M, N) int32.

    The products are summed in float64, which is exact here: every partial sum
    is an integer of magnitude <= K * 2**14 < 2**53 (K <= INT8_MAX_K).
    """
    C = A.astype(np.float64) @ B.astype(np.float64)
    return C.astype(np.int32)


def round_shift(v, s):
    """``round(v / 2^s)`` for integer ``v`` and integer shifts ``s`` (broadcast), ties to even.

    ``s <= 0`` is an exact left shift. For ``s > 0`` it is one expression of adds and
    arithmetic shifts: ``(v + 2^(s-1) - 1 + ((v >> s) & 1)) >> s`` -- with ``v = q 2^s + r``,
    ``0 <= r < 2^s``, this is q when r is below half, q + 1 above, and the even one of the
    two at exactly half. Equal to ``np.rint(v / 2**s)``. Works in int64; the caller keeps
    ``|v| + 2^(s-1)`` below 2^63.
    """
    v = np.asarray(v, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    if s.ndim == 0 and int(s) <= 0:
        return v << int(-s)
    pos = np.maximum(s, 0)
    half = np.left_shift(np.int64(1), np.maximum(pos - 1, 0)) * (pos > 0)
    q = (v + half - (pos > 0) + ((v >> pos) & 1) * (pos > 0)) >> pos
    if s.ndim == 0:
        return q
    return np.where(s < 0, v << np.maximum(-s, 0), q)


def multiplier(M):
    """Integer form of a positive real multiplier: ``M = m0 * 2^-shift``, ``m0`` in [2^30, 2^31).

    M: scalar or array of finite floats > 0. Returns ``(m0, shift)`` as int64 arrays of M's
    shape, ``shift = 31 - e`` for ``M = f 2^e``, ``f`` in [0.5, 1); ``m0`` is ``f`` rounded
    to 31 bits, so a power of two gives ``m0 = 2^30`` exactly and other multipliers carry
    a relative error below 2^-31. Raises ValueError for non-positive or non-finite M.
    """
    M = np.asarray(M, dtype=np.float64)
    if not np.all(np.isfinite(M)) or np.any(M <= 0):
        raise ValueError(f"requantize: multipliers must be finite and > 0, got {M}")
    f, e = np.frexp(M)                       # M = f * 2^e, f in [0.5, 1)
    m0 = np.rint(np.ldexp(f, 31)).astype(np.int64)
    e = e.astype(np.int64)
    carry = m0 == 2 ** 31
    m0 = np.where(carry, 2 ** 30, m0)
    e = np.where(carry, e + 1, e)
    return m0, 31 - e


def requantize(acc, M, lo, hi, relu=False, channel_axis=1):
    """The requantizer: integer accumulators -> output codes ``clip(round(acc * M), lo, hi)``.

    The library's one requantization (integer inference and ``gemm_int8_requant`` use it;
    fused C kernels are held to it). ``M = m0 * 2^-shift`` (:func:`multiplier`), then
    ``round_shift(acc * m0, shift)`` in int64 -- integers only, rounding half to even. A
    power-of-two M is a single rounding shift of ``acc``.

    Args:
        acc: int32/int64 accumulators, any shape. Beyond 2^31 in magnitude, ``m0`` keeps
            fewer bits so that the int64 product cannot overflow.
        M: scalar, or (C,) per channel along ``channel_axis``: positive multipliers
            ``s_acc / s_out``.
        lo, hi: int code range; relu: clip below at ``max(lo, 0)`` (ReLU fused).
    Returns int64 codes of acc's shape. Raises ValueError for a non-positive or
    non-finite multiplier.
    """
    acc = np.asarray(acc, dtype=np.int64)
    m0, shift = multiplier(M)
    if m0.ndim:
        shape = [1] * acc.ndim
        shape[channel_axis] = m0.size
        m0, shift = m0.reshape(shape), shift.reshape(shape)
    if np.all(m0 == 2 ** 30):           # a power-of-two multiplier: one rounding shift, no product
        q = round_shift(acc, shift - 30)
    else:
        excess = int(np.abs(acc).max(initial=0)).bit_length() - 31
        if excess > 0:                  # keep |acc * m0| < 2^62: drop low bits of m0
            m0, shift = round_shift(m0, excess), shift - excess
        q = np.where(shift > 62, 0, round_shift(acc * m0, np.minimum(shift, 62)))   # |acc m0| / 2^63 < 1/2
    return np.clip(q, max(lo, 0) if relu else lo, hi)


def zero_point_accumulators(C, A, B_colsum, a_zero, b_zero):
    """sum_k (A[i,k] - a_zero) (B[k,j] - b_zero[j]) from C = A @ B, in int64.

    C: (M, N) int32; A: (M, K) int8; B_colsum: (N,) int64 column sums of B;
    a_zero: int; b_zero: (N,) int64. Expands the product so only C needs a GEMM.
    """
    K = A.shape[1]
    row_sum = A.sum(axis=1, dtype=np.int64)[:, None]
    return (C.astype(np.int64) - row_sum * b_zero[None, :] - a_zero * B_colsum[None, :]
            + K * a_zero * b_zero[None, :])


def int8_linear(x, B, bias=None, multiplier=1, shift=0, lo=-128, hi=127, relu=False,
                out="int8", out_scale=None):
    """A quantized linear layer on int8 codes: x (N, K) int8, B (K, M) int8 -> (N, M).

    acc = x @ B + bias as an int32 accumulator (bias: (M,) int32 or None; the sum
    wraps modulo 2**32 like a 32-bit adder, which never happens for checked layers).
    out="int32": acc, or max(acc, 0) with relu.
    out="float32": float32(float64(acc) * out_scale), out_scale a float or (M,)
    float64; relu is applied to acc first.
    out="int8": round_half_to_even(acc * multiplier / 2**shift) in int64, clipped
    to [max(lo, 0) if relu else lo, hi]; multiplier in [1, 2**31) and shift in
    [0, 62], scalars or (M,) (per output channel). |acc * multiplier| < 2**62, so
    nothing overflows int64. This is ``quant.integer.requantize`` with m0 = multiplier.
    """
    return int8_epilogue(gemm_int8(x, B), bias, multiplier, shift, lo, hi, relu, out, out_scale)


def int8_epilogue(acc, bias=None, multiplier=1, shift=0, lo=-128, hi=127, relu=False,
                  out="int8", out_scale=None):
    """The output stage of :func:`int8_linear` on acc = x @ B ((N, M) int32)."""
    acc = np.asarray(acc).astype(np.int64)
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)[None, :]
    acc = (acc + 2**31) % 2**32 - 2**31
    if out == "int32":
        return (np.maximum(acc, 0) if relu else acc).astype(np.int32)
    if out == "float32":
        if relu:
            acc = np.maximum(acc, 0)
        scale = np.asarray(out_scale, dtype=np.float64)
        return (acc.astype(np.float64) * scale).astype(np.float32)
    m = np.asarray(multiplier, dtype=np.int64)
    q = round_shift(acc * m, shift)
    return np.clip(q, max(lo, 0) if relu else lo, hi).astype(np.int8)


def quantize_int8(x, scale, lo=-128, hi=127):
    """int8 codes of float x (any shape): clip(round_half_to_even(float64(x) / scale), lo, hi).

    The division is done in float64, exactly as ``quant.formats.Affine.quantize``
    does for a per-tensor symmetric quantizer, so the codes are equal bit for bit;
    +-inf saturates to hi / lo. NaN has no code (the public face refuses it).
    """
    q = np.rint(np.asarray(x, dtype=np.float64) / np.float64(scale))
    return np.clip(q, lo, hi).astype(np.int8)


def pack_bits(X):
    """Pack signs of X (M, K) real/int into uint64 (M, ceil(K/64)); bit = X >= 0.

    A 1-D X (K,) gives (ceil(K/64),).
    """
    X = np.asarray(X)
    squeeze = X.ndim == 1
    X2 = X.reshape(1, -1) if squeeze else X
    M, K = X2.shape
    W = (K + 63) // 64
    bits = np.zeros((M, W * 64), dtype=np.uint8)
    bits[:, :K] = X2 >= 0
    packed_bytes = np.packbits(bits, axis=1, bitorder="little")  # (M, 8W), bit k%8 of byte k//8
    words = np.ascontiguousarray(packed_bytes).view("<u8").astype(np.uint64)
    return words[0] if squeeze else words


def unpack_bits(bits, K):
    """Inverse of pack_bits: uint64 (M, W) -> float32 (M, K) of +1 / -1."""
    bits = np.asarray(bits)
    squeeze = bits.ndim == 1
    b2 = bits.reshape(1, -1) if squeeze else bits
    as_bytes = np.ascontiguousarray(b2.astype("<u8")).view(np.uint8)
    flags = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :K]
    out = np.where(flags == 1, np.float32(1), np.float32(-1)).astype(np.float32)
    return out[0] if squeeze else out


def popcount64(words):
    """Number of set bits of each uint64 element (same shape, int64)."""
    as_bytes = np.ascontiguousarray(words, dtype=np.uint64).view(np.uint8)
    counts = np.unpackbits(as_bytes).reshape(*as_bytes.shape, 8).sum(axis=-1)
    return counts.reshape(*words.shape, 8).sum(axis=-1).astype(np.int64)


def xnor_gemm(A_bits, B_bits, K):
    """+-1 dot products of packed rows: C[i, j] = K - 2 * popcount(A_i XOR B_j).

    A_bits: (M, W) uint64, B_bits: (N, W) uint64, W = ceil(K/64) -> (M, N) int32.
    Equals unpack_bits(A_bits, K) @ unpack_bits(B_bits, K).T exactly.
    """
    M, N = A_bits.shape[0], B_bits.shape[0]
    C = np.empty((M, N), dtype=np.int32)
    for i in range(M):
        differing = popcount64(A_bits[i][None, :] ^ B_bits).sum(axis=1)
        C[i] = K - 2 * differing
    return C


def csr_linear(x, indptr, indices, data, bias=None, relu=False):
    """Fused sparse layer: Y = x @ W.T + bias, then ReLU if asked.

    x: (N, K) float32 row-major activations; W (M, K) in CSR (indptr (M+1,),
    indices (nnz,) in [0, K), any order, duplicates add up; data (nnz,) float32);
    bias: (M,) float32 or None -> Y: (N, M) float32. Each output is accumulated
    in float64 (bias included) and rounded once, then ReLU'd (max(y, 0), NaN kept).
    """
    N, M = x.shape[0], len(indptr) - 1
    Y = np.zeros((N, M), dtype=np.float64)
    for j in range(M):
        start, end = int(indptr[j]), int(indptr[j + 1])
        Y[:, j] = x[:, indices[start:end]].astype(np.float64) @ data[start:end].astype(np.float64)
    if bias is not None:
        Y += bias.astype(np.float64)[None, :]
    Y = Y.astype(np.float32)
    if relu:
        Y = np.where(Y < 0, np.float32(0), Y)
    return Y


def binary_linear(x_bits, w_bits, K, thresholds=None, flip=None):
    """Fused binary layer on packed +-1 bits (bit 1 = +1, see :func:`pack_bits`).

    x_bits: (N, W) uint64 inputs, w_bits: (M, W) uint64 weights (one row per
    output channel), W = ceil(K/64). dot = K - 2 * popcount(x XOR w), the +-1
    dot product, (N, M). Without thresholds returns dot as int32. With
    thresholds (M,) int and flip (M,) bool or None, output j is +1 iff
    dot >= thresholds[j] (flip[j] False) or dot <= thresholds[j] (flip[j] True),
    returned packed: (N, ceil(M/64)) uint64, padding bits zero.
    """
    dot = xnor_gemm(x_bits, w_bits, K)
    if thresholds is None:
        return dot
    t = np.asarray(thresholds, dtype=np.int64)[None, :]
    f = np.zeros(t.shape, dtype=bool) if flip is None else np.asarray(flip, dtype=bool)[None, :]
    plus = np.where(f, dot <= t, dot >= t)
    return pack_bits(np.where(plus, 1, -1).reshape(dot.shape))
