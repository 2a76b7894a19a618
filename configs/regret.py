"""Regret experiment: does cumulative regret grow like sqrt(T)?

Command (the default `make run`; about 3-4 minutes on a 2-core CPU, see README):

    python -m experiments.regret --dataset=covtype --stream=adv

Every field can be overridden with ``--config.<field>=value`` (for example
``--config.learners.memorypair.learning_rate=0.3``); the common axes also have
named flags (``--dataset``, ``--stream``, ``--algo``, ``--T``, ``--seed``,
``--num_seeds``, ``--workdir``, ``--data_source``, ``--require_real``,
``--float64``, ``--sweep``, ``--commit_results``, ``--shard_seeds``,
``--overwrite``), which win over the config.

CPU defaults: images are downsampled to ``image_size=14`` (d = 197; CIFAR-10 in
grayscale), and learners whose step costs O(K d^2) (ons, rls) run at most
``d2_max_seeds`` seeds when d > ``d2_dim_threshold``. Both are reported in the
banner and the metadata; set ``--config.image_size=0 --config.d2_max_seeds=0``
for full size on an accelerator.
"""

from ml_collections import ConfigDict, config_dict


def learner_defaults() -> ConfigDict:
    """Default hyper-parameters of every learner (passed to ``make(**...)``)."""
    return ConfigDict(
        {
            "memorypair": {
                "memory_size": 10,
                "learning_rate": 2.0,  # eta_t = 2 / sqrt(t); see README "Tuning" for the sweep
                "l2": 1e-4,
                "clip_norm": 1.0,
                "max_step": 1.0,
                "min_curvature": 0.1,  # cautious pairs: s.y >= 0.1 |s|^2 (~ typical |x|^2); README "Tuning"
            },
            "sgd": {"learning_rate": 2.0, "l2": 1e-4, "clip_norm": 10.0},
            "adagrad": {"learning_rate": 0.1, "l2": 1e-4, "clip_norm": 10.0, "initial_accumulator": 0.1},
            "ons": {"grad_bound": 1.0, "diameter": 1.0, "alpha": 1.0, "l2": 1e-4, "clip_norm": 10.0},
            "rls": {"l2": 1e-3},
        }
    )


def get_config(arg=None) -> ConfigDict:
    del arg
    c = ConfigDict()
    c.dataset = "covtype"
    c.stream = "adv"
    c.algo = "all"
    c.T = 100_000
    c.seed = 42
    c.num_seeds = 32
    c.workdir = "results"
    c.data_source = "auto"
    c.require_real = False
    c.float64 = False
    c.sweep = False
    c.commit_results = False
    c.shard_seeds = False
    c.distributed = False  # call jax.distributed.initialize() (multi-host)
    c.overwrite = False
    c.loss = "squared"

    # Comparator: min_theta sum_s l_s(theta) + lam/2 |theta|^2 (once, not per step).
    c.lam = 1e-3
    c.comparator_block = 100  # steps per BLAS-3 block of the exact comparator
    c.window = 1000  # dynamic-regret window W (drift); a multiple of comparator_block
    c.slope_t_min = 1000  # fit log R_t ~ log t over t in [slope_t_min, T]
    c.logistic_checkpoints = 40  # logistic comparator: Newton solves at this many log-spaced steps

    # Data.
    c.image_size = 14  # 0: full size (28x28 MNIST, 32x32 CIFAR-10)
    c.cifar_grayscale = True
    c.max_rows = config_dict.placeholder(int)
    c.stream_opts = ConfigDict({"drift_every": 1000, "block": 500, "pool_size": 8})

    # Cost caps for CPUs (0 disables).
    c.d2_max_seeds = 4
    c.d2_dim_threshold = 100

    c.unroll = 1
    c.learners = learner_defaults()
    return c
