"""mpjax.lbfgs against a dense BFGS inverse built with plain NumPy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import lbfgs

D, M = 7, 4


def _dense_h(pairs, gamma, d):
    """H from H_0 = gamma I and the BFGS inverse update, oldest pair first (N&W 6.17)."""
    h = gamma * np.eye(d)
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        v = np.eye(d) - rho * np.outer(y, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    return h


def _filled(pairs, tag_step=None):
    """A float64 memory (M, D) after pushing ``pairs`` in order; pair i tagged ``tag_step * i``."""
    mem = lbfgs.init(M, D, jnp.float64)
    for i, (s, y) in enumerate(pairs):
        tag = {} if tag_step is None else {"tag": tag_step * i}
        mem, _ = lbfgs.push(mem, jnp.asarray(s), jnp.asarray(y), **tag)
    return mem


def _random_pairs(rng, n, d):
    """Pairs with positive curvature: y = A s for a random SPD A (plus noise that keeps s.y > 0)."""
    a = rng.normal(size=(d, d))
    a = a @ a.T + 0.5 * np.eye(d)
    out = []
    for _ in range(n):
        s = rng.normal(size=d)
        out.append((s, a @ s))
    return out


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("n_pushed", list(range(0, 2 * M + 2)))
def test_two_loop_matches_dense_bfgs_at_every_head(n_pushed):
    rng = np.random.default_rng(n_pushed)
    pairs = _random_pairs(rng, n_pushed, D)
    mem = lbfgs.init(M, D, jnp.float64)
    for i, (s, y) in enumerate(pairs):
        mem, ok = lbfgs.push(mem, jnp.asarray(s), jnp.asarray(y), tag=i)
        assert bool(ok)
    kept = pairs[-M:] if pairs else []
    assert int(mem.head) == n_pushed % M
    assert int(mem.size) == len(kept)
    gamma = float(lbfgs.initial_scale(mem))
    if kept:
        s, y = kept[-1]
        np.testing.assert_allclose(gamma, (s @ y) / (y @ y), rtol=1e-12)
    else:
        assert gamma == 1.0
    h = _dense_h(kept, gamma, D)
    g = rng.normal(size=D)
    np.testing.assert_allclose(np.asarray(lbfgs.two_loop(mem, jnp.asarray(g))), h @ g, rtol=1e-9)

    # Eigenvalue bounds of H from the compact form, against the dense matrix.
    c, big_c = lbfgs.eigen_bounds(mem)
    eig = np.linalg.eigvalsh(h)
    np.testing.assert_allclose([float(c), float(big_c)], [eig.min(), eig.max()], rtol=1e-7)


@pytest.mark.usefixtures("x64")
def test_eigen_bounds_small_dim_path_and_wide_path_agree_with_dense():
    # d <= 2m takes the dense branch; d > 2m the QR branch. Both vs eigvalsh of dense H.
    for d, m in [(3, 4), (20, 3)]:
        rng = np.random.default_rng(d)
        pairs = _random_pairs(rng, m + 1, d)
        mem = lbfgs.init(m, d, jnp.float64)
        for s, y in pairs:
            mem, _ = lbfgs.push(mem, jnp.asarray(s), jnp.asarray(y))
        gamma = float(lbfgs.initial_scale(mem))
        eig = np.linalg.eigvalsh(_dense_h(pairs[-m:], gamma, d))
        c, big_c = lbfgs.eigen_bounds(mem)
        np.testing.assert_allclose([float(c), float(big_c)], [eig.min(), eig.max()], rtol=1e-7)


def test_empty_memory_is_scaled_identity_and_bounds_are_one():
    mem = lbfgs.init(M, D)
    g = jnp.arange(D, dtype=jnp.float32)
    np.testing.assert_array_equal(lbfgs.two_loop(mem, g), g)
    c, big_c = lbfgs.eigen_bounds(mem)
    assert float(c) == pytest.approx(1.0) and float(big_c) == pytest.approx(1.0)


def test_skipped_pair_leaves_memory_unchanged():
    rng = np.random.default_rng(0)
    mem = lbfgs.init(M, D)
    s, y = _random_pairs(rng, 1, D)[0]
    mem, ok = lbfgs.push(mem, jnp.asarray(s, jnp.float32), jnp.asarray(y, jnp.float32))
    assert bool(ok)
    v = rng.normal(size=D)
    orthogonal = v - (v @ s) / (s @ s) * s  # zero curvature, nudged slightly negative
    for bad_y in (-np.asarray(s), np.zeros(D), orthogonal - 1e-3 * s):
        before = mem
        after, ok = lbfgs.push(mem, jnp.asarray(s, jnp.float32), jnp.asarray(bad_y, jnp.float32))
        assert not bool(ok)
        jax.tree_util.tree_map(np.testing.assert_array_equal, after, before)


@pytest.mark.usefixtures("x64")
def test_purge_removes_exactly_the_tagged_pairs():
    rng = np.random.default_rng(3)
    pairs = _random_pairs(rng, M, D)
    mem = _filled(pairs, tag_step=1)
    purged = lbfgs.purge(mem, 1)
    assert int(purged.size) == M - 1
    remaining = [p for i, p in enumerate(pairs) if i != 1]
    gamma = float(lbfgs.initial_scale(purged))
    g = rng.normal(size=D)
    np.testing.assert_allclose(
        np.asarray(lbfgs.two_loop(purged, jnp.asarray(g))),
        _dense_h(remaining, gamma, D) @ g,
        rtol=1e-9,
    )
    # Purging the newest pair moves gamma to the next newest valid pair.
    purged_newest = lbfgs.purge(mem, M - 1)
    s, y = pairs[M - 2]
    np.testing.assert_allclose(float(lbfgs.initial_scale(purged_newest)), (s @ y) / (y @ y))
    # Tag -1 (no sample) purges nothing.
    jax.tree_util.tree_map(np.testing.assert_array_equal, lbfgs.purge(mem, -1), mem)


def test_two_loop_is_jittable_and_vmappable():
    rng = np.random.default_rng(5)
    mem = lbfgs.init(M, D)
    for s, y in _random_pairs(rng, 3, D):
        mem, _ = lbfgs.push(mem, jnp.asarray(s, jnp.float32), jnp.asarray(y, jnp.float32))
    gs = jnp.asarray(rng.normal(size=(5, D)), jnp.float32)
    batched = jax.jit(jax.vmap(lbfgs.two_loop, in_axes=(None, 0)))(mem, gs)
    single = jnp.stack([lbfgs.two_loop(mem, g) for g in gs])
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)


def test_cautious_rule_skips_pairs_of_low_curvature_ratio():
    s = jnp.asarray([1.0, 0.0, 0.0])
    mem = lbfgs.init(2, 3)
    low = 0.05 * s  # s.y / |s|^2 = 0.05: passes the cosine rule, fails mu = 0.1
    kept, ok = lbfgs.push(mem, s, low, min_curvature=0.0)
    assert bool(ok) and int(kept.size) == 1
    skipped, ok = lbfgs.push(mem, s, low, min_curvature=0.1)
    assert not bool(ok)
    jax.tree_util.tree_map(np.testing.assert_array_equal, skipped, mem)
    high, ok = lbfgs.push(mem, s, 0.2 * s, min_curvature=0.1)
    assert bool(ok) and float(lbfgs.initial_scale(high)) == pytest.approx(5.0)  # gamma = s.y/y.y <= 1/mu


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("n_pushed", [0, 2, M + 3])
def test_two_loop_on_rows_equals_dense_h_per_row(n_pushed):
    rng = np.random.default_rng(40 + n_pushed)
    pairs = _random_pairs(rng, n_pushed, D)
    mem = _filled(pairs)
    h = _dense_h(pairs[-M:], float(lbfgs.initial_scale(mem)), D)
    g = rng.normal(size=(3, D))
    np.testing.assert_allclose(np.asarray(lbfgs.two_loop(mem, jnp.asarray(g))), g @ h.T, rtol=1e-9, atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_purge_since_empties_the_tagged_pair_and_newer_ones():
    rng = np.random.default_rng(4)
    pairs = _random_pairs(rng, M, D)
    mem = _filled(pairs, tag_step=10)
    cut = lbfgs.purge_since(mem, 15)  # keeps tags 0 and 10
    assert sorted(int(t) for t in np.asarray(cut.tag) if t >= 0) == [0, 10] and int(cut.size) == 2
    gamma = float(lbfgs.initial_scale(cut))
    np.testing.assert_allclose(gamma, (pairs[1][0] @ pairs[1][1]) / (pairs[1][1] @ pairs[1][1]))
    g = rng.normal(size=D)
    np.testing.assert_allclose(np.asarray(lbfgs.two_loop(cut, jnp.asarray(g))), _dense_h(pairs[:2], gamma, D) @ g,
                               rtol=1e-9)
    assert int(lbfgs.purge_since(mem, -1).size) == 0


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("n_pushed", list(range(0, 2 * M + 2)))
def test_compact_inverse_equals_dense_bfgs_at_every_head(n_pushed):
    rng = np.random.default_rng(100 + n_pushed)
    pairs = _random_pairs(rng, n_pushed, D)
    mem = _filled(pairs)
    h = _dense_h(pairs[-M:], float(lbfgs.initial_scale(mem)), D)
    ci = lbfgs.compact_inverse(mem)
    g = rng.normal(size=(3, D))
    np.testing.assert_allclose(np.asarray(lbfgs.apply_inverse(ci, jnp.asarray(g))), g @ h.T, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(lbfgs.apply_inverse(ci, jnp.asarray(g[0]))), h @ g[0], rtol=1e-9,
                               atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_compact_inverse_with_purged_slots_equals_dense_bfgs_of_the_rest():
    rng = np.random.default_rng(7)
    pairs = _random_pairs(rng, M + 2, D)
    mem = _filled(pairs, tag_step=1)
    for tag in (3, 4):  # two middle pairs of the ring
        mem = lbfgs.purge(mem, tag)
    rest = [p for i, p in enumerate(pairs) if i >= 2 and i not in (3, 4)]
    h = _dense_h(rest, float(lbfgs.initial_scale(mem)), D)
    g = rng.normal(size=D)
    np.testing.assert_allclose(np.asarray(lbfgs.apply_inverse(lbfgs.compact_inverse(mem), jnp.asarray(g))), h @ g,
                               rtol=1e-9)
    np.testing.assert_allclose(np.asarray(lbfgs.two_loop(mem, jnp.asarray(g))), h @ g, rtol=1e-9)
