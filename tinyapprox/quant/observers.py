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

from .formats import _as_float, _check_finite, channel_axis

__all__ = ["Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "PercentileObserver", "get_observer"]


class Observer:
    """Base class: ``update(x)`` then ``range() -> (low, high)``; ``reset()`` forgets.

    A subclass says how one batch is summarised (``_batch_range``) and how batches are
    combined (``_merge``); the checks and the per-channel layout live here, once.
    """

    def __init__(self, axis=None):
        self.axis = axis
        self.reset()

    def reset(self):
        """Forget every batch seen so far."""
        self.low = self.high = None
        self.count = 0

    def update(self, x) -> None:
        """Fold one batch into the range. An empty batch is skipped.

        Args:
            x: float array of any shape; with ``axis`` set, the channels lie along ``axis``.

        Raises:
            TypeError: ``x`` is not a real array.
            ValueError: NaN or inf in ``x`` (a range built on them is useless), or ``axis``
                out of range for ``x``.
        """
        op = f"{type(self).__name__}.update"
        x = _as_float(op, x).astype(np.float64, copy=False)
        if x.size == 0:
            return
        _check_finite(op, x)
        if self.axis is None:
            lo, hi = self._batch_range(x.reshape(1, -1))
            self._merge(lo[0], hi[0])
        else:
            axis = channel_axis(op, self.axis, x.ndim)
            lo, hi = self._batch_range(np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1))
            self._merge(lo, hi)
        self.count += 1

    def _batch_range(self, rows):
        """(low, high) per row of ``rows`` (C, K) float64: two (C,) float64 arrays."""
        raise NotImplementedError

    def _merge(self, lo, hi):
        raise NotImplementedError

    def range(self):
        """(low, high) seen so far: floats, or (C,) float64 arrays per channel.

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

    def _batch_range(self, rows):
        return rows.min(axis=1), rows.max(axis=1)

    def _merge(self, lo, hi):
        self.low = lo if self.low is None else np.minimum(self.low, lo)
        self.high = hi if self.high is None else np.maximum(self.high, hi)


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Exponential moving average of per-batch min and max.

    Raises:
        ValueError: ``momentum`` outside (0, 1].
    """

    def __init__(self, momentum: float = 0.1, axis=None):
        self.momentum = _checked_parameter("MovingAverageMinMaxObserver", "momentum", momentum, 0, 1)
        super().__init__(axis)

    def _merge(self, lo, hi):
        if self.low is None:
            self.low, self.high = lo, hi
        else:
            m = self.momentum
            self.low = (1 - m) * self.low + m * lo
            self.high = (1 - m) * self.high + m * hi


class PercentileObserver(Observer):
    """Mean over batches of the per-batch ``100 - p`` and ``p`` percentiles.

    Raises:
        ValueError: ``percentile`` outside (50, 100].
    """

    def __init__(self, percentile: float = 99.99, axis=None):
        self.percentile = _checked_parameter("PercentileObserver", "percentile", percentile, 50, 100)
        super().__init__(axis)

    def _batch_range(self, rows):
        lo, hi = np.percentile(rows, (100 - self.percentile, self.percentile), axis=1)
        return lo, hi

    def _merge(self, lo, hi):
        n = self.count
        self.low = lo if self.low is None else (self.low * n + lo) / (n + 1)
        self.high = hi if self.high is None else (self.high * n + hi) / (n + 1)


def _checked_parameter(op, name, value, low, high):
    """``value`` as a float after checking ``low < value <= high``.

    Raises:
        ValueError: ``value`` is not a number in (low, high].
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not low < v <= high:
        raise ValueError(f"{op}: {name} must lie in ({low}, {high}], got {value!r}")
    return v


_OBSERVERS = {"minmax": MinMaxObserver, "moving_average": MovingAverageMinMaxObserver,
              "percentile": PercentileObserver}


def get_observer(name: str, **kwargs) -> Observer:
    """An observer by name: ``minmax``, ``moving_average`` or ``percentile`` (an ``Observer`` passes through).

    Raises:
        ValueError: unknown name.
    """
    if isinstance(name, Observer):
        return name
    try:
        return _OBSERVERS[name](**kwargs)
    except KeyError:
        raise ValueError(f"quant: unknown observer {name!r}; expected one of {sorted(_OBSERVERS)}") from None
