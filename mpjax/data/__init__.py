"""Host-side data: loaders, checksummed caching, simulation and stream generators.

`load_dataset` returns a `Dataset` (real, real-subset or simulated, always labelled);
the pure stream schedules live in `mpjax.streams`. `make_stream` here is the
seed-compatible *generator* of `(x_t, y_t)` pairs, not the pure
`mpjax.streams.make_stream`.
"""

from mpjax.data.cache import ChecksumError
from mpjax.data.iterators import (
    get_cifar10_stream,
    get_covtype_stream,
    get_rotating_fashion_mnist_stream,
    get_rotating_mnist_stream,
    iterate_stream,
    make_stream,
)
from mpjax.data.loaders import DATA_SOURCES, DATASETS, Dataset, load_dataset

__all__ = [
    "ChecksumError",
    "DATASETS",
    "DATA_SOURCES",
    "Dataset",
    "get_cifar10_stream",
    "get_covtype_stream",
    "get_rotating_fashion_mnist_stream",
    "get_rotating_mnist_stream",
    "iterate_stream",
    "load_dataset",
    "make_stream",
]
