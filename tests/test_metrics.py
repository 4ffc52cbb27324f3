"""Top-k accuracy (with ties), zero-one loss, AccLoss and the confusion matrix."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinyapprox import metrics

pytestmark = pytest.mark.training


class FakeTensor:
    """Stands in for tinyapprox.Tensor: anything with a ``.data`` ndarray is accepted."""

    def __init__(self, data):
        self.data = np.asarray(data)


LOGITS = np.array([
    [0.1, 0.5, 0.2, 0.0, 0.9],    # label 4: top-1
    [0.3, 0.1, 0.8, 0.7, 0.6],    # label 3: second -> top-2
    [0.9, 0.8, 0.7, 0.6, 0.5],    # label 4: last -> only top-5
    [0.2, 0.4, 0.1, 0.3, 0.0],    # label 0: third -> top-3
], dtype=np.float32)
LABELS = np.array([4, 3, 4, 0])


def test_topk_hand_computed():
    assert metrics.topk_accuracy(LOGITS, LABELS, k=1) == 0.25
    assert metrics.topk_accuracy(LOGITS, LABELS, k=2) == 0.5
    assert metrics.topk_accuracy(LOGITS, LABELS, k=3) == 0.75
    assert metrics.topk_accuracy(LOGITS, LABELS, k=4) == 0.75
    assert metrics.topk_accuracy(LOGITS, LABELS, k=5) == 1.0
    assert metrics.accuracy(LOGITS, LABELS) == 0.25
    assert metrics.zero_one_loss(LOGITS, LABELS) == 0.75


def test_ties_count_against_the_sample():
    # all scores equal: nothing is ranked first, so top-1 is 0 and only k = C succeeds
    flat = np.zeros((3, 4))
    labels = np.array([0, 1, 3])
    assert metrics.topk_accuracy(flat, labels, k=1) == 0.0
    assert metrics.topk_accuracy(flat, labels, k=3) == 0.0
    assert metrics.topk_accuracy(flat, labels, k=4) == 1.0
    # true class tied with one other class for the top: correct at k = 2, not at k = 1
    tied = np.array([[2.0, 2.0, 1.0], [5.0, 1.0, 5.0]])
    assert metrics.topk_accuracy(tied, np.array([0, 2]), k=1) == 0.0
    assert metrics.topk_accuracy(tied, np.array([0, 2]), k=2) == 1.0
    # ties below the true class do not matter
    below = np.array([[3.0, 1.0, 1.0, 1.0]])
    assert metrics.topk_accuracy(below, np.array([0]), k=1) == 1.0
    # one class strictly above, one tied: rank 2, so correct only from k = 3
    mixed = np.array([[4.0, 2.0, 2.0, 0.0]])
    assert [metrics.topk_accuracy(mixed, np.array([1]), k=k) for k in (1, 2, 3, 4)] == [0, 0, 1, 1]


def test_infinities_are_ranked():
    logits = np.array([[np.inf, 0.0], [-np.inf, -1.0]])
    assert metrics.topk_accuracy(logits, np.array([0, 1]), k=1) == 1.0


def test_accuracy_from_predictions_and_tensor_like():
    preds = np.array([1, 2, 3, 0], dtype=np.int32)
    labels = np.array([1, 2, 0, 0], dtype=np.uint8)
    assert metrics.accuracy(preds, labels) == 0.75
    assert metrics.zero_one_loss(preds, labels) == 0.25
    assert metrics.accuracy(FakeTensor(LOGITS), FakeTensor(LABELS)) == 0.25
    assert metrics.topk_accuracy(FakeTensor(LOGITS), LABELS, k=2) == 0.5


def test_acc_loss_sign_and_units():
    assert metrics.acc_loss(0.92, 0.90) == pytest.approx(0.02)        # accuracy lost: positive
    assert metrics.acc_loss(0.90, 0.92) == pytest.approx(-0.02)       # accuracy gained: negative
    assert metrics.acc_loss(0.5, 0.5) == 0.0
    assert metrics.to_pp(metrics.acc_loss(0.9130, 0.9005)) == pytest.approx(1.25)
    assert metrics.format_acc_loss(0.9130, 0.9005) == "AccLoss +1.25 pp (91.30% -> 90.05%)"
    assert metrics.format_acc_loss(0.5, 0.6, digits=1) == "AccLoss -10.0 pp (50.0% -> 60.0%)"


@pytest.mark.parametrize("orig, opt", [(92.3, 0.9), (0.9, -0.1), (float("nan"), 0.5), (0.5, float("inf"))])
def test_acc_loss_rejects_non_fractions(orig, opt):
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\]"):
        metrics.acc_loss(orig, opt)


def test_acc_loss_rejects_arrays():
    with pytest.raises(TypeError, match="scalar"):
        metrics.acc_loss(np.array([0.9, 0.8]), 0.5)


def test_confusion_matrix_hand_computed():
    preds = np.array([0, 1, 1, 2, 2, 2])
    labels = np.array([0, 1, 2, 2, 2, 0])
    expected = np.array([[1, 0, 1],
                         [0, 1, 0],
                         [0, 1, 2]])
    cm = metrics.confusion_matrix(preds, labels, num_classes=3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)
    np.testing.assert_array_equal(metrics.confusion_matrix(preds, labels, num_classes=4)[:3, :3], expected)
    onehot = np.eye(3)[preds]
    np.testing.assert_array_equal(metrics.confusion_matrix(onehot, labels), expected)
    np.testing.assert_array_equal(metrics.confusion_matrix(onehot, labels, num_classes=3), expected)
    assert metrics.confusion_matrix(np.zeros(0, np.int64), np.zeros(0, np.int64), 2).tolist() == [[0, 0], [0, 0]]


def test_confusion_matrix_ties_go_to_lowest_index():
    cm = metrics.confusion_matrix(np.array([[1.0, 1.0, 0.0]]), np.array([1]))
    assert cm[1].tolist() == [1, 0, 0]


@given(logits=hnp.arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 6)),
                         elements=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0])),
       data=st.data())
def test_topk_monotone_in_k_and_one_at_c(logits, data):
    n, c = logits.shape
    labels = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, c - 1)))
    accs = [metrics.topk_accuracy(logits, labels, k=k) for k in range(1, c + 1)]
    assert all(a <= b for a, b in zip(accs, accs[1:]))
    assert accs[-1] == 1.0
    assert metrics.accuracy(logits, labels) == accs[0]
    assert metrics.zero_one_loss(logits, labels) == pytest.approx(1.0 - accs[0])
    # reference: rank by a sort that breaks ties against the true class
    ref = []
    for k in range(1, c + 1):
        hits = [sum(logits[i, j] >= logits[i, labels[i]] for j in range(c) if j != labels[i]) < k
                for i in range(n)]
        ref.append(np.mean(hits))
    assert accs == pytest.approx(ref)
    cm = metrics.confusion_matrix(logits, labels)
    assert cm.sum() == n and cm.sum(axis=1).tolist() == np.bincount(labels, minlength=c).tolist()
    assert np.trace(cm) >= accs[0] * n - 1e-9       # argmax credits ties, top-1 does not


@pytest.mark.parametrize("call, err, match", [
    (lambda: metrics.topk_accuracy(LOGITS, LABELS[:3]), ValueError, "expected 4 labels"),
    (lambda: metrics.topk_accuracy(LOGITS, LABELS, k=6), ValueError, "1 <= k <= C=5"),
    (lambda: metrics.topk_accuracy(LOGITS, LABELS, k=0), ValueError, "1 <= k"),
    (lambda: metrics.topk_accuracy(LOGITS, LABELS, k=1.0), TypeError, "k to be an int"),
    (lambda: metrics.topk_accuracy(LOGITS, np.array([4, 3, 5, 0])), ValueError, r"labels in \[0, 4\]"),
    (lambda: metrics.topk_accuracy(LOGITS, np.array([4, 3, -1, 0])), ValueError, r"labels in \[0, 4\]"),
    (lambda: metrics.topk_accuracy(LOGITS, LABELS.astype(float)), TypeError, "integer"),
    (lambda: metrics.topk_accuracy(np.where(LOGITS > 0.85, np.nan, LOGITS), LABELS), ValueError, "NaN"),
    (lambda: metrics.topk_accuracy(LOGITS[0], LABELS), ValueError, r"shape \(N, C\)"),
    (lambda: metrics.topk_accuracy(np.zeros((0, 3)), np.zeros(0, int)), ValueError, "at least one sample"),
    (lambda: metrics.accuracy(np.array([0.0, 1.0]), np.array([0, 1])), TypeError, "integer predictions"),
    (lambda: metrics.accuracy(np.array([0, 1]), np.array([0, 1, 1])), ValueError, "expected 2 labels"),
    (lambda: metrics.accuracy(np.zeros(0, int), np.zeros(0, int)), ValueError, "at least one sample"),
    (lambda: metrics.zero_one_loss(LOGITS, LABELS[:2]), ValueError, "zero_one_loss"),
    (lambda: metrics.confusion_matrix(np.array([0, 1]), np.array([0, 1])), ValueError, "num_classes is required"),
    (lambda: metrics.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3), ValueError, "predictions in"),
    (lambda: metrics.confusion_matrix(np.array([0, 1]), np.array([0, 3]), 3), ValueError, "labels in"),
    (lambda: metrics.confusion_matrix(LOGITS, LABELS, num_classes=4), ValueError, "C=5"),
    (lambda: metrics.confusion_matrix(np.array([0]), np.array([0]), 1.5), TypeError, "num_classes"),
])
def test_bad_input_raises(call, err, match):
    with pytest.raises(err, match=match):
        call()
