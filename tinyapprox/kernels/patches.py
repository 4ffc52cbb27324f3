"""``kernels.im2col``: the patch matrix of a channels-last map, gathered in C.

The lowered convolutions (``SparseConv2d``, ``QuantizedConv2d``, ``PackedBinaryConv2d``)
keep activations channels-last and hand row-major patch rows to the fused kernels. This
is the same matrix as ``conv.im2col(x, ..., channels_last=True)`` -- the project's one
im2col and this function's NumPy twin -- copied by C with one ``memcpy`` per window row
and split over threads.
"""
import numpy as np

from .. import conv
from . import _check_array, _check_int, _check_rc, _ext, _out_array, _ptr, _threads

__all__ = ["im2col"]


def _use_c(op, backend) -> bool:
    """True for the C copy: backend None (when built), "c" or any "c-..." path; False for "numpy"."""
    if backend == "numpy" or (backend is None and _ext.lib is None):
        return False
    if backend is None or backend == "c" or (isinstance(backend, str) and backend.startswith("c-")
                                             and backend[2:] in _ext.ISA_NAMES):
        if _ext.lib is None:
            why = "TINYAPPROX_KERNELS=numpy" if _ext.forced_numpy else (_ext.load_error or "not built")
            raise RuntimeError(f"{op}: backend={backend!r} requested but the C extension is not loaded ({why})")
        return True
    raise ValueError(f"{op}: unknown backend {backend!r}; expected None, 'numpy', 'c' or one of "
                     f"{['c-' + n for n in _ext.ISA_NAMES]}")


def im2col(x, kh, kw, stride=1, padding=0, threads=None, backend=None, out=None):
    """Patch rows of a channels-last map: x (N, H, W, C) -> (N*OH*OW, kh*kw*C), same dtype.

    x: C-contiguous ndarray of a 1-, 2-, 4- or 8-byte dtype (int8 codes, float32, packed
    uint64 words); kh, kw, stride, padding: ints (the same along both axes; zero padding).
    Row ``(n*OH + oy)*OW + ox``, column ``(u*kw + v)*C + c`` -- exactly
    ``conv.im2col(x, kh, kw, stride, padding, channels_last=True)``, which is the NumPy
    backend. The result is C-contiguous and does not depend on ``threads``.

    Raises TypeError / ValueError (naming ``im2col``) for a wrong type, dtype, layout,
    sizes, or a window larger than the padded map; RuntimeError if ``backend`` asks for
    C that is absent.
    """
    op = "im2col"
    _check_array(op, "x", x, ndim=4)
    if x.dtype.itemsize not in (1, 2, 4, 8) or x.dtype.kind not in "iuf":
        raise TypeError(f"{op}: x must have a 1-, 2-, 4- or 8-byte numeric dtype, got {x.dtype}")
    kh, kw = _check_int(op, "kh", kh, 1, 2**31 - 1), _check_int(op, "kw", kw, 1, 2**31 - 1)
    s, p = _check_int(op, "stride", stride, 1, 2**31 - 1), _check_int(op, "padding", padding, 0, 2**31 - 1)
    nt = _threads(op, threads)
    n, h, w, c = x.shape
    if h + 2 * p < kh or w + 2 * p < kw:
        raise ValueError(f"{op}: window ({kh}, {kw}) is larger than the padded map ({h + 2 * p}, {w + 2 * p})")
    oh, ow = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    out = _out_array(op, out, (n * oh * ow, kh * kw * c), x.dtype, (x,))
    if not _use_c(op, backend):
        out[...] = conv.im2col(x, kh, kw, s, p, channels_last=True)
        return out
    rc = _ext.lib.ta_im2col_nhwc(_ptr("char", x.view(np.uint8)), x.dtype.itemsize, n, h, w, c, kh, kw, s, s, p, p,
                                 _ptr("char", out.view(np.uint8)), out.size, nt)
    _check_rc(op, rc)
    return out
