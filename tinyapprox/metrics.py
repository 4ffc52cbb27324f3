"""Classification metrics: top-k accuracy, zero-one loss, AccLoss, confusion matrix.

Inputs are NumPy arrays or objects with a ``.data`` ndarray (a ``tinyapprox.Tensor``).
Accuracies are **fractions** in [0, 1]; ``acc_loss`` is a difference of fractions, and
``to_pp`` / ``format_acc_loss`` convert it to percentage points for reports.

Ties in the logits are resolved **against** the sample (pessimistically). A sample counts
as correct at top-k when fewer than k *other* classes score greater than *or equal to* its
true class (the rule lives in ``functional.topk_correct``; ``train.fit`` and
``functional.zero_one_loss`` use it too)::

    rank = #{c != label : logits[c] >= logits[label]}      correct  <=>  rank < k

So a network whose outputs are all equal (for example one whose weights were pruned
to zero) scores 0 at top-1, not 100%, and top-k accuracy is non-decreasing in k and
equals 1 at k = C. ``confusion_matrix`` needs a single predicted class per sample and uses
``argmax``, which breaks ties towards the lowest class index; with tied logits its trace
can therefore exceed ``accuracy * N``.
"""
import numpy as np

from . import functional as F

__all__ = ["accuracy", "topk_accuracy", "zero_one_loss", "acc_loss", "to_pp", "format_acc_loss",
           "confusion_matrix"]


def _as_array(x):
    """Return ``x`` as an ndarray, unwrapping a Tensor-like ``.data`` attribute."""
    if isinstance(x, np.ndarray):
        return x
    data = getattr(x, "data", None)
    if isinstance(data, np.ndarray):
        return data
    return np.asarray(x)


def _check_labels(op, labels, n):
    """Labels as int64 (N,); TypeError unless 1-D integer, ValueError unless exactly ``n`` of them."""
    labels = _as_array(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "ui":
        raise TypeError(f"{op}: expected labels as a 1-D integer array, got {labels.dtype} of shape {labels.shape}")
    if labels.shape[0] != n:
        raise ValueError(f"{op}: expected {n} labels (one per sample), got {labels.shape[0]}")
    return labels.astype(np.int64)


def _check_logits(op, logits, labels):
    """Validated (logits (N, C) real without NaN, labels int64 (N,) in [0, C)); ValueError/TypeError otherwise."""
    logits = _as_array(logits)
    if logits.ndim != 2 or logits.dtype.kind not in "uif":
        raise ValueError(f"{op}: expected logits of shape (N, C) with a real dtype, "
                         f"got {logits.dtype} of shape {logits.shape}")
    n, c = logits.shape
    if c < 1:
        raise ValueError(f"{op}: expected at least one class, got logits of shape {logits.shape}")
    if logits.dtype.kind == "f" and np.isnan(logits).any():
        raise ValueError(f"{op}: logits contain NaN ({int(np.isnan(logits).sum())} entries); "
                         "a NaN score cannot be ranked")
    labels = _check_labels(op, labels, n)
    if labels.size and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"{op}: expected labels in [0, {c - 1}] for {c} classes, "
                         f"got values in [{labels.min()}, {labels.max()}]")
    return logits, labels


def _correct_topk(op, logits, labels, k):
    """Return a bool (N,) array: is each sample correct at top-k (pessimistic ties)?"""
    logits, labels = _check_logits(op, logits, labels)
    n, c = logits.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{op}: expected k to be an int, got {type(k).__name__}")
    if not 1 <= k <= c:
        raise ValueError(f"{op}: expected 1 <= k <= C={c}, got k={k}")
    if n == 0:
        raise ValueError(f"{op}: expected at least one sample, got logits of shape {logits.shape}")
    return F.topk_correct(logits, labels, k)


def topk_accuracy(logits, labels, k=1):
    """Fraction of samples whose true class is among the k highest-scoring classes.

    Ties count against the sample: it is correct when fewer than ``k`` other classes have a
    score ``>=`` its true class's score (see the module docstring).

    Args:
        logits: (N, C) real scores (logits or probabilities), N >= 1; NaN is refused.
        labels: (N,) integer class indices in [0, C).
        k: int with 1 <= k <= C.

    Returns:
        float in [0, 1].

    Raises:
        ValueError: wrong shapes, N = 0, N mismatch, labels out of range, NaN, k out of range.
        TypeError: non-integer labels or k.
    """
    return float(np.mean(_correct_topk("topk_accuracy", logits, labels, k)))


def accuracy(logits_or_preds, labels):
    """Top-1 accuracy, as a fraction in [0, 1].

    Args:
        logits_or_preds: (N, C) real scores (scored with ``topk_accuracy(k=1)``, ties
            pessimistic), or (N,) integer predicted classes (compared with ``==``).
        labels: (N,) integer true classes.

    Returns:
        float in [0, 1].

    Raises:
        ValueError / TypeError: as ``topk_accuracy``; for predictions, a float or
            mis-shaped prediction array, N = 0 or an N mismatch.
    """
    return float(np.mean(_correct("accuracy", logits_or_preds, labels)))


