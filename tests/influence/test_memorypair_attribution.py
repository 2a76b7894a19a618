"""Memory-Pair's attribution at the experiments' settings (README "Tuning Memory-Pair").

The experiments' curvature block and step size (configs/regret.py) were chosen so that
Memory-Pair's exact metagradient predicts its retrains. This is that finding at unit-test
size: T = 2,000 rows of d = 55 (Covertype's width), 10 targets, 30 drop-5 % subsets, float64.
The previous settings (pairs every 20 samples, eta_0 = 1) are the control: on the same problem
their LDS stays below the target, so the test can tell the two apart.
"""

import jax
import jax.numpy as jnp
import numpy as np

from configs.regret import learner_defaults
from mpjax import learners
from mpjax.influence import lds, metagrad
from tests.influence import _fixtures as fx

N, D, K, J, S = 2000, 55, 5, 10, 30


def _lds_drop_5pct(hyper, seed):
    x, y, tx, ty = fx.problem(n=N, j=J, d=D, k=K, seed=seed)
    lrn = learners.multi_output(learners.get("memorypair", **hyper), K)
    state = lrn.init(D, jax.random.key(0))
    order = jnp.arange(N, dtype=jnp.int32)
    _, tau = metagrad.metagradients(lrn, state, x, y, order, tx, ty)
    masks = lds.make_masks(jax.random.key(1), N, S, "drop", 0.05)
    actual = np.asarray(lds.retrain_outputs(lrn, state, x, y, order, masks, tx, ty))
    return float(np.mean(lds.lds(actual, lds.predicted_outputs(np.asarray(masks), np.asarray(tau)))))


def test_experiment_settings_predict_retrains_and_the_previous_ones_do_not(x64):
    configured = dict(learner_defaults()["memorypair"])
    previous = dict(configured, curvature_block=20, learning_rate=1.0)
    good, bad = _lds_drop_5pct(configured, seed=0), _lds_drop_5pct(previous, seed=0)
    assert good >= 0.9, f"LDS {good:.3f} at the experiments' settings {configured}"
    assert bad < 0.9, f"LDS {bad:.3f} at the previous settings: the problem no longer separates them"
    assert good > bad + 0.05
