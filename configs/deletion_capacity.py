"""Deletion-capacity experiment: how many certified deletions does the odometer admit?

Command (the default; measured 53-77 s on the shared 2-core CPU, simulated Covertype, 4 seeds):

    python -m experiments.deletion_capacity --dataset=covtype

and the whole grid (3 schedules x 4 accountants):

    python -m experiments.deletion_capacity --dataset=covtype --schedule=all --accountant=all

Every field can be overridden with ``--config.<field>=value`` (for example
``--config.privacy.gamma_priv=5``); the common axes also have named flags
(``--dataset``, ``--schedule``, ``--accountant``, ``--T``, ``--seed``,
``--num_seeds``, ``--workdir``, ``--data_source``, ``--require_real``,
``--overwrite``), which win over the config; a field set both ways must agree.

Defaults, and why:

* ``learner.l2 = 0.1`` (lambda). The deletion noise is ``sigma = z Delta`` with
  the data-independent sensitivity ``Delta = sqrt(K) clip_norm / lambda``; a small lambda makes
  every deletion destroy the model, a large one makes the model useless.
* ``privacy.gamma_learn = 0.1``: N* = ceil((G D kappa / gamma_learn)^2) is then a
  few thousand inserts on Covertype-shaped data (G ~ 0.7, D ~ 1.3, kappa ~ 4-7
  after 1,000 calibration events), below ``learn_cap``, so every seed reaches
  INTERLEAVING.
* ``privacy.gamma_priv = 1.0``: the target average regret per insert with
  deletions. The trivial predictor w = 0 pays 1/2 per step (squared loss summed
  over the K one-hot outputs), so a larger gamma_priv certifies nothing useful;
  at 1.0 the zCDP capacity at (1, 1e-5), T = 100,000 is 5 deletions (Delta = sqrt(K) clip_norm / lambda = 26.5).
  The run computes and records which term of the bound binds and what gamma_priv,
  lambda or T would admit ``target_deletions`` (100) deletions.
* ``T = 100,000`` is the horizon the odometer spreads the regret budget over
  (``Settings.horizon``); the simulated event stream is shorter
  (``n_calibration + L + n_interleave`` events, L <= ``learn_cap``) to keep the
  run fast. The banner and the JSON say so.
* ``lam = 0.1``: ridge strength of the exact reference (the comparator of the
  regret and the retrained model of ``dist_to_retrain``); equal to the learner's
  l2, which also keeps the float32 Sherman-Morrison reference within ~1e-5
  (relative) of a float64 solve on Covertype-shaped data.
"""

from ml_collections import ConfigDict, config_dict


def get_config(arg=None) -> ConfigDict:
    del arg
    c = ConfigDict()
    c.dataset = "covtype"
    c.schedule = "uniform"  # uniform | burst | trickle | all
    c.accountant = "zcdp"  # basic | zcdp | rdp | exact | all
    c.T = 100_000  # odometer horizon (Settings.horizon), not the number of simulated events
    c.seed = 42
    c.num_seeds = 4
    c.workdir = "results"
    c.data_source = "auto"
    c.require_real = False
    c.overwrite = False
    c.max_rows = config_dict.placeholder(int)

    # Stages: A calibrate, B learn until N*, C interleave.
    c.n_calibration = 1000
    c.learn_cap = 10_000  # at most this many LEARNING inserts (stage B)
    c.n_interleave = 3300  # stage-C events
    c.uniform_inserts = 10  # uniform: this many inserts, then 1 delete, repeating
    c.burst_inserts = 450  # burst: this many inserts, then burst_deletes consecutive deletes
    c.burst_deletes = 50
    c.trickle_inserts = 100  # trickle: a delete after every this many inserts
    c.replay_checkpoints = 8  # evenly spaced stage-C events (the last one included) with a replay
    c.log_every = 1  # CSV stride in events (the npz always keeps every event)

    # Exact reference (comparator and retrained model).
    c.lam = 0.1

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
        }
    )
    # Capacity curve m(epsilon) and the "what would admit target_deletions" search.
    c.capacity = ConfigDict({"eps_min": 0.1, "eps_max": 10.0, "eps_points": 41, "target_deletions": 100})
    return c
