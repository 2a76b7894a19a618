"""Full-size (T = 100,000) runs, excluded from `make test`; run with `make test-all`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import learners, regret, streams
from mpjax import run as run_lib
from mpjax.data import load_dataset

T = 100_000


@pytest.mark.slow
def test_full_stream_rls_regret_matches_its_closed_form_and_memorypair_stays_finite():
    data = load_dataset("covtype", data_source="simulated", progress=False)
    labels = jnp.asarray(data.labels)
    make_stream = lambda key: streams.make_stream("adv", key, labels, T, num_classes=7, is_image=False,  # noqa: E731
                                                  raw_dim=54)
    key = run_lib.seed_keys(0, 1)[0]
    for name in ("rls", "memorypair"):
        lam = 1e-3
        hyper = {"l2": lam} if name == "rls" else {"learning_rate": 1.0, "l2": 1e-4}
        # RLS in float64: the positivity of its regret increments is an exact-arithmetic identity.
        with jax.enable_x64(name == "rls"):
            learner = learners.multi_output(learners.get(name, **hyper), 7)
            tb, tg = (jnp.asarray(a, jnp.float64 if name == "rls" else jnp.float32) for a in (data.x, data.y))
            trace = jax.jit(run_lib.make_runner(learner, 55, make_stream))(key, tb, tg)
            loss = np.asarray(trace.loss, np.float64)
        assert np.isfinite(loss).all() and loss.shape == (T,)
        if name != "rls":
            continue
        with jax.enable_x64(True):
            x64, y64 = jnp.asarray(data.x, jnp.float64), jnp.asarray(data.y, jnp.float64)
            comp = regret.ridge_comparator(lambda r, a: (x64[r], y64[r]), jnp.asarray(trace.row),
                                           jnp.zeros(T), 55, 7, lam, block=100)
        r_t = np.cumsum(loss) - np.cumsum(np.asarray(comp.increments))
        # RLS predicts with the ridge fit of the prefix, so its regret is the sum of the positive
        # terms 1/2 |e|^2 a/(1+a) (tests/test_regret.py); at full size it must stay positive,
        # increasing and far below linear.
        assert (np.diff(r_t) > -1e-8).all() and r_t[-1] > 0
        assert r_t[-1] / T < 0.01