def zero_one_loss(logits_or_preds, labels):
    """Fraction of samples misclassified at top-1: ``1 - accuracy`` (same inputs and errors)."""
    return float(np.mean(~_correct("zero_one_loss", logits_or_preds, labels)))


def _correct(op, logits_or_preds, labels):
    """Bool (N,): top-1 correct, from (N, C) logits (pessimistic ties) or (N,) integer predictions."""
    x = _as_array(logits_or_preds)
    if x.ndim == 2:
        return _correct_topk(op, x, labels, 1)
    if x.ndim != 1 or x.dtype.kind not in "ui":
        raise TypeError(f"{op}: expected (N, C) logits or (N,) integer predictions, "
                        f"got {x.dtype} of shape {x.shape}")
    labels = _check_labels(op, labels, x.shape[0])
    if x.shape[0] == 0:
        raise ValueError(f"{op}: expected at least one sample, got 0 predictions")
    return x.astype(np.int64) == labels


def acc_loss(original, optimized):
    """AccLoss: accuracy of the original model minus accuracy of the optimized one.

    Both accuracies and the result are fractions (0.9 means 90%); a positive result is
    accuracy lost, a negative one accuracy gained. Use ``to_pp`` for percentage points.

    Args:
        original: float in [0, 1], accuracy before pruning / quantization / binarization.
        optimized: float in [0, 1], accuracy after.

    Returns:
        float in [-1, 1].

    Raises:
        ValueError: an accuracy outside [0, 1] or not finite (a percentage such as 92.3
            passed by mistake is caught here).
        TypeError: a non-scalar argument.
    """
    vals = []
    for name, v in (("original", original), ("optimized", optimized)):
        arr = _as_array(v)
        if arr.ndim != 0 or arr.dtype.kind not in "uifb":
            raise TypeError(f"acc_loss: expected {name} to be a real scalar accuracy, got {arr.dtype} "
                            f"of shape {arr.shape}")
        f = float(arr)
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"acc_loss: expected {name} accuracy as a fraction in [0, 1], got {f}")
        vals.append(f)
    return vals[0] - vals[1]


def to_pp(fraction_difference):
    """Convert a difference of fractions (e.g. ``acc_loss``) to percentage points (x 100)."""
    return 100.0 * float(fraction_difference)


def format_acc_loss(original, optimized, digits=2):
    """Return e.g. ``'AccLoss +1.25 pp (91.30% -> 90.05%)'`` for two accuracies in [0, 1]."""
    loss = acc_loss(original, optimized)
    return (f"AccLoss {to_pp(loss):+.{digits}f} pp "
            f"({100 * float(original):.{digits}f}% -> {100 * float(optimized):.{digits}f}%)")


def confusion_matrix(logits_or_preds, labels, num_classes=None):
    """Count (true class, predicted class) pairs.

    Args:
        logits_or_preds: (N, C) real scores (prediction = ``argmax``, ties to the lowest
            index) or (N,) integer predictions.
        labels: (N,) integer true classes.
        num_classes: number of classes C; optional for logits (must equal their C if
            given), required for predictions.

    Returns:
        int64 (C, C) array ``M`` with ``M[t, p]`` = number of samples of true class ``t``
        predicted as ``p`` (rows true, columns predicted; rows sum to the class counts).
        N = 0 gives all zeros.

    Raises:
        ValueError: shape mismatch, NaN logits, labels or predictions outside [0, C),
            num_classes missing for predictions or disagreeing with the logits.
        TypeError: non-integer labels / predictions / num_classes.
    """
    op = "confusion_matrix"
    x = _as_array(logits_or_preds)
    if num_classes is not None and (isinstance(num_classes, bool)
                                    or not isinstance(num_classes, (int, np.integer))):
        raise TypeError(f"{op}: expected num_classes to be an int, got {type(num_classes).__name__}")
    if x.ndim == 2:
        x, labels = _check_logits(op, x, labels)
        c = x.shape[1]
        if num_classes is not None and num_classes != c:
            raise ValueError(f"{op}: num_classes={num_classes} but the logits have C={c} columns")
        preds = x.argmax(axis=1)
    else:
        if x.ndim != 1 or x.dtype.kind not in "ui":
            raise TypeError(f"{op}: expected (N, C) logits or (N,) integer predictions, "
                            f"got {x.dtype} of shape {x.shape}")
        if num_classes is None:
            raise ValueError(f"{op}: num_classes is required when passing predictions instead of logits")
        if num_classes < 1:
            raise ValueError(f"{op}: expected num_classes >= 1, got {num_classes}")
        c = int(num_classes)
        labels = _check_labels(op, labels, x.shape[0])
        preds = x.astype(np.int64)
        for name, v in (("labels", labels), ("predictions", preds)):
            if v.size and (v.min() < 0 or v.max() >= c):
                raise ValueError(f"{op}: expected {name} in [0, {c - 1}], got values in [{v.min()}, {v.max()}]")
    return np.bincount(labels * c + preds, minlength=c * c).reshape(c, c).astype(np.int64)
