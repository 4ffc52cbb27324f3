"""DataLoader: mini-batches of NumPy arrays, with reproducible shuffling that can resume.

The order of epoch ``e`` is ``np.random.default_rng((seed, e)).permutation(N)``: it depends
only on the seed and the epoch number, not on how many batches were drawn before. To resume
a run at epoch ``e`` build the loader with the same seed and call ``set_epoch(e)``.
"""
import math

import numpy as np

__all__ = ["DataLoader", "images_to_float"]


def _check_int(name, value, minimum):
    """``int(value)``; TypeError unless an int (bool refused), ValueError if below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"DataLoader: expected {name} to be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"DataLoader: expected {name} >= {minimum}, got {value}")
    return int(value)


class DataLoader:
    """Iterate over ``(x, y)`` mini-batches of an in-memory dataset.

    Args:
        images: array of shape (N, H, W), (N, C, H, W) or (N, D); any real dtype. Kept by
            reference (read-only arrays from ``data.load`` are fine), converted per batch.
        labels: array of shape (N,) or (N, ...); integer/bool labels become int64,
            floating targets become float32.
        batch_size: int >= 1.
        shuffle: if True, each epoch visits the examples in a fresh permutation.
        seed: int >= 0 for the shuffle; None draws one from OS entropy at construction
            (readable afterwards as ``loader.seed``, so the run can still be repeated).
        drop_last: if True, drop the final batch when it is smaller than ``batch_size``.
        flatten: if True, each x is (B, C*H*W) (or (B, H*W), (B, D)) instead of NCHW.
        scale: if True, uint8 images are divided by 255 into [0, 1] (``images_to_float``).
            Other dtypes are only cast to float32.

    Yields:
        ``x``: float32, (B, 1, H, W) for (N, H, W) input, (B, C, H, W) for (N, C, H, W),
        (B, D) for (N, D), or (B, features) when ``flatten``; ``y``: int64 (B,) (or float32).

    Attributes:
        epoch: number of completed passes; incremented when an iteration runs to the end
            (breaking out of the loop early does not count). ``set_epoch(e)`` sets it.

    Raises:
        TypeError / ValueError: non-array or non-numeric inputs, image rank not 2, 3 or 4,
            different numbers of images and labels, batch_size < 1, negative seed.
    """

    def __init__(self, images, labels, batch_size=128, shuffle=False, seed=None,
                 drop_last=False, flatten=False, scale=True):
        images = images.data if _is_tensor(images) else np.asarray(images)
        labels = labels.data if _is_tensor(labels) else np.asarray(labels)
        if images.dtype.kind not in "uifb":
            raise TypeError(f"DataLoader: expected numeric images, got dtype {images.dtype}")
        if labels.dtype.kind not in "uifb":
            raise TypeError(f"DataLoader: expected numeric labels, got dtype {labels.dtype}")
        if images.ndim not in (2, 3, 4):
            raise ValueError(f"DataLoader: expected images of shape (N, H, W), (N, C, H, W) or (N, D), "
                             f"got shape {images.shape}")
        if labels.ndim < 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"DataLoader: expected labels with first dimension N={images.shape[0]} "
                             f"(one per image), got shape {labels.shape}")
        self.images = images
        self.labels = labels
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.shuffle = bool(shuffle)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy)
        self.seed = _check_int("seed", seed, 0)
        self.drop_last = bool(drop_last)
        self.flatten = bool(flatten)
        self.scale = bool(scale)
        self.epoch = 0

    def __len__(self):
        """Number of batches per epoch."""
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch):
        """Set the epoch counter (int >= 0); the next iteration uses that epoch's order."""
        self.epoch = _check_int("epoch", epoch, 0)

    def order(self, epoch=None):
        """Return the int64 (N,) visiting order for ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else _check_int("epoch", epoch, 0)
        n = self.images.shape[0]
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        return np.random.default_rng((self.seed, epoch)).permutation(n)

    def _convert(self, idx):
        """The batch at int64 indices idx (B,) as (x float32, y int64 or float32); see the class docstring."""
        x = self.images[idx]
        x = _scale(x) if self.scale else x.astype(np.float32)
        if self.flatten:
            x = x.reshape(x.shape[0], -1)
        elif x.ndim == 3:
            x = x[:, None, :, :]
        y = self.labels[idx]
        y = y.astype(np.float32) if y.dtype.kind == "f" else y.astype(np.int64)
        return x, y

    def __iter__(self):
        order = self.order()
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, order.shape[0]), self.batch_size):
            yield self._convert(order[start:start + self.batch_size])
        self.epoch += 1

    def __repr__(self):
        return (f"DataLoader(N={self.images.shape[0]}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, epoch={self.epoch}, "
                f"drop_last={self.drop_last}, flatten={self.flatten}, batches={len(self)})")


def _scale(x):
    """uint8 pixel values -> float32 in [0, 1] (divided by 255); any other dtype only cast to float32."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    return x.astype(np.float32, copy=False)


def images_to_float(images) -> np.ndarray:
    """Images as a network takes them: uint8 (N, H, W) or (N, C, H, W) -> float32 NCHW in [0, 1].

    The one place pixels are scaled (the ``DataLoader`` scales its batches the same way);
    float input is only cast to float32, (N, H, W) gains a channel axis. The result is
    C-contiguous.
    """
    x = np.asarray(images.data if _is_tensor(images) else images)
    if x.dtype.kind not in "uifb":
        raise TypeError(f"images_to_float: expected numeric images, got dtype {x.dtype}")
    x = _scale(x)
    if x.ndim == 3:
        x = x[:, None]
    return np.ascontiguousarray(x)


def _is_tensor(obj):
    """True for a Tensor-like object: not an ndarray but holding one in ``.data``."""
    return not isinstance(obj, np.ndarray) and isinstance(getattr(obj, "data", None), np.ndarray)
