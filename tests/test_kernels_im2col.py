"""kernels.im2col: the C patch matrix of a channels-last map equals conv.im2col (its NumPy
twin, the project's one patch order) for every dtype width, stride, padding and thread count."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tinyapprox import conv, kernels

BACKENDS = kernels.backends()
DTYPES = [np.int8, np.int16, np.float32, np.uint64]


def test_hand_computed_patches():
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    for backend in BACKENDS:
        np.testing.assert_array_equal(kernels.im2col(x, 2, 2, backend=backend),
                                      [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]])
        padded = kernels.im2col(np.ones((1, 1, 1, 2), np.int8), 3, 3, padding=1, backend=backend)
        assert padded.shape == (1, 18) and padded.sum() == 2 and padded[0, 8] == padded[0, 9] == 1


@given(st.integers(0, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 5), st.integers(1, 4),
       st.integers(1, 4), st.integers(1, 3), st.integers(0, 2), st.sampled_from(DTYPES), st.integers(1, 3))
def test_im2col_equals_the_numpy_twin(n, h, w, c, kh, kw, stride, padding, dtype, threads):
    assume(h + 2 * padding >= kh and w + 2 * padding >= kw)
    x = np.random.default_rng(h * 100 + w).integers(0, 120, (n, h, w, c)).astype(dtype)
    want = conv.im2col(x, kh, kw, stride, padding, channels_last=True)
    for backend in BACKENDS:
        got = kernels.im2col(x, kh, kw, stride, padding, threads=threads, backend=backend)
        assert got.flags.c_contiguous and got.dtype == x.dtype
        np.testing.assert_array_equal(got, want)


def test_im2col_reuses_out_and_refuses_bad_input():
    x = np.random.default_rng(0).random((4, 6, 6, 3)).astype(np.float32)
    out = np.empty((4 * 16, 27), np.float32)
    assert kernels.im2col(x, 3, 3, out=out) is out
    np.testing.assert_array_equal(out, conv.im2col(x, 3, 3, channels_last=True))
    with pytest.raises(ValueError, match="im2col: out must have shape"):
        kernels.im2col(x, 3, 3, out=np.empty((5, 27), np.float32))
    with pytest.raises(ValueError, match="im2col: window"):
        kernels.im2col(x, 7, 7)
    with pytest.raises(ValueError, match="im2col: x must be 4-D"):
        kernels.im2col(x[0], 3, 3)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.im2col(x.transpose(0, 2, 1, 3), 3, 3)
    with pytest.raises(TypeError, match="numeric dtype"):
        kernels.im2col(np.zeros((1, 3, 3, 1), np.complex64), 2, 2)
    with pytest.raises(ValueError, match="stride"):
        kernels.im2col(x, 3, 3, stride=0)
    with pytest.raises(ValueError, match="threads"):
        kernels.im2col(x, 3, 3, threads=0)


@pytest.mark.skipif("c" not in BACKENDS, reason="C extension not loaded")
def test_c_im2col_refuses_bad_arguments_itself():
    """The C entry point checks its own arguments; the Python face never lets these through."""
    from tinyapprox.kernels import _ext
    lib, ffi = _ext.lib, _ext.ffi
    x = np.arange(18, dtype=np.float32).reshape(1, 3, 3, 2)
    out = np.zeros(4 * 8, np.float32)

    def call(elem=4, N=1, H=3, W=3, C=2, kh=2, kw=2, sh=1, sw=1, ph=0, pw=0, n_out=out.size,
             threads=1, src=None):
        src = ffi.from_buffer("char[]", x) if src is None else src
        return lib.ta_im2col_nhwc(src, elem, N, H, W, C, kh, kw, sh, sw, ph, pw,
                                  ffi.from_buffer("char[]", out), n_out, threads)

    assert call() == lib.TA_OK
    np.testing.assert_array_equal(out.reshape(4, 8), conv.im2col(x, 2, 2, channels_last=True))
    for bad in (0, -1, lib.TA_MAX_THREADS + 1):
        assert call(threads=bad) == lib.TA_ERR_THREADS
    assert call(elem=3) == lib.TA_ERR_SIZE
    assert call(n_out=out.size - 1) == lib.TA_ERR_SIZE
    assert call(sh=0) == lib.TA_ERR_SIZE
    assert call(ph=-1) == lib.TA_ERR_SIZE
    assert call(kh=5) == lib.TA_ERR_SIZE
    assert call(N=-1) == lib.TA_ERR_SIZE
    assert call(src=ffi.NULL) == lib.TA_ERR_NULL
