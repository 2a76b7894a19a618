"""mpjax.privacy.calibrator against NumPy closed forms over short random streams."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import lbfgs
from mpjax.privacy import calibrator as cal
from tests.utils import assert_same_struct

DIM = 6


def _stream(seed, T, bad=()):
    rng = np.random.default_rng(seed)
    grads = rng.standard_t(df=3, size=(T, DIM)).astype(np.float32)  # heavy tails: a few extreme norms
    for t in bad:
        grads[t, 0] = np.nan if t % 2 else np.inf
    thetas = np.cumsum(rng.normal(scale=0.1, size=(T, DIM)), axis=0).astype(np.float32) + 0.3
    return grads, thetas


def _observe_all(stats, grads, thetas):
    def body(s, gt):
        return cal.observe(s, *gt), None

    return jax.lax.scan(body, stats, (jnp.asarray(grads), jnp.asarray(thetas)))[0]


_observe_jit = jax.jit(_observe_all)
_finalize = jax.jit(cal.finalize, static_argnames=("quantile", "bound", "min_points", "default_G", "default_D"))
_push = jax.jit(lbfgs.push)


def _memory(seed, n_pairs, scale=1.0, m=4):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(DIM, DIM))
    a = a @ a.T / DIM + 0.2 * np.eye(DIM)
    mem = lbfgs.init(m, DIM)
    for _ in range(n_pairs):
        s = rng.normal(size=DIM)
        mem, _ = _push(mem, jnp.asarray(scale * s, jnp.float32), jnp.asarray(a @ s, jnp.float32))
    return mem


@pytest.mark.parametrize("T,window", [(50, 64), (150, 64)])  # without and with ring wraparound
def test_G_and_D_match_numpy(T, window):
    grads, thetas = _stream(T, T, bad=(5, 17, T - 2, T - 9))
    stats = _observe_jit(cal.init(DIM, window), grads, thetas)
    calib = _finalize(stats, lbfgs.init(4, DIM), 0.1, quantile=0.9, min_points=10)
    norms = np.linalg.norm(grads.astype(np.float64), axis=1)[-window:]  # ring keeps the last `window`
    norms = norms[np.isfinite(norms)]
    np.testing.assert_allclose(float(calib.G), np.quantile(norms, 0.9), rtol=1e-5)
    assert int(calib.n_points) == norms.size
    dists = np.linalg.norm(thetas.astype(np.float64) - thetas[0], axis=1)
    np.testing.assert_allclose(float(calib.D), dists.max(), rtol=1e-5)
    assert int(stats.count) == T and int(calib.status) == cal.STATUS_OK
    # The cap binds.
    capped = _finalize(stats, lbfgs.init(4, DIM), 0.1, D_cap=0.5 * dists.max(), min_points=10)
    np.testing.assert_allclose(float(capped.D), 0.5 * dists.max(), rtol=1e-6)


def test_observe_contract_and_jit_vs_eager():
    grads, thetas = _stream(1, 40)
    s0 = cal.init(DIM, 64)
    s1 = cal.observe(s0, grads[0], thetas[0])
    assert_same_struct(s0, s1)
    eager = _observe_all(s0, grads, thetas)
    jitted = _observe_jit(s0, grads, thetas)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(np.asarray(jitted.theta0), thetas[0])


@pytest.mark.parametrize("n_pairs", [0, 2, 7])
def test_c_C_are_the_lbfgs_eigen_bounds(n_pairs):
    mem = _memory(n_pairs, n_pairs)
    grads, thetas = _stream(2, 50)
    calib = _finalize(_observe_jit(cal.init(DIM, 64), grads, thetas), mem, 0.1)
    c, C = jax.jit(lbfgs.eigen_bounds)(mem)
    np.testing.assert_allclose([float(calib.c), float(calib.C)], [float(c), float(C)], rtol=1e-6)
    if n_pairs == 0:
        assert float(calib.c) == float(calib.C) == 1.0
    else:
        assert 0 < float(calib.c) < float(calib.C)


def _hand_stats(G, D, n=64, dtype=jnp.float32):
    """Stats whose finalize gives exactly G (all norms equal) and D."""
    return cal.CalibratorStats(
        grad_norms=jnp.full((n,), G, dtype),
        count=jnp.asarray(n, jnp.int32),
        theta0=jnp.zeros((DIM,), dtype),
        max_dist=jnp.asarray(D, dtype),
    )


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("bound", cal.BOUNDS)
def test_n_star_closed_form(bound):
    mem = _memory(3, 5)
    mem = lbfgs.LbfgsMemory(*(x.astype(jnp.float64) if x.dtype == jnp.float32 else x for x in mem))
    G, D, gamma = 1.7, 2.3, 0.05
    calib = _finalize(_hand_stats(G, D, dtype=jnp.float64), mem, gamma, bound=bound)
    c, C = float(calib.c), float(calib.C)
    k = math.sqrt(c * C) if bound == "original" else math.sqrt(C / c)
    assert int(calib.N_star) == math.ceil((G * D * k / gamma) ** 2)
    np.testing.assert_allclose(float(calib.kappa), k, rtol=1e-12)


@pytest.mark.parametrize("bound", cal.BOUNDS)
def test_n_star_positive_and_non_increasing_in_gamma(bound):
    mem = _memory(4, 6)
    stats = _hand_stats(1.0, 3.0)
    gammas = jnp.geomspace(1e-3, 10.0, 40)
    n = np.asarray(jax.jit(jax.vmap(lambda g: cal.finalize(stats, mem, g, bound=bound).N_star))(gammas))
    assert np.all(n >= 1) and np.all(np.diff(n) <= 0)
    assert n[-1] == 1 and n[0] > 1000


def test_corrected_constant_is_scale_invariant_and_original_is_not():
    """H -> aH (scale every s by a) must not change a tuned regret bound: sqrt(C/c) passes, sqrt(cC) scales by a."""
    stats = _hand_stats(1.0, 2.0)
    base = {b: _finalize(stats, _memory(5, 6), 0.1, bound=b) for b in cal.BOUNDS}
    for a in (0.1, 4.0):
        scaled = {b: _finalize(stats, _memory(5, 6, scale=a), 0.1, bound=b) for b in cal.BOUNDS}
        np.testing.assert_allclose(float(scaled["corrected"].kappa), float(base["corrected"].kappa), rtol=1e-3)
        np.testing.assert_allclose(float(scaled["original"].kappa), a * float(base["original"].kappa), rtol=1e-3)
        np.testing.assert_allclose(float(scaled["original"].c), a * float(base["original"].c), rtol=1e-3)


def test_corrected_vs_original_ordering():
    """sqrt(C/c) / sqrt(cC) = 1/c: equal iff c = 1, corrected larger iff c < 1 (NOT 'equal iff c = C')."""
    c = jnp.array([0.25, 1.0, 2.0, 3.0])
    C = jnp.array([8.0, 5.0, 2.0, 9.0])
    orig, corr = cal.kappa(c, C, "original"), cal.kappa(c, C, "corrected")
    np.testing.assert_allclose(np.asarray(corr / orig), 1.0 / np.asarray(c), rtol=1e-6)
    assert corr[0] > orig[0] and corr[1] == orig[1] and corr[3] < orig[3]
    assert corr[2] == 1.0 and orig[2] == 2.0  # c = C = 2: the two differ


def test_too_few_points_uses_documented_defaults():
    grads, thetas = _stream(6, 10)
    stats = _observe_jit(cal.init(DIM, 64), grads, thetas)
    calib = _finalize(stats, lbfgs.init(4, DIM), 0.5, min_points=32, D_cap=0.7)
    assert int(calib.status) == cal.STATUS_TOO_FEW_POINTS and int(calib.n_points) == 10
    assert float(calib.G) == 1.0 and float(calib.D) == pytest.approx(0.7)
    assert int(calib.N_star) == math.ceil((1.0 * 0.7 * 1.0 / 0.5) ** 2)
    empty = _finalize(cal.init(DIM, 64), lbfgs.init(4, DIM), 0.5)
    assert int(empty.n_points) == 0 and float(empty.G) == 1.0 and float(empty.D) == 1.0


def test_bad_static_arguments():
    with pytest.raises(ValueError, match="original, corrected"):
        cal.finalize(cal.init(DIM), lbfgs.init(4, DIM), 0.1, bound="tight")
    with pytest.raises(ValueError, match="quantile"):
        cal.finalize(cal.init(DIM), lbfgs.init(4, DIM), 0.1, quantile=1.5)
    with pytest.raises(ValueError, match="window"):
        cal.init(DIM, 0)
