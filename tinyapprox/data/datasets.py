"""Load the image-classification datasets: bundled Fashion-MNIST and user-supplied MNIST.

Where the files are looked for, in order (first hit wins):

1. ``path=`` given to :func:`load` (the four files directly in it, or in ``path/<name>/``);
2. ``$TINYAPPROX_DATA/<name>/`` if the environment variable is set and that directory exists;
3. the installed package ``tinyapprox.bundled_data`` (the repository's top-level ``data/``,
   shipped by ``pip install``);
4. the top-level ``data/`` directory of a source checkout.

Each dataset directory holds the four standard IDX files, gzip-compressed (``.gz``) or raw:
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``. Provenance and checksums of the bundled copy are in
``data/README.md``.
"""
import functools
import hashlib
import importlib.resources
import os
import pathlib

import numpy as np

from .idx import read_idx

__all__ = ["BUNDLED_SHA256", "ChecksumError", "CLASS_NAMES", "DATASETS", "FILE_NAMES", "ENV_VAR", "load", "data_dir",
           "bundled_data_dir", "candidate_dirs", "clear_cache"]

ENV_VAR = "TINYAPPROX_DATA"

#: Split part -> standard IDX file name (without the optional ``.gz``).
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: Dataset name -> True if a copy ships with tinyapprox.
DATASETS = {"fashion-mnist": True, "mnist": False}

#: Dataset name -> class names indexed by label.
CLASS_NAMES = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "mnist": tuple(str(d) for d in range(10)),
}

_IMAGE_HW = (28, 28)

#: SHA-256 of the bundled ``.gz`` files (as listed in ``data/README.md``), checked on first load.
BUNDLED_SHA256 = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    },
}


class ChecksumError(ValueError):
    """A bundled data file does not have the SHA-256 listed in ``data/README.md``."""


def _check_bundled(path):
    """Raise ``ChecksumError`` if ``path`` is a bundled file whose SHA-256 is not the listed one."""
    root = bundled_data_dir()
    path = pathlib.Path(path)
    if root is None:
        return
    try:
        name = path.resolve().parent.name
        if path.resolve().parent.parent != pathlib.Path(root).resolve():
            return
    except OSError:
        return
    expected = BUNDLED_SHA256.get(name, {}).get(path.name)
    if expected is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ChecksumError(f"load: the bundled file {path} is damaged: its SHA-256 is {digest.hexdigest()}, "
                            f"expected {expected} (data/README.md); reinstall tinyapprox or restore the file")


def bundled_data_dir():
    """Return the directory of the bundled datasets as a ``pathlib.Path``, or None.

    Tries the installed package ``tinyapprox.bundled_data`` first, then the top-level
    ``data/`` of a source checkout next to this package.
    """
    try:
        root = importlib.resources.files("tinyapprox.bundled_data")
        if isinstance(root, pathlib.Path) and root.is_dir():
            return root
    except (ImportError, TypeError, ValueError, AttributeError):
        pass
    source_tree = pathlib.Path(__file__).resolve().parents[2] / "data"
    return source_tree if source_tree.is_dir() else None


