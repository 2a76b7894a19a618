"""Tests for mpjax/streams.py: schedules, transforms, determinism, vmap."""

import functools
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import streams
from mpjax.data import load_dataset


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("rotmnist", data_source="subset", max_rows=600, image_size=14)


@pytest.fixture(scope="module")
def cov():
    return load_dataset("covtype", data_source="simulated", max_rows=700)


@functools.lru_cache(maxsize=None)
def _jitted(kind, T, num_classes, is_image, raw_dim, opts):
    return jax.jit(lambda key, labels: streams.make_stream(
        kind, key, labels, T, num_classes=num_classes, is_image=is_image, raw_dim=raw_dim,
        **dict(opts)))


def _make(kind, key, ds, T, **opts):
    """The stream for one key (jitted once per static configuration to keep tests fast)."""
    return _jitted(kind, T, ds.num_classes, ds.image_shape is not None, ds.raw.shape[1],
                   tuple(sorted(opts.items())))(key, jnp.asarray(ds.labels))


def _sha(stream):
    h = hashlib.sha256()
    for leaf in stream:
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("kind", streams.STREAMS)
def test_determinism_and_shapes(kind, cov):
    T = 1200
    a = _make(kind, jax.random.key(0), cov, T)
    b = _make(kind, jax.random.key(0), cov, T)
    c = _make(kind, jax.random.key(1), cov, T)
    assert _sha(a) == _sha(b) and _sha(a) != _sha(c)
    assert not np.array_equal(a.idx, c.idx)
    shape = (T, 8) if kind == "adaptive" else (T,)
    assert a.idx.shape == shape and a.idx.dtype == jnp.int32
    assert a.aux.shape == (T,) and a.aux.dtype == jnp.float32
    assert a.direction.shape == (54,)
    assert int(a.idx.min()) >= 0 and int(a.idx.max()) < 700


def test_iid_visits_every_index_once_per_pass(cov):
    n, T = 700, 1900  # two full passes and a partial third
    idx = np.asarray(_make("iid", jax.random.key(3), cov, T).idx)
    for p in range(2):
        np.testing.assert_array_equal(np.sort(idx[p * n:(p + 1) * n]), np.arange(n))
    assert len(set(idx[2 * n:].tolist())) == T - 2 * n  # partial pass: no repeats
    assert not np.array_equal(idx[:n], idx[n:2 * n])  # fresh permutation per pass
    short = np.asarray(_make("iid", jax.random.key(3), cov, 1200).idx)
    np.testing.assert_array_equal(short, idx[:1200])


