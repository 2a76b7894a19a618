"""scan_remat against the plain lax.scan: values, metagradients, levels, memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from mpjax.influence import metagrad
from mpjax.influence.remat import balanced_levels, check_levels, scan_remat
from tests.influence import _fixtures as fx
from tests.utils import _numeric_leaves

T = 60
# Every kind of setting: plain, one level (exact / padded), 2 and 3 levels (exact / padded), deep, trivial outer.
LEVELS = [(T,), (64,), (6, 10), (7, 9), (3, 4, 5), (2, 2, 2, 2, 2, 2), (1, 60)]


def _run(lrn, state, x, y, order, weights, levels):
    return metagrad.train_weighted(lrn, state, x, y, order, weights, levels=levels)


def _value_and_grad(lrn, state, x, y, tx, ty, order, levels):
    """``((final state, per-step losses), d sum(phi) / d weights)`` in one compile."""

    def phi(w):
        final, losses = _run(lrn, state, x, y, order, w, levels)
        return jnp.sum(metagrad.target_losses(lrn, final, tx, ty)), (final, losses)

    (_, out), grad = jax.jit(jax.value_and_grad(phi, has_aux=True))(jnp.ones(x.shape[0]))
    return out, grad


@pytest.mark.parametrize("name, settings", [("sgd", LEVELS), ("rls", [(64,), (7, 9), (3, 4, 5), (2, 2, 2, 2, 2, 2)]),
                                            pytest.param("rls", LEVELS, marks=pytest.mark.slow),
                                            pytest.param("adagrad", LEVELS, marks=pytest.mark.slow),
                                            pytest.param("ons", LEVELS, marks=pytest.mark.slow)])
def test_bit_identical_to_plain_scan_at_every_level_setting(x64, name, settings):
    x, y, tx, ty = fx.problem(n=40)
    lrn = fx.learner(name)
    state = fx.init(lrn)
    order = jnp.asarray(np.random.default_rng(1).integers(0, 40, T), jnp.int32)
    weights = jnp.ones(40)

    def plain(w):  # the reference: lax.scan of learner.step with the same inputs
        def body(s, inp):
            row, om = inp
            return lrn.wstep(s, x[row], y[row], om)

        return lax.scan(body, state, (order, w[order]))

    ref_state, ref_loss = jax.jit(plain)(weights)
    _, ref_grad = _value_and_grad(lrn, state, x, y, tx, ty, order, None)
    assert np.abs(ref_grad).max() > 0
    for levels in settings:
        (out_state, out_loss), grad = _value_and_grad(lrn, state, x, y, tx, ty, order, levels)
        for a, b in zip(_numeric_leaves(ref_state), _numeric_leaves(out_state)):
            np.testing.assert_array_equal(a, b, err_msg=f"levels={levels}")
        np.testing.assert_array_equal(ref_loss, out_loss, err_msg=f"levels={levels}")
        np.testing.assert_array_equal(ref_grad, grad, err_msg=f"levels={levels}")


@pytest.mark.parametrize("settings", [[(7, 9), (3, 4, 5)], pytest.param(LEVELS, marks=pytest.mark.slow)])
def test_memory_pair_matches_plain_scan_within_1e_8(x64, settings):
    x, y, tx, ty = fx.problem(n=40)
    lrn = fx.learner("memorypair")
    state = fx.init(lrn)
    order = jnp.asarray(np.random.default_rng(1).integers(0, 40, T), jnp.int32)
    _, ref = _value_and_grad(lrn, state, x, y, tx, ty, order, None)
    for levels in settings:
        _, got = _value_and_grad(lrn, state, x, y, tx, ty, order, levels)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8 * np.abs(ref).max(), err_msg=f"levels={levels}")


def test_ys_and_padding_steps_are_no_ops():
    """A counter carry: padded steps must not advance it; ys keep exactly T entries."""
    xs = jnp.arange(10, dtype=jnp.float32)
    carry, ys = scan_remat(lambda c, x: (c + x, c * 2.0), jnp.float32(0.0), xs, (4, 3))
    assert float(carry) == 45.0
    np.testing.assert_array_equal(ys, 2.0 * np.concatenate([[0.0], np.cumsum(np.arange(9.0))]))


def test_levels_are_validated():
    xs = jnp.zeros((10,))
    body = lambda c, x: (c, x)  # noqa: E731
    with pytest.raises(ValueError, match=r"product 9 < T = 10"):
        scan_remat(body, 0.0, xs, (3, 3))
    with pytest.raises(ValueError, match="ints >= 1"):
        scan_remat(body, 0.0, xs, (0, 20))
    with pytest.raises(ValueError, match="non-empty"):
        check_levels((), 10)
    with pytest.raises(ValueError, match="positive ints"):
        check_levels("ab", 10)


@pytest.mark.parametrize("length", [1, 2, 10, 97, 1000, 50_000])
@pytest.mark.parametrize("num_levels", [1, 2, 3])
def test_balanced_levels_cover_with_little_padding(length, num_levels):
    levels = balanced_levels(length, num_levels)
    assert len(levels) == num_levels
    assert np.prod(levels) >= length
    # near-balanced: each level at most one above the ceiling of the L-th root
    root = int(np.ceil(length ** (1 / num_levels)))
    assert max(levels) <= root + 1


def test_remat_uses_far_less_temporary_memory_than_the_plain_reverse_scan(x64):
    n = 2000
    x, y, tx, ty = fx.problem(n=n)
    lrn = fx.learner("sgd")
    state = fx.init(lrn)
    order = jnp.arange(n, dtype=jnp.int32)

    def temp_bytes(levels):
        def phi(w):
            final, _ = _run(lrn, state, x, y, order, w, levels)
            return jnp.sum(metagrad.target_losses(lrn, final, tx, ty))

        compiled = jax.jit(jax.grad(phi)).lower(jnp.ones(n)).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    plain, remat = temp_bytes(None), temp_bytes(balanced_levels(n, 2))
    assert remat < 0.2 * plain, (remat, plain)
