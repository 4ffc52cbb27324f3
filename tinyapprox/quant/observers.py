"""Range observers for calibration: watch tensors go by, report a (low, high) range.

* ``MinMaxObserver``: the smallest and largest value ever seen.
* ``MovingAverageMinMaxObserver``: an exponential moving average of each batch's min and
  max (``range <- (1 - momentum) * range + momentum * batch``; the first batch sets it),
  which follows a drifting distribution during quantization-aware training.
* ``PercentileObserver``: the ``percentile``-th and ``(100 - percentile)``-th percentiles of
  each batch, averaged over batches; it ignores rare outliers, so it clips them and spends
  the grid on the bulk of the values.

``axis`` (optional) keeps one range per channel along that axis (weights, per channel).
``update`` takes an ndarray; ``range()`` returns floats, or 1-D arrays per channel.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "PercentileObserver", "get_observer"]


class Observer:
    """Base class: ``update(x)`` then ``range() -> (low, high)``; ``reset()`` forgets."""

    def __init__(self, axis=None):
        self.axis = axis
        self.reset()

    def reset(self):
        self.low = self.high = None
        self.count = 0

    def _batch_stats(self, x):
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return None
        if self.axis is None:
            return x.min(), x.max()
        axis = self.axis % x.ndim
        red = tuple(i for i in range(x.ndim) if i != axis)
        return x.min(axis=red), x.max(axis=red)

    def update(self, x) -> None:
        stats = self._batch_stats(x)
        if stats is None:
            return
        self._merge(*stats)
        self.count += 1

    def _merge(self, lo, hi):
        raise NotImplementedError

    def range(self):
        """(low, high) seen so far.

        Raises:
            RuntimeError: nothing was observed yet.
        """
        if self.low is None:
            raise RuntimeError(f"{type(self).__name__}.range: no values observed yet; run calibration batches first")
        if self.axis is None:
            return float(self.low), float(self.high)
        return np.asarray(self.low, dtype=np.float64), np.asarray(self.high, dtype=np.float64)


class MinMaxObserver(Observer):
    """Running minimum and maximum."""

    def _merge(self, lo, hi):
        self.low = lo if self.low is None else np.minimum(self.low, lo)
        self.high = hi if self.high is None else np.maximum(self.high, hi)


class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of per-batch min and max."""

    def __init__(self, momentum: float = 0.1, axis=None):
        if not 0 < momentum <= 1:
            raise ValueError(f"MovingAverageMinMaxObserver: momentum must lie in (0, 1], got {momentum}")
        self.momentum = float(momentum)
        super().__init__(axis)

    def _merge(self, lo, hi):
        if self.low is None:
            self.low, self.high = lo, hi
        else:
            m = self.momentum
            self.low = (1 - m) * self.low + m * lo
            self.high = (1 - m) * self.high + m * hi


class PercentileObserver(Observer):
    """Mean over batches of the per-batch ``100 - p`` and ``p`` percentiles."""

    def __init__(self, percentile: float = 99.99, axis=None):
        if not 50 < percentile <= 100:
            raise ValueError(f"PercentileObserver: percentile must lie in (50, 100], got {percentile}")
        self.percentile = float(percentile)
        super().__init__(axis)

    def _batch_stats(self, x):
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return None
        q = (100 - self.percentile, self.percentile)
        if self.axis is None:
            lo, hi = np.percentile(x, q)
            return lo, hi
        axis = self.axis % x.ndim
        flat = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
        lo, hi = np.percentile(flat, q, axis=1)
        return lo, hi

    def _merge(self, lo, hi):
        n = self.count
        self.low = lo if self.low is None else (self.low * n + lo) / (n + 1)
        self.high = hi if self.high is None else (self.high * n + hi) / (n + 1)


_OBSERVERS = {"minmax": MinMaxObserver, "moving_average": MovingAverageMinMaxObserver,
              "percentile": PercentileObserver}


def get_observer(name: str, **kwargs) -> Observer:
    """An observer by name: ``minmax``, ``moving_average`` or ``percentile``."""
    if isinstance(name, Observer):
        return name
    try:
        return _OBSERVERS[name](**kwargs)
    except KeyError:
        raise ValueError(f"quant: unknown observer {name!r}; expected one of {sorted(_OBSERVERS)}") from None
