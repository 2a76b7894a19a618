"""Data attribution by exact metagradients (MAGIC), validated by the LDS.

Command (the default; about 1-2 minutes on the shared 2-core CPU: SGD on simulated
Covertype, n = 10,000, 50 targets, 100 subsets per protocol, float64):

    python -m experiments.influence --action=full

Other learners and data: ``--learner={sgd,adagrad,ons,rls,memorypair}``,
``--dataset={covtype,rotmnist}`` (rotmnist: the real 5,000-digit MNIST subset offline,
14x14, d = 197). Runs live in ``<root>/runs/<run_id>/``; see experiments/influence.py
for the actions (magic, lds, full, list, info, clean, show_config).

Every field can be overridden with ``--config.<field>=value``; the named flags
(``--action``, ``--run_id``, ``--force``, ``--what``, ``--dataset``, ``--learner``) win.
"""

from ml_collections import ConfigDict

from configs.regret import learner_defaults


def get_config(arg=None) -> ConfigDict:
    del arg
    c = ConfigDict()
    # Run management (not part of the result hash).
    c.action = "full"
    c.run_id = ""  # empty: a new id YYYYMMDD_HHMMSS_<6 hex>
    c.force = False
    c.what = "checkpoints"  # clean: checkpoints | all
    c.root = "results/influence"

    # Problem.
    c.dataset = "covtype"
    c.learner = "sgd"
    c.seed = 0
    c.data_source = "auto"
    c.require_real = False
    c.float64 = True  # exact references (ridge LOO, finite differences) are checked in float64
    c.n = 10_000  # training rows (capped by the data: n + num_targets <= rows available)
    c.num_targets = 50
    c.epochs = 1  # passes over the training rows, each in its own fixed permutation
    c.image_size = 14  # images downsampled to 14x14 (d = 197)
    c.loss = "squared"

    # Attribution.
    c.methods = "metagradient,tracin,grad_dot,influence_function,ridge_loo"  # ridge_loo: rls only
    c.num_levels = 2  # scan_remat levels (balanced_levels(T, num_levels))
    c.target_chunk = 0  # targets per batched reverse sweep (0: all at once)

    # LDS.
    c.num_subsets = 100
    c.protocols = "drop_1pct,drop_5pct,alpha_0.5"
    c.cross_order = "drop_5pct"  # these protocols again, every subset in its own order ("" : none)
    c.retrain_chunk = 50  # retrains per compiled call (one checkpoint file each)
    c.retrain_batch = 10  # retrains per vmap inside a call, batches in sequence (0: all; speed only)
    c.num_boot = 2000

    # Smoothness: finite differences of the actual retrain.
    c.smoothness_samples = 5
    c.smoothness_targets = 3
    c.smoothness_eps = "1e-2,1e-4,1e-6"
    c.removal_tolerance = 0.25  # warn when the median |removal change + tau| / |removal change| exceeds this

    c.learners = learner_defaults()
    return c
