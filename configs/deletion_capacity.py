"""Certified deletion: the exact, polish and seed mechanisms on one stream.

Command (the default; all three mechanisms, simulated Covertype, 4 seeds; 105 s measured on
the shared 2-core CPU, about half of it compilation):

    python -m experiments.deletion_capacity --dataset=covtype

and on the real 5,000-digit MNIST subset (offline; 14x14 images, d = 197; 176 s measured):

    python -m experiments.deletion_capacity --dataset=rotmnist

Every field can be overridden with ``--config.<field>=value`` (for example
``--config.privacy.polish_delta=1e-4``); the common axes also have named flags
(``--dataset``, ``--mechanism``, ``--schedule``, ``--accountant``, ``--T``, ``--seed``,
``--num_seeds``, ``--workdir``, ``--data_source``, ``--require_real``, ``--overwrite``),
which win over the config; a field set both ways must agree.

Defaults, and why:

* One objective for the learner, the mechanisms and every reference:
  ``F_S(W) = sum_{i in S} [1/2 |W x_i - y_i|^2 + lambda/2 |W|^2]``, ``lambda = learner.l2 = 0.1``.
* ``float64 = True``: the exact statistics, the polish certificate and the float64 retrain
  reference are compared at the 1e-9 level; float32 rounding alone is ~1e-4 there.
* Stages: ``n_calibration`` calibrate events, ``finalize``, then L inserts with
  L = max(n_learn, max over seeds of N* - n_calibration), at most ``learn_cap`` and what the
  training rows allow (a seed whose N* is still not reached stays in LEARNING and its deletes
  are refused, which the outputs record), then ``n_interleave`` events of the schedule
  (uniform: 10 inserts, 1 delete; 200 delete requests), the deletion targets a seeded uniform
  choice among the rows present. A separate branch from the end of learning runs the
  feature-injection test (``injection``).
* ``privacy.polish_delta = 1e-5`` (Delta) and ``privacy.polish_capacity = 1000`` (m): sigma =
  z(m, eps, delta) Delta = 1.6e-3 at (1, 1e-5) with zCDP, fixed before any data.
* ``privacy.gamma_priv = 1.0``: the trivial predictor pays 1/2 per step; the polish regret
  condition charges every prediction (see ``mpjax.privacy.odometer.polish_charge``).
* ``T = 100,000``: the horizon of the regret conditions (not the number of simulated events).
* ``max_rows = 50,000``: a seeded subset of Covertype's 581,012 rows (the run inserts ~6,000
  per seed); no effect on MNIST's 5,000-digit subset. ``n_test`` rows are held out.
"""

from ml_collections import ConfigDict, config_dict


def get_config(arg=None) -> ConfigDict:
    del arg
    c = ConfigDict()
    c.dataset = "covtype"
    c.mechanism = "all"  # exact | polish | seed | all
    c.schedule = "uniform"  # uniform | burst | trickle
    c.accountant = "zcdp"  # basic | zcdp | rdp | exact
    c.T = 100_000  # horizon of the regret conditions, not the number of simulated events
    c.seed = 42
    c.num_seeds = 4
    c.workdir = "results"
    c.data_source = "auto"
    c.require_real = False
    c.overwrite = False
    c.max_rows = config_dict.placeholder(int)
    c.max_rows = 50_000
    c.image_size = 14  # MNIST: downsample to 14x14 (d = 197); 0 keeps 28x28 (d = 785)
    c.float64 = True
    c.n_test = 500  # held-out rows for the accuracy of the published model

    # Stages: calibrate, learn, interleave (all seeds in one vmap, chunks of one compiled scan).
    c.n_calibration = 1000
    c.n_learn = 1500  # at least this many LEARNING inserts; more until every seed reaches N*
    c.learn_cap = 6000  # at most this many (and no more than the training rows allow)
    c.n_interleave = 2200
    c.uniform_inserts = 10  # uniform: this many inserts, then 1 delete, repeating
    c.burst_inserts = 180  # burst: this many inserts, then burst_deletes consecutive deletes
    c.burst_deletes = 20
    c.trickle_inserts = 50  # trickle: a delete after every this many inserts
    c.chunk = 200  # events per call of the compiled scan
    c.eval_every = 50  # held-out accuracy every this many events

    # Feature injection (Izzo et al. 2021): `rows` inserted rows carry an extra feature (value
    # `value`, the rest of the row scaled by `scale`, label `label`), then all are deleted.
    c.injection = ConfigDict({"rows": 100, "inserts_between": 9, "value": 0.6, "scale": 0.8, "label": 0})
    # Distinguishing audit: releases per world and the false-positive rate.
    c.audit = ConfigDict({"trials": 20_000, "fpr": 0.01})

    # Memory-Pair's hyper-parameters (mpjax.learners.memory_pair.make).
    c.learner = ConfigDict({"memory_size": 10, "learning_rate": 0.5, "l2": 0.1, "clip_norm": 1.0})
    c.privacy = ConfigDict(
        {
            "gamma_learn": 0.1,
            "gamma_priv": 1.0,
            "eps_total": 1.0,
            "delta_total": 1e-5,
            "delta_B": 0.05,
            "bound": "original",
            "quantile": 0.95,
            "min_points": 32,
            "window": 1024,
            "noise": True,
            "max_deletions": 2**20,
            "polish_delta": 1e-5,
            "polish_passes": 200,
            "polish_capacity": 1000,
        }
    )
    # Capacity curves m(epsilon) per mechanism.
    c.capacity = ConfigDict({"eps_min": 0.1, "eps_max": 10.0, "eps_points": 41})
    return c
