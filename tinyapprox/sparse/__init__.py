"""Sparse matrix formats (COO, LIL, DOK, CSR) and CSR inference layers.

``CSR.from_dense(w) @ x`` runs on the C kernel ``kernels.csr_matmul``; the other formats
carry plain reference products. ``SparseLinear.from_linear(layer)`` turns a pruned dense
layer into an inference layer on that kernel. See ``formats`` for what ``nbytes`` counts.
"""
from .formats import COO, CSR, DOK, INDEX_DTYPE, INDPTR_DTYPE, LIL, VALUE_DTYPE, SparseMatrix, csr_matmul_reference
from .layers import SparseConv2d, SparseLinear

FORMATS = {"coo": COO, "lil": LIL, "dok": DOK, "csr": CSR}

__all__ = ["SparseMatrix", "COO", "LIL", "DOK", "CSR", "FORMATS", "SparseLinear", "SparseConv2d",
           "csr_matmul_reference", "INDEX_DTYPE", "INDPTR_DTYPE", "VALUE_DTYPE"]
