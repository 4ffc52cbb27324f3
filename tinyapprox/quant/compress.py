"""Deep Compression's second stage: k-means weight sharing of a pruned model, and its size.

Han, Mao and Dally (ICLR 2016) prune a network, then cluster each layer's surviving
weights into ``2^bits`` shared values (a codebook), store each weight as a ``bits``-bit
index into it, and store the sparsity pattern as *relative* indices (the gap to the
previous kept weight, in a few bits, with a filler zero entry when a gap does not fit),
finally Huffman-coding both streams.

* ``KMeansQuant`` is the ``ParamTransform``: it replaces every non-zero weight by its nearest
  centroid (gradient straight through) and, after each optimizer step, moves every
  centroid to the mean of its members' shadow weights (one Lloyd step) — so fine-tuning
  trains the shared values, as in the paper.
* ``kmeans_1d`` is the clustering (linear initialisation between min and max, the paper's
  best choice, or random with a seed).
* ``sparse_size`` counts the bytes of one layer three ways: CSR (column indices at
  ``ceil(log2 cols)`` bits, row pointers at ``ceil(log2(nnz+1))`` bits), relative indices,
  and relative indices + Huffman codes (code lengths of the actual symbols, plus one byte
  per symbol for the canonical code table); codebooks are 32-bit floats.
* ``deep_compression(model, bits, ...)`` does it all and returns the accuracy and the sizes.
"""
from __future__ import annotations

import copy
import heapq
import math

import numpy as np

from ..cost import model_bytes
from ..nn.module import ParamTransform
from ..tensor import Function, Tensor
from .pipeline import evaluate, weight_layers

__all__ = ["kmeans_1d", "KMeansQuant", "huffman_lengths", "relative_indices", "sparse_size", "deep_compression"]