def _find_file(directory, stem):
    for candidate in (directory / stem, directory / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _has_all_files(directory):
    return all(_find_file(directory, stem) is not None for stem in FILE_NAMES.values())


def _check_name(name):
    if name not in DATASETS:
        raise ValueError(f"load: unknown dataset {name!r}; expected one of {sorted(DATASETS)}")


def candidate_dirs(name, path=None):
    """Return the directories that :func:`data_dir` would try for ``name``, in order.

    Args:
        name: dataset name, a key of ``DATASETS``.
        path: optional user directory (str or os.PathLike).

    Returns:
        list of ``pathlib.Path`` (they need not exist).
    """
    _check_name(name)
    dirs = []
    if path is not None:
        p = pathlib.Path(path)
        dirs += [p, p / name]
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(pathlib.Path(env) / name)
    if DATASETS[name]:
        root = bundled_data_dir()
        if root is not None:
            dirs.append(root / name)
    return dirs


def _missing_message(name, tried):
    files = ", ".join(f"{stem}[.gz]" for stem in FILE_NAMES.values())
    where = (f"pass path=DIR with the files directly in DIR, or set {ENV_VAR} so that "
             f"${ENV_VAR}/{name}/ holds them")
    not_bundled = "" if DATASETS[name] else f"{name} is not bundled with tinyapprox. "
    looked = ", ".join(str(d) for d in tried) or "(no directory: path=None and $" + ENV_VAR + " unset)"
    return (f"load({name!r}): {not_bundled}Could not find the four IDX files {files}. "
            f"To use your own copy, {where}. Looked in: {looked}")


def data_dir(name, path=None):
    """Return the directory holding the four IDX files of dataset ``name``.

    Args:
        name: ``"fashion-mnist"`` or ``"mnist"``.
        path: optional directory (str or os.PathLike) holding the files directly or in
            ``path/<name>/``. If given it must contain them: no fallback is tried.

    Returns:
        ``pathlib.Path`` of a directory in which all four files exist (each raw or ``.gz``).

    Raises:
        ValueError: unknown dataset name.
        FileNotFoundError: no candidate directory holds all four files; the message
            lists the exact file names and where they are expected. A
            ``$TINYAPPROX_DATA/<name>/`` directory that exists but is incomplete is an
            error too, rather than silently falling back to the bundled copy.
    """
    _check_name(name)
    if path is not None:
        tried = candidate_dirs(name, path)[:2]
        for d in tried:
            if d.is_dir() and _has_all_files(d):
                return d
        raise FileNotFoundError(_missing_message(name, tried))
    tried = []
    for d in candidate_dirs(name):
        tried.append(d)
        if d.is_dir():
            if _has_all_files(d):
                return d
            raise FileNotFoundError(_missing_message(name, tried))
    raise FileNotFoundError(_missing_message(name, tried))


def _file_key(p):
    st = p.stat()
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_split(images_key, labels_key, num_classes):
    """Decode one split and return read-only (images uint8 (N,28,28), labels int64 (N,))."""
    images_path, labels_path = images_key[0], labels_key[0]
    _check_bundled(images_path)
    _check_bundled(labels_path)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != _IMAGE_HW:
        raise ValueError(f"load: {images_path}: expected uint8 images of shape (N, 28, 28), "
                         f"found {images.dtype} of shape {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "ui":
        raise ValueError(f"load: {labels_path}: expected 1-D integer labels, "
                         f"found {labels.dtype} of shape {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"load: {labels_path} holds {labels.shape[0]} labels but "
                         f"{images_path} holds {images.shape[0]} images; expected equal counts")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"load: {labels_path}: expected labels in [0, {num_classes - 1}], "
                         f"found values in [{labels.min()}, {labels.max()}]")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def clear_cache():
    """Forget the decoded arrays kept by :func:`load` (they are re-read on the next call)."""
    _read_split.cache_clear()


def load(name, path=None, limit=None):
    """Load a dataset as NumPy arrays.

    Args:
        name: ``"fashion-mnist"`` (bundled) or ``"mnist"`` (supply the files yourself via
            ``path=`` or ``$TINYAPPROX_DATA/mnist/``).
        path: optional directory with the four IDX files (see :func:`data_dir`).
        limit: optional int >= 0; keep only the first ``limit`` examples of *each* split
            (quick modes of notebooks and tests). A limit larger than a split keeps it all.

    Returns:
        ``((train_images, train_labels), (test_images, test_labels))`` where images are
        uint8 of shape (N, 28, 28) and labels int64 of shape (N,). Fashion-MNIST has
        N = 60000 / 10000 with 6000 / 1000 examples per class.

        The arrays are **read-only** (``arr.flags.writeable`` is False): decoded files are
        cached in-process, keyed on each file's resolved path, size and modification
        time, so repeated calls are fast and cannot corrupt each other. Call ``.copy()``
        if you need to modify them.

    Raises:
        ValueError: unknown name, a bad ``limit``, or files whose contents do not form a
            dataset (wrong image shape or dtype, label/image count mismatch, labels out of
            range). ``tinyapprox.data.IDXError`` (a ValueError) for damaged files.
        FileNotFoundError: the files are not where they are expected; the message says
            which file names to put where.
        TypeError: ``limit`` is not an int.
    """
    _check_name(name)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)):
            raise TypeError(f"load: expected limit to be None or an int, got {type(limit).__name__}")
        if limit < 0:
            raise ValueError(f"load: expected limit >= 0, got {limit}")
    directory = data_dir(name, path)
    files = {part: _find_file(directory, stem) for part, stem in FILE_NAMES.items()}
    num_classes = len(CLASS_NAMES[name])
    splits = []
    for split in ("train", "test"):
        images, labels = _read_split(_file_key(files[f"{split}_images"]),
                                     _file_key(files[f"{split}_labels"]), num_classes)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        splits.append((images, labels))
    return tuple(splits)
