"""Sparse formats: round trips, conversions, products against dense, sizes, validation."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyapprox import sparse
from tinyapprox.sparse import COO, CSR, DOK, LIL
from tinyapprox.testing.strategies import sparse_matrices

pytestmark = pytest.mark.pruning

FORMATS = [COO, LIL, DOK, CSR]


def _backends():
    try:
        from tinyapprox import kernels
        return kernels.backends()
    except (ImportError, AttributeError):
        return [None]


@pytest.mark.parametrize("fmt", FORMATS)
@given(a=sparse_matrices(max_rows=9, max_cols=9))
def test_round_trip_and_counts(fmt, a):
    m = fmt.from_dense(a)
    np.testing.assert_array_equal(m.to_dense(), a)
    assert m.shape == a.shape
    assert m.nnz == np.count_nonzero(a)
    for other in (m.to_coo(), m.to_lil(), m.to_dok(), m.to_csr()):
        np.testing.assert_array_equal(other.to_dense(), a)
        assert other.nnz == m.nnz


@pytest.mark.parametrize("fmt", FORMATS)
@given(a=sparse_matrices(max_rows=9, max_cols=9), n=st.integers(0, 5), seed=st.integers(0, 1000))
def test_matmul_equals_dense(fmt, a, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((a.shape[1], n)).astype(np.float32)
    v = rng.standard_normal(a.shape[1]).astype(np.float32)
    m = fmt.from_dense(a)
    np.testing.assert_allclose(m @ x, a @ x, rtol=1e-5, atol=1e-5)
    assert (m @ x).shape == (a.shape[0], n) and (m @ x).dtype == np.float32
    np.testing.assert_allclose(m @ v, a @ v, rtol=1e-5, atol=1e-5)
    assert (m @ v).shape == (a.shape[0],)


@pytest.mark.parametrize("backend", _backends())
@given(a=sparse_matrices(max_rows=12, max_cols=12), n=st.integers(0, 70), seed=st.integers(0, 1000))
def test_csr_kernel_equals_reference(backend, a, n, seed):
    x = np.random.default_rng(seed).standard_normal((a.shape[1], n)).astype(np.float32)
    m = CSR.from_dense(a)
    np.testing.assert_allclose(m.matmul(x, backend=backend), m.matmul_reference(x), rtol=1e-5, atol=1e-5)


def test_reference_pinned_by_hand():
    a = np.array([[0, 2, 0], [0, 0, 0], [1, 0, -3]], dtype=np.float32)
    m = CSR.from_dense(a)
    np.testing.assert_array_equal(m.indptr, [0, 1, 1, 3])
    np.testing.assert_array_equal(m.indices, [1, 0, 2])
    np.testing.assert_array_equal(m.data, [2, 1, -3])
    np.testing.assert_array_equal(m.to_coo().row, [0, 2, 2])
    x = np.array([1, 2, 3], dtype=np.float32)
    np.testing.assert_array_equal(m.matmul_reference(x), [4, 0, -8])
    np.testing.assert_array_equal(COO.from_dense(a) @ x, [4, 0, -8])
    np.testing.assert_array_equal(LIL.from_dense(a) @ x, [4, 0, -8])
    np.testing.assert_array_equal(DOK.from_dense(a) @ x, [4, 0, -8])


def test_nbytes_counts_values_and_indices():
    a = np.zeros((4, 5), dtype=np.float32)
    a[0, 1] = a[3, 4] = a[3, 0] = 1.0
    assert CSR.from_dense(a).nbytes == 3 * 4 + 3 * 4 + 5 * 8
    assert COO.from_dense(a).nbytes == 3 * (4 + 4 + 4)
    assert DOK.from_dense(a).nbytes == 3 * (4 + 4 + 4)
    assert LIL.from_dense(a).nbytes == 3 * (4 + 4) + 4 * 8
    assert CSR.from_dense(a).density == pytest.approx(3 / 20)


@pytest.mark.parametrize("shape", [(0, 0), (0, 4), (3, 0)])
def test_zero_dimension_shapes(shape):
    a = np.zeros(shape, dtype=np.float32)
    for fmt in FORMATS:
        m = fmt.from_dense(a)
        assert m.nnz == 0 and m.to_dense().shape == shape
        assert (m @ np.ones((shape[1], 2), np.float32)).shape == (shape[0], 2)


def test_coo_duplicates_summed_or_rejected():
    m = COO([0, 0, 1], [1, 1, 0], [2.0, 3.0, 4.0], (2, 2))
    np.testing.assert_array_equal(m.to_dense(), [[0, 5], [4, 0]])
    assert m.nnz == 2
    with pytest.raises(ValueError, match="duplicate entry at \\(0, 1\\)"):
        COO([0, 0], [1, 1], [2.0, 3.0], (2, 2), duplicates="error")


def test_bad_input_raises_clearly():
    with pytest.raises(ValueError, match="row out of range"):
        COO([2], [0], [1.0], (2, 2))
    with pytest.raises(ValueError, match="col out of range"):
        COO([0], [-1], [1.0], (2, 2))
    with pytest.raises(ValueError, match="equal lengths"):
        COO([0, 1], [0], [1.0], (2, 2))
    with pytest.raises(TypeError, match="integer row"):
        COO([0.5], [0], [1.0], (2, 2))
    with pytest.raises(ValueError, match="indptr"):
        CSR([0, 2, 1], [0, 1], [1.0, 1.0], (2, 2))
    with pytest.raises(ValueError, match="strictly increasing"):
        CSR([0, 2], [1, 1], [1.0, 1.0], (1, 2))
    with pytest.raises(ValueError, match="expected indptr of shape \\(3,\\)"):
        CSR([0, 1], [0], [1.0], (2, 2))
    with pytest.raises(ValueError, match="2-D array"):
        CSR.from_dense(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        COO.from_dense(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="dense operand of shape \\(3,\\) or \\(3, N\\), got \\(2, 4\\)"):
        CSR.from_dense(np.eye(3)) @ np.ones((2, 4))
    with pytest.raises(ValueError, match="COO: expected data of shape \\(1,\\) \\(one value per index\\), got \\(2,\\)"):
        COO([0], [0], [1.0, 2.0], (2, 2))
    with pytest.raises(ValueError, match="CSR: expected finite data, got NaN"):
        CSR([0, 1], [0], [np.nan], (1, 2))
    with pytest.raises(TypeError, match="CSR: expected real data, got dtype complex128"):
        CSR([0, 1], [0], [1j], (1, 2))
    with pytest.raises(ValueError, match="CSR: indices out of range: expected values in \\[0, 2\\), got -1"):
        CSR([0, 1], [-1], [1.0], (1, 2))
    with pytest.raises(IndexError, match="row index 5"):
        LIL((2, 2))[5, 0] = 1.0
    with pytest.raises(TypeError, match="pair of ints"):
        DOK((2.5, 3))


@given(a=sparse_matrices(max_rows=6, max_cols=6), seed=st.integers(0, 100))
def test_lil_and_dok_item_assignment_match_dense(a, seed):
    rng = np.random.default_rng(seed)
    lil, dok, ref = LIL(a.shape), DOK(a.shape), np.zeros(a.shape, np.float32)
    if a.size:
        for _ in range(10):
            i, j = int(rng.integers(a.shape[0])), int(rng.integers(a.shape[1]))
            v = float(rng.choice([0.0, rng.standard_normal()]))
            lil[i, j] = dok[i, j] = ref[i, j] = v
            assert lil[i, j] == dok[i, j] == np.float32(v)
    np.testing.assert_array_equal(lil.to_dense(), ref)
    np.testing.assert_array_equal(dok.to_dense(), ref)
    assert lil.nnz == dok.nnz == np.count_nonzero(ref)


@given(n=st.integers(1, 5), cin=st.integers(1, 3), h=st.integers(3, 7), k=st.integers(1, 3),
       stride=st.integers(1, 2), pad=st.integers(0, 1), seed=st.integers(0, 1000))
def test_sparse_conv_matches_direct_correlation(n, cin, h, k, stride, pad, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cin, h, h)).astype(np.float32)
    w = rng.standard_normal((2, cin, k, k)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - k) // stride + 1
    ref = np.zeros((n, 2, oh, oh), np.float32)
    for i in range(oh):
        for j in range(oh):
            patch = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            ref[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    w_uvc = CSR.from_dense(w.transpose(0, 2, 3, 1).reshape(2, -1))
    conv = sparse.SparseConv2d(w_uvc, (k, k), cin, stride=stride, padding=pad)
    np.testing.assert_allclose(conv(x).data, ref, rtol=1e-4, atol=1e-4)


@given(cin=st.integers(1, 3), k=st.integers(1, 3), stride=st.integers(1, 2), pad=st.integers(0, 1),
       seed=st.integers(0, 1000))
def test_sparse_conv_from_conv_equals_dense_conv(cin, k, stride, pad, seed):
    from tinyapprox import nn
    from tinyapprox.tensor import Tensor
    rng = np.random.default_rng(seed)
    conv = nn.Conv2d(cin, 3, k, stride=stride, padding=pad)
    conv.weight.data[rng.random(conv.weight.shape) < 0.5] = 0
    x = rng.standard_normal((2, cin, 5, 6)).astype(np.float32)
    sp = sparse.SparseConv2d.from_conv(conv)
    assert sp.weight.nnz == np.count_nonzero(conv.weight.data)
    np.testing.assert_allclose(sp(x).data, conv(Tensor(x)).data, rtol=1e-4, atol=1e-5)


def test_sparse_conv_rejects_bad_arguments():
    w = CSR.from_dense(np.ones((2, 8), np.float32))
    with pytest.raises(ValueError, match="SparseConv2d: expected weight columns kh\\*kw\\*C = 12, got 8"):
        sparse.SparseConv2d(w, (2, 2), 3)
    with pytest.raises(ValueError, match="SparseConv2d: expected bias of shape \\(2,\\), got \\(3,\\)"):
        sparse.SparseConv2d(w, (2, 2), 2, bias=np.zeros(3))
    with pytest.raises(TypeError, match="SparseConv2d: expected weight to be a CSR"):
        sparse.SparseConv2d(np.ones((2, 8)), (2, 2), 2)
    with pytest.raises(ValueError, match="SparseConv2d: expected input \\(N, 2, H, W\\), got \\(1, 3, 4, 4\\)"):
        sparse.SparseConv2d(w, (2, 2), 2)(np.ones((1, 3, 4, 4), np.float32))


@given(a=sparse_matrices(max_rows=8, max_cols=8), batch=st.integers(1, 6), seed=st.integers(0, 100))
def test_sparse_linear_equals_dense_product(a, batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, a.shape[1])).astype(np.float32)
    b = rng.standard_normal(a.shape[0]).astype(np.float32)
    layer = sparse.SparseLinear(CSR.from_dense(a), b)
    np.testing.assert_allclose(layer(x).data, x @ a.T + b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="SparseLinear: expected input"):
        layer(np.ones((2, a.shape[1] + 1), np.float32))