def kmeans_1d(values, k, iters=30, init="linear", seed=0):
    """Cluster 1-D ``values`` into ``k`` centroids (Lloyd's algorithm).

    Args:
        values: 1-D float array (may be empty); k: number of clusters >= 1.
        init: ``"linear"`` (evenly spaced between min and max) or ``"random"`` (k distinct
            values drawn with ``seed``).
    Returns ``(centroids (k,) float64 sorted, assignment (n,) int64)``. Empty clusters keep
    their previous centroid.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if k < 1:
        raise ValueError(f"kmeans_1d: k must be >= 1, got {k}")
    if v.size == 0:
        return np.zeros(k), np.zeros(0, dtype=np.int64)
    if init == "linear":
        c = np.linspace(v.min(), v.max(), k)
    elif init == "random":
        rng = np.random.default_rng(seed)
        c = np.sort(rng.choice(v, size=k, replace=v.size < k))
    else:
        raise ValueError(f"kmeans_1d: init must be 'linear' or 'random', got {init!r}")
    for _ in range(iters):
        a = _assign(v, c)
        sums = np.bincount(a, weights=v, minlength=k)
        counts = np.bincount(a, minlength=k)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        new.sort()
        if np.array_equal(new, c):
            break
        c = new
    return c, _assign(v, c)


def _assign(v, c):
    """Index of the nearest sorted centroid (ties to the lower one)."""
    mids = (c[1:] + c[:-1]) / 2
    return np.searchsorted(mids, v, side="left").astype(np.int64)


class _Shared(Function):
    """Weight sharing: each non-zero weight becomes its nearest centroid (zeros stay zero)."""

    @staticmethod
    def forward(ctx, w, centroids=None):
        nz = w != 0
        out = np.zeros_like(w)
        out[nz] = centroids[_assign(w[nz].astype(np.float64), centroids)]
        ctx.save_for_backward(nz)
        return out

    @staticmethod
    def backward(ctx, g):
        (nz,) = ctx.saved
        return g * nz


class KMeansQuant(ParamTransform):
    """Weight sharing: non-zero weights -> nearest of ``2^bits`` centroids (zeros stay zero).

    Put it after a ``PruneMask`` so it sees the masked weight. ``fit(w)`` runs k-means;
    ``after_step`` re-centres the centroids on the shadow weights. ``codes(w)`` gives the
    cluster index of every non-zero weight (row-major order).
    """

    order = ParamTransform.QUANTIZE

    def __init__(self, bits=5, centroids=None, init="linear", seed=0):
        self.bits, self.init, self.seed = int(bits), init, seed
        self.centroids = None if centroids is None else np.asarray(centroids, dtype=np.float64)

    def fit(self, w):
        w = np.asarray(w)
        self.centroids, _ = kmeans_1d(w[w != 0], 2 ** self.bits, init=self.init, seed=self.seed)
        return self

    def __call__(self, w: Tensor) -> Tensor:
        if self.centroids is None:
            self.fit(w.data)
        return _Shared.apply(w, centroids=self.centroids)

    def after_step(self, param):
        w = _before(param, self)
        nzw = np.asarray(w)[np.asarray(w) != 0].astype(np.float64)
        if nzw.size:
            a = _assign(nzw, self.centroids)
            k = self.centroids.size
            sums, counts = np.bincount(a, weights=nzw, minlength=k), np.bincount(a, minlength=k)
            self.centroids = np.sort(np.where(counts > 0, sums / np.maximum(counts, 1), self.centroids))

    def codes(self, w):
        w = np.asarray(w)
        return _assign(w[w != 0].astype(np.float64), self.centroids)

    def state(self):
        return {"bits": np.array(self.bits), "centroids": self.centroids if self.centroids is not None
                else np.zeros(0)}

    @classmethod
    def from_state(cls, s):
        c = np.asarray(s["centroids"])
        return cls(int(s["bits"]), c if c.size else None)

    def __repr__(self):
        return f"KMeansQuant(bits={self.bits})"


def huffman_lengths(symbols) -> dict:
    """Huffman code length (bits) of each distinct symbol of the 1-D integer array ``symbols``."""
    values, counts = np.unique(np.asarray(symbols).ravel(), return_counts=True)
    if values.size == 0:
        return {}
    if values.size == 1:
        return {int(values[0]): 1}
    heap = [(int(c), i, [int(v)]) for i, (v, c) in enumerate(zip(values, counts))]
    heapq.heapify(heap)
    lengths = {int(v): 0 for v in values}
    tie = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return lengths


def relative_indices(mask_flat, diff_bits):
    """Deep Compression's relative index stream of a flattened 0/1 mask.

    Each kept position is stored as the gap from the previous entry (first: from -1); a gap
    larger than ``2^diff_bits`` inserts filler entries (a stored zero weight) every
    ``2^diff_bits`` positions. Returns ``(gaps (entries,) int64 in [1, 2^diff_bits],
    is_filler (entries,) bool)``.
    """
    pos = np.flatnonzero(mask_flat)
    gaps, filler = [], []
    prev = -1
    span = 2 ** diff_bits
    for p in pos:
        g = int(p - prev)
        while g > span:
            gaps.append(span)
            filler.append(True)
            g -= span
        gaps.append(g)
        filler.append(False)
        prev = p
    return np.asarray(gaps, dtype=np.int64), np.asarray(filler, dtype=bool)


def sparse_size(w, codes, bits, diff_bits=5, codebook_bits=32) -> dict:
    """Bytes of one pruned, weight-shared layer under three encodings.

    Args:
        w: the layer's weight (zeros = pruned), any shape (rows = axis 0).
        codes: cluster index of every non-zero weight, row-major; bits: index width.
        diff_bits: width of a relative index.
    Returns ``{"csr", "relative", "huffman", "nnz", "entries"}`` in bytes (ceil per stream).
    """
    w = np.asarray(w)
    rows = w.shape[0]
    cols = int(np.prod(w.shape[1:]))
    nnz = int(np.count_nonzero(w))
    codebook = 2 ** bits * codebook_bits
    col_bits = max(1, math.ceil(math.log2(max(cols, 2))))
    ptr_bits = max(1, math.ceil(math.log2(nnz + 1)))
    csr = math.ceil((nnz * (bits + col_bits) + (rows + 1) * ptr_bits + codebook) / 8)
    gaps, filler = relative_indices((w != 0).ravel(), diff_bits)
    entries = int(gaps.size)
    rel = math.ceil((entries * (bits + diff_bits) + codebook) / 8)
    vals = np.zeros(entries, dtype=np.int64)
    vals[~filler] = np.asarray(codes)
    vals[filler] = -1                              # a filler stores the value "zero": its own symbol
    lv, lg = huffman_lengths(vals), huffman_lengths(gaps)
    hbits = sum(lv[int(s)] for s in vals) + sum(lg[int(s)] for s in gaps)
    huff = math.ceil((hbits + 8 * (len(lv) + len(lg)) + codebook) / 8)
    return {"csr": csr, "relative": rel, "huffman": huff, "nnz": nnz, "entries": entries}


def deep_compression(model_pruned, bits=5, images=None, labels=None, train_data=None, finetune_epochs=0, lr=0.001,
                     diff_bits=5, conv_diff_bits=8, bias_bits=32, init="linear", seed=0, verbose=False):
    """Weight-share the (masked) weights of a pruned model and account for its size.

    Args:
        model_pruned: a Sequential whose weights are zero where pruned (a ``PruneMask``
            transform or baked zeros); not modified.
        bits: codebook index width (2^bits centroids per layer; Deep Compression: 5 fc, 8 conv).
        images, labels: evaluation set (accuracy reported when given).
        train_data: ``(images, labels)`` for optional fine-tuning of the shared values
            (``finetune_epochs`` epochs of SGD at ``lr``).
        diff_bits / conv_diff_bits: relative-index widths for fc / conv layers.
        bias_bits: bits per bias (and other non-weight parameters), stored dense.

    Returns ``(model_shared, report)`` with ``report = {"top1", "top1_pruned", "bits",
    "fp32_bytes", "bytes": {"csr", "relative", "huffman"}, "compression": {...}, "layers": [...]}``.
    """
    from .. import data, optim, train
    from .. import functional as F

    m = copy.deepcopy(model_pruned)
    top1_pruned = evaluate(m, images, labels) if images is not None else None
    for _, layer in weight_layers(m):
        p = layer.weight
        t = KMeansQuant(bits, init=init, seed=seed)
        t.fit(p.effective().data)
        p.add_transform(t)
    if train_data is not None and finetune_epochs > 0:
        loader = data.DataLoader(*train_data, batch_size=128, shuffle=True, seed=seed)
        opt = optim.SGD(m.parameters(), lr=lr, momentum=0.9)
        train.fit(m, loader, F.cross_entropy, opt, finetune_epochs, verbose=verbose)
    rows = []
    totals = {"csr": 0, "relative": 0, "huffman": 0}
    fp32 = model_bytes(m)
    weight_ids = set()
    for name, layer in weight_layers(m):
        p = layer.weight
        weight_ids.add(id(p))
        t = p.find_transform(KMeansQuant)
        w_in = _before(p, t)
        db = conv_diff_bits if p.ndim == 4 else diff_bits
        s = sparse_size(w_in, t.codes(w_in), bits, db)
        rows.append({"layer": name, "size": int(p.size), "nnz": s["nnz"], "entries": s["entries"],
                     "density": s["nnz"] / p.size, **{k: s[k] for k in totals}})
        for k in totals:
            totals[k] += s[k]
    other = 0
    for _, p in m.named_parameters():
        if id(p) not in weight_ids:
            other += math.ceil(p.size * bias_bits / 8)
    for k in totals:
        totals[k] += other
    report = {"bits": bits, "top1_pruned": top1_pruned, "top1": evaluate(m, images, labels) if images is not None
              else None, "fp32_bytes": int(fp32), "bytes": totals, "other_bytes": other,
              "compression": {k: fp32 / v for k, v in totals.items()}, "layers": rows}
    return m, report


def _before(p, t):
    """The value a transform receives: the parameter through every transform before ``t``."""
    from ..tensor import no_grad
    out = Tensor(p.data)
    with no_grad():
        for tr in p.transforms:
            if tr is t:
                break
            out = tr(out)
    return out.data