def test_drift_schedule_and_order(mnist, cov):
    T = 1200
    s = _make("drift", jax.random.key(5), cov, T, drift_every=300, drift_step=0.25)
    t = np.arange(T)
    np.testing.assert_allclose(s.aux, (t // 300) * 0.25, rtol=1e-6)
    np.testing.assert_array_equal(s.idx, _make("iid", jax.random.key(5), cov, T).idx)
    np.testing.assert_allclose(jnp.linalg.norm(s.direction), 1.0, rtol=1e-5)
    img = _make("drift", jax.random.key(5), mnist, T)
    np.testing.assert_allclose(img.aux, (t // 1000) * 5.0)
    assert not np.any(img.direction)
    other = _make("drift", jax.random.key(6), cov, T)
    assert not np.allclose(other.direction, s.direction)


def test_drift_transform_does_not_compound(mnist, cov):
    for ds in (mnist, cov):
        s = _make("drift", jax.random.key(2), ds, 1200)
        tf = jax.jit(streams.make_transform(ds, "drift"))
        table = streams.stream_table(ds, "drift")
        assert table is ds.raw
        for t in (0, 700, 1199):
            row = table[int(s.idx[t])]
            got = tf(row, s.aux[t], s.direction)
            once = tf(row, jnp.float32((t // 1000) * (5.0 if ds.image_shape else 0.1)), s.direction)
            np.testing.assert_allclose(got, once, rtol=1e-6)
            assert float(jnp.linalg.norm(got)) <= 1.0 + 1e-6
        # Zero drift reproduces the precomputed features exactly (same scaling).
        rows = ds.raw[:20]
        x0 = jax.vmap(tf, in_axes=(0, None, None))(rows, jnp.float32(0), s.direction)
        np.testing.assert_allclose(x0, ds.x[:20], rtol=1e-5, atol=1e-7)


def test_rotation_identity_and_rot90():
    rng = np.random.default_rng(0)
    img = rng.random((9, 9)).astype(np.float32)
    np.testing.assert_allclose(streams.rotate_image(img, 0.0), img, atol=1e-6)
    np.testing.assert_allclose(streams.rotate_image(img, 90.0), np.rot90(img), atol=1e-5)
    rgb = rng.random((8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(streams.rotate_image(rgb, 90.0), np.rot90(rgb, axes=(0, 1)), atol=1e-5)
    np.testing.assert_allclose(streams.rotate_image(img, 360.0), img, atol=1e-5)


def test_tabular_shift_is_along_direction(cov):
    s = _make("drift", jax.random.key(1), cov, 1200)
    tf = streams.make_transform(cov, "drift")
    row = cov.raw[0]
    shifted = np.asarray(tf(row, jnp.float32(2.0), s.direction))
    v = np.append(row + 2.0 * np.asarray(s.direction), 1.0)
    np.testing.assert_allclose(shifted, v / max(cov.feature_scale, np.linalg.norm(v)), rtol=1e-5)


def test_adv_blocks_are_single_class(cov, mnist):
    T, block = 2000, 500
    orders = []
    for seed in range(4):
        s = _make("adv", jax.random.key(seed), mnist, T)
        lab = mnist.labels[np.asarray(s.idx)].reshape(-1, block)
        assert all(len(set(b.tolist())) == 1 for b in lab)
        classes = lab[:, 0]
        assert len(set(classes.tolist())) == T // block  # switches every block
        orders.append(tuple(classes))
    assert len(set(orders)) > 1
    # Within a class: a permutation, cycling (7 classes, some rarer than a block).
    s = _make("adv", jax.random.key(0), cov, 1200, block=200)
    idx = np.asarray(s.idx).reshape(-1, 200)
    for b in idx:
        c = cov.labels[b[0]]
        members = np.flatnonzero(cov.labels == c)
        assert np.all(cov.labels[b] == c)
        m = min(len(members), 200)
        assert len(set(b[:m].tolist())) == m


def test_adaptive_pools(cov):
    s = _make("adaptive", jax.random.key(0), cov, 1200, pool_size=5)
    assert s.idx.shape == (1200, 5)
    assert int(s.idx.min()) >= 0 and int(s.idx.max()) < 700
    assert streams.make_transform(cov, "adaptive") is None
    assert streams.stream_table(cov, "adaptive") is cov.x


@pytest.mark.parametrize("kind", streams.STREAMS)
def test_vmap_over_keys_matches_single(kind, cov):
    keys = jax.random.split(jax.random.key(9), 3)
    labels = jnp.asarray(cov.labels)
    fn = jax.jit(jax.vmap(lambda k, lab: streams.make_stream(
        kind, k, lab, 1200, num_classes=7, is_image=False, raw_dim=54), in_axes=(0, None)))
    batched = fn(keys, labels)
    for i in range(3):
        single = _make(kind, keys[i], cov, 1200)
        np.testing.assert_array_equal(batched.idx[i], single.idx)  # indices: exact
        np.testing.assert_allclose(batched.aux[i], single.aux, rtol=1e-6)
        np.testing.assert_allclose(batched.direction[i], single.direction, rtol=1e-6, atol=1e-7)


def test_bad_arguments(cov):
    with pytest.raises(ValueError, match="iid, drift, adv, adaptive"):
        _make("random", jax.random.key(0), cov, 1200)
    with pytest.raises(ValueError, match="unknown stream options"):
        _make("iid", jax.random.key(0), cov, 1200, blocks=3)
    with pytest.raises(ValueError, match="iid, drift"):
        streams.make_transform(cov, "nope")


@pytest.mark.parametrize("kind", streams.STREAMS)
@pytest.mark.parametrize("ds_name", ["cov", "mnist"])
def test_stream_does_not_depend_on_precision(kind, ds_name, request):
    """A float64 run (jax_enable_x64) sees the same rows, transform amounts and drift direction."""
    ds = request.getfixturevalue(ds_name)

    def build():
        return jax.device_get(streams.make_stream(
            kind, jax.random.key(5), jnp.asarray(ds.labels, jnp.int32), 1500, num_classes=ds.num_classes,
            is_image=ds.image_shape is not None, raw_dim=ds.raw.shape[1]))

    a = build()
    with jax.enable_x64(True):
        b = build()
    for name, u, v in zip(streams.Stream._fields, a, b):
        assert u.dtype == v.dtype, name
        np.testing.assert_array_equal(u, v, err_msg=name)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 16, 17, 100, 1000, 4097])
def test_keyed_permutation_is_a_bijection_of_range_size(size):
    for seed in range(3):
        keys = jax.random.bits(jax.random.key(seed), (4,), jnp.uint32)
        out = np.asarray(streams.keyed_permutation(keys, jnp.full((size,), size, jnp.int32),
                                                   jnp.arange(size, dtype=jnp.int32)))
        np.testing.assert_array_equal(np.sort(out), np.arange(size))


def test_keyed_permutation_looks_uniform():
    """Over 4,000 keys, the image of position 0 in range(50) is uniform (chi-square) and
    consecutive positions are not correlated (the mean gap matches a random permutation's)."""
    size, draws = 50, 4000
    keys = jax.random.bits(jax.random.key(1), (draws, 4), jnp.uint32)
    perms = np.asarray(jax.vmap(lambda k: streams.keyed_permutation(
        k, jnp.full((size,), size, jnp.int32), jnp.arange(size, dtype=jnp.int32)))(keys))
    counts = np.bincount(perms[:, 0], minlength=size)
    chi2 = ((counts - draws / size) ** 2 / (draws / size)).sum()
    assert chi2 < 100  # 49 degrees of freedom: P(chi2 > 100) < 3e-5
    gaps = np.abs(np.diff(perms, axis=1)).mean()
    assert abs(gaps - (size + 1) / 3) < 0.5  # E|U - V| for distinct uniform draws = (n + 1) / 3
    # Different keys give different permutations.
    assert len({tuple(p) for p in perms[:100]}) == 100
