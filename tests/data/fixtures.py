"""Small fixture files in the canonical formats, written independently of the parsers."""

import gzip
import hashlib
import io
import pathlib
import struct
import tarfile

import numpy as np

__all__ = ["sha256", "write_cifar10", "write_covtype", "write_mnist"]


def sha256(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _write_idx(path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def write_mnist(folder, n_train=300, n_test=100, seed=0):
    """Writes the four MNIST-format IDX .gz files (MNIST's and Fashion-MNIST's names are the
    same); returns (images u8[n,28,28], labels u8[n])."""
    rng = np.random.default_rng(seed)
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x = rng.integers(0, 256, (n_train + n_test, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n_train + n_test).astype(np.uint8)
    _write_idx(folder / "train-images-idx3-ubyte.gz", x[:n_train])
    _write_idx(folder / "train-labels-idx1-ubyte.gz", y[:n_train])
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", x[n_train:])
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", y[n_train:])
    return x, y


def write_cifar10(folder, per_batch=40, seed=0):
    """Writes cifar-10-binary.tar.gz (5 train batches + test); returns (u8[n,32,32,3], u8[n])."""
    rng = np.random.default_rng(seed)
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = 6 * per_batch
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    with tarfile.open(folder / "cifar-10-binary.tar.gz", "w:gz") as tar:
        for b, name in enumerate(names):
            sl = slice(b * per_batch, (b + 1) * per_batch)
            recs = [bytes([y[i]]) + x[i].transpose(2, 0, 1).tobytes() for i in range(n)[sl]]
            data = b"".join(recs)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return x, y


def write_covtype(folder, n=300, seed=0):
    """Writes covtype.data.gz; returns (features i64[n,54], classes i64[n] in 1..7)."""
    rng = np.random.default_rng(seed)
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cont = rng.integers(0, 4000, (n, 10))
    wild = np.eye(4, dtype=np.int64)[rng.integers(0, 4, n)]
    soil = np.eye(40, dtype=np.int64)[rng.integers(0, 40, n)]
    feats = np.concatenate([cont, wild, soil], axis=1)
    cls = rng.integers(1, 8, n)
    lines = "\n".join(",".join(map(str, row)) for row in np.column_stack([feats, cls])) + "\n"
    with gzip.open(folder / "covtype.data.gz", "wb") as f:
        f.write(lines.encode())
    return feats, cls
