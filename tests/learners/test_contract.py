"""The learner protocol, checked the same way for every learner (STYLE.md, Tests)."""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from mpjax import learners
from mpjax import run as run_lib
from tests.utils import TestCase, _numeric_leaves, assert_finite, assert_same_struct, variants

NAMES = tuple(learners.LEARNERS)
D, K, N, T = 6, 3, 64, 200


class Stream(NamedTuple):
    idx: jax.Array
    aux: jax.Array
    direction: jax.Array


def _data(seed=0, n=N, d=D, k=K, scale=1.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    x = rng.normal(size=(n, d)) + np.eye(k, d)[labels] * 2
    x = scale * x / np.linalg.norm(x, axis=1, keepdims=True)
    return jnp.asarray(x, jnp.float32), jnp.asarray(np.eye(k)[labels], jnp.float32)


def _iid_stream(key, t=T, n=N, d=D):
    return Stream(jax.random.randint(key, (t,), 0, n), jnp.zeros((t,)), jnp.zeros((d,)))


class ContractTest(TestCase):
    @variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*NAMES)
    def test_step_keeps_structure_and_returns_scalar_loss(self, name):
        learner = learners.get(name)
        state = learner.init(D, jax.random.key(0))
        x, y = _data()
        step = self.variant(learner.step)
        new_state, loss = step(state, x[0], y[0, 0])
        chex.assert_shape(loss, ())
        assert_same_struct(state, new_state)
        assert_finite(new_state)

    @variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*NAMES)
    def test_multi_output_keeps_structure(self, name):
        learner = learners.multi_output(learners.get(name), K)
        state = learner.init(D, jax.random.key(0))
        x, y = _data()
        new_state, loss = self.variant(learner.step)(state, x[0], y[0])
        chex.assert_shape(loss, ())
        chex.assert_shape(learner.predict(new_state, x[1]), (K,))
        assert_same_struct(state, new_state)

    @parameterized.parameters(*NAMES)
    def test_loss_is_measured_before_the_update(self, name):
        learner = learners.get(name)
        state = learner.init(D, jax.random.key(0))
        x, y = _data()
        for i in range(5):  # move away from w = 0 first
            state, _ = learner.step(state, x[i], y[i, 0])
        expected = learner.loss(state, x[10], y[10, 0])
        _, loss = learner.step(state, x[10], y[10, 0])
        np.testing.assert_allclose(loss, expected, rtol=1e-6)


class RunnerTest(TestCase):
    def _runner(self, name, t=T):
        learner = learners.multi_output(learners.get(name), K)
        return run_lib.make_runner(learner, D, lambda key: _iid_stream(key, t))

    @parameterized.parameters(*NAMES)
    def test_same_key_bit_identical_different_key_differs(self, name):
        x, y = _data()
        runner = jax.jit(self._runner(name))
        a = runner(jax.random.key(1), x, y)
        b = runner(jax.random.key(1), x, y)
        c = runner(jax.random.key(2), x, y)
        chex.assert_trees_all_equal(a, b)
        assert not np.array_equal(np.asarray(a.loss), np.asarray(c.loss))
        chex.assert_tree_all_finite(a.loss)

    @parameterized.parameters(*NAMES)
    def test_jit_matches_eager(self, name):
        x, y = _data()
        runner = self._runner(name, t=40)
        key = jax.random.key(3)
        chex.assert_trees_all_close(jax.jit(runner)(key, x, y).loss, runner(key, x, y).loss, rtol=1e-5, atol=1e-6)

    @parameterized.parameters(*NAMES)
    def test_vmap_seed_i_equals_single_run(self, name):
        # float64: batched and unbatched kernels round differently, so float32 agreement
        # after 200 steps only says "close"; in float64 the two agree to ~1e-9 (quasi-Newton recursions amplify rounding).
        with jax.enable_x64(True):
            x, y = (jnp.asarray(a, jnp.float64) for a in _data())
            runner = self._runner(name)
            keys = run_lib.seed_keys(7, 4)
            batched = jax.jit(jax.vmap(runner, in_axes=(0, None, None)))(keys, x, y)
            single = jax.jit(runner)
            for i in range(4):
                one = single(keys[i], x, y)
                np.testing.assert_allclose(batched.loss[i], one.loss, rtol=1e-7, atol=1e-10)
                np.testing.assert_array_equal(batched.row[i], one.row)

    @parameterized.parameters(*NAMES)
    def test_one_compile_per_configuration(self, name):
        chex.clear_trace_counter()  # counts are per code object, shared across parameters
        x, y = _data()
        counted = chex.assert_max_traces(self._runner(name, t=50), n=1)
        runner = jax.jit(jax.vmap(counted, in_axes=(0, None, None)))
        runner(run_lib.seed_keys(0, 2), x, y)
        x2, y2 = _data(seed=1)
        runner(run_lib.seed_keys(1, 2), x2, y2)  # new values, same shapes: no retrace


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", ["norm_1e3", "rank_deficient"])
def test_long_stream_stays_finite_on_hard_inputs(name, case):
    """2,000 steps on unscaled features (norm 1e3) and on a rank-2 stream stay finite."""
    rng = np.random.default_rng(11)
    t = 2000
    if case == "norm_1e3":
        x, y = _data(seed=2, n=256, scale=1e3)
    else:
        basis = rng.normal(size=(2, D))
        x = jnp.asarray(rng.normal(size=(256, 2)) @ basis, jnp.float32)
        y = jnp.asarray(np.eye(K)[rng.integers(0, K, 256)], jnp.float32)
    learner = learners.multi_output(learners.get(name), K)
    runner = run_lib.make_runner(learner, D, lambda key: _iid_stream(key, t, n=256))
    trace = jax.jit(runner)(jax.random.key(0), x, y)
    chex.assert_tree_all_finite(trace.loss)
    state = learner.init(D, jax.random.key(0))
    final, _ = jax.jit(lambda s: run_lib.run(learner, s, x, y, _iid_stream(jax.random.key(0), t, n=256)))(state)
    assert_finite(final)


