"""Data: the IDX file format, the bundled Fashion-MNIST (and user-supplied MNIST), mini-batching.

    (train_x, train_y), (test_x, test_y) = data.load("fashion-mnist")   # offline, read-only arrays
    for x, y in data.DataLoader(train_x, train_y, batch_size=128, shuffle=True, seed=0):
        ...                                                              # x (B,1,28,28) float32 in [0,1]
    x = data.images_to_float(test_x)                                     # the same scaling, whole array

Only NumPy is needed here.
"""
from .datasets import (CLASS_NAMES, DATASETS, ENV_VAR, FILE_NAMES, bundled_data_dir, candidate_dirs,
                       clear_cache, data_dir, load)
from .idx import IDX_DTYPES, IDXError, read_idx, write_idx
from .loader import DataLoader, images_to_float

__all__ = ["read_idx", "write_idx", "IDXError", "IDX_DTYPES", "load", "DataLoader", "images_to_float", "CLASS_NAMES",
           "DATASETS", "FILE_NAMES", "ENV_VAR", "data_dir", "bundled_data_dir", "candidate_dirs",
           "clear_cache"]