def test_unknown_learner_lists_valid_names():
    with pytest.raises(ValueError, match="memorypair, sgd, adagrad, ons, rls"):
        learners.get("newton")


@pytest.mark.parametrize(
    "name,kwargs",
    [("sgd", {"learning_rate": -1.0}), ("memorypair", {"memory_size": 0}), ("rls", {"l2": 0.0}), ("ons", {"gamma": float("nan")})],
)
def test_bad_hyperparameters_are_refused(name, kwargs):
    with pytest.raises(ValueError):
        learners.get(name, **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_validate_data_refuses_non_finite_input(bad):
    x, y = _data()
    x = np.array(x)
    x[5, 2] = bad
    with pytest.raises(ValueError, match=r"non-finite.*first at index \(5, 2\)"):
        run_lib.validate_data(x, np.asarray(y))
    with pytest.raises(ValueError, match="targets"):
        yy = np.array(y)
        yy[0, 0] = bad
        run_lib.validate_data(np.asarray(_data()[0]), yy)


def test_validate_data_refuses_wrong_shapes():
    x, y = _data()
    with pytest.raises(ValueError, match="2-D"):
        run_lib.validate_data(np.asarray(x)[0], np.asarray(y))
    with pytest.raises(ValueError, match="rows"):
        run_lib.validate_data(np.asarray(x), np.asarray(y)[:-1])


def test_adaptive_stream_picks_the_max_loss_candidate():
    """The adversary's pick equals a NumPy re-computation of the candidates' losses."""
    x, y = _data(seed=4)
    learner = learners.multi_output(learners.get("sgd"), K)
    t, k = 60, 5
    pools = jax.random.randint(jax.random.key(9), (t, k), 0, N)
    stream = Stream(pools, jnp.zeros((t,)), jnp.zeros((D,)))
    state0 = learner.init(D, jax.random.key(0))
    _, trace = run_lib.run(learner, state0, x, y, stream)
    # Replay host-side: at each step recompute candidate losses with the current weights.
    state = state0
    xn, yn, pools_np = np.asarray(x), np.asarray(y), np.asarray(pools)
    for step in range(t):
        w = np.asarray(state.w)  # [K, D]
        cand = pools_np[step]
        losses = 0.5 * (((xn[cand] @ w.T) - yn[cand]) ** 2).sum(axis=1)
        assert int(trace.row[step]) == int(cand[np.argmax(losses)])
        state, _ = learner.step(state, x[trace.row[step]], y[trace.row[step]])


@pytest.mark.parametrize("name", NAMES)
def test_wstep_with_weight_one_is_step_bitwise(name):
    learner = learners.multi_output(learners.get(name), K)
    x, y = _data(seed=5)
    state = learner.init(D, jax.random.key(0))
    step = jax.jit(learner.step)
    wstep = jax.jit(lambda s, a, b: learner.wstep(s, a, b, jnp.float32(1.0)))
    a = b = state
    for i in range(30):
        a, la = step(a, x[i], y[i])
        b, lb = wstep(b, x[i], y[i])
        chex.assert_trees_all_equal(la, lb)
    chex.assert_trees_all_equal(_numeric_leaves(a), _numeric_leaves(b))


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", NAMES)
def test_weight_zero_drops_the_loss_gradient_but_keeps_decay_and_counter(name):
    """wstep(w=0) equals the same update with the sample's loss gradient replaced by 0."""
    learner = learners.get(name)
    x, y = (np.asarray(a, np.float64) for a in _data(seed=6))
    state = learner.init(D, jax.random.key(0))
    for i in range(8):
        state, _ = learner.step(state, jnp.asarray(x[i]), y[i, 0])
    skipped, _ = learner.wstep(state, jnp.asarray(x[9]), y[9, 0], 0.0)
    assert int(skipped.t) == int(state.t) + 1
    # The loss gradient is zero exactly when the target equals the prediction.
    y_fit = float(learner.predict(state, jnp.asarray(x[9])))
    fitted, _ = learner.step(state, jnp.asarray(x[9]), y_fit)
    chex.assert_trees_all_close(skipped.w, fitted.w, rtol=1e-12, atol=1e-14)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", NAMES)
def test_reverse_mode_through_the_scan_is_finite_at_zero_weights(name):
    """d(final loss)/d(sample weights) is finite from w = 0 (NaN-safe norms) and with zero weights."""
    learner = learners.multi_output(learners.get(name), K)
    x, y = (jnp.asarray(a, jnp.float64) for a in _data(seed=7))

    def final_loss(weights):
        state = learner.init(D, jax.random.key(0))

        def body(s, inp):
            xi, yi, wi = inp
            s, _ = learner.wstep(s, xi, yi, wi)
            return s, None

        state, _ = jax.lax.scan(body, state, (x[:40], y[:40], weights))
        return learner.loss(state, x[50], y[50])

    for weights in (jnp.ones(40), jnp.zeros(40).at[::2].set(1.0)):
        g = jax.grad(final_loss)(weights)
        chex.assert_tree_all_finite(g)
        assert float(jnp.abs(g).max()) > 0


@pytest.mark.usefixtures("x64")
def test_clipping_and_projection_have_finite_derivatives_at_zero_and_at_the_bound():
    from mpjax.learners import base, sgd

    for v in (jnp.zeros(4), jnp.asarray([0.3, 0.4, 0.0, 0.0]), jnp.asarray([3.0, 4.0, 0.0, 0.0])):
        for fn in (lambda u: jnp.sum(base.grad_clip(u, 0.5)), lambda u: jnp.sum(sgd.project_l2_ball(u, 0.5))):
            chex.assert_tree_all_finite(jax.grad(fn)(v))
    # Above the bound the scale is c / |v| exactly, below it is 1.
    np.testing.assert_allclose(base.grad_clip(jnp.asarray([3.0, 4.0]), 1.0), [0.6, 0.8], rtol=1e-12)
    np.testing.assert_array_equal(base.grad_clip(jnp.asarray([0.3, 0.4]), 1.0), [0.3, 0.4])


@pytest.mark.usefixtures("x64")
def test_clipped_coefficient_equals_grad_clip_and_has_finite_derivatives_at_zero():
    """a x = grad_clip(l' x) (|l'||x| as the norm), finite first and second derivatives at l' = 0 and x = 0."""
    from mpjax.learners import base

    xs = (jnp.zeros(4), jnp.asarray([0.3, 0.4, 0.0, 0.0]), jnp.asarray([3.0, 4.0, 0.0, 0.0]))
    for x in xs:
        for dz in (0.0, 0.3, 50.0):
            a = base.clipped_coefficient(jnp.asarray(dz), x, 1.0)
            np.testing.assert_allclose(a * x, base.grad_clip(dz * x, 1.0), rtol=1e-14, atol=1e-300)
            via_norm = base.grad_clip(dz * x, 1.0, norm=jnp.abs(dz) * base.safe_norm(x))
            np.testing.assert_allclose(via_norm, a * x, rtol=1e-14, atol=1e-300)
            for f in (lambda d: base.clipped_coefficient(d, x, 1.0),
                      lambda d: jnp.sum(base.grad_clip(d * x, 1.0, norm=jnp.abs(d) * base.safe_norm(x)))):
                chex.assert_tree_all_finite(jax.grad(f)(jnp.asarray(dz)))
                chex.assert_tree_all_finite(jax.grad(jax.grad(f))(jnp.asarray(dz)))
            chex.assert_tree_all_finite(jax.grad(lambda v: jnp.sum(base.clipped_coefficient(jnp.asarray(dz), v, 1.0) * v))(x))
    assert base.clipped_coefficient(jnp.asarray(50.0), xs[2], None) == 50.0  # no clip
