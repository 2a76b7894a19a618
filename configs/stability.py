"""Stability experiment: does a learner amplify rounding-sized perturbations of its state?

Command (about 3 minutes on a 2-core CPU):

    python -m experiments.stability

For each (dataset, stream) cell and learner: two float64 runs on the same stream whose
initial weights differ by ``eps`` (amplification ``max_t |W_t - W'_t| / eps`` and the
largest relative gap), the final regret of a float32 and a float64 run of the same
stream (relative difference), and, for Memory-Pair, the spectrum [c, C] of its
inverse-Hessian approximation along the stream. Learner settings are those of the regret
experiment (``configs/regret.py``).
"""

from ml_collections import ConfigDict

from configs.regret import learner_defaults


def get_config(arg=None) -> ConfigDict:
    del arg
    c = ConfigDict()
    c.T = 20_000
    c.seed = 42
    c.eps = 1e-10  # |W_0 - W'_0|
    c.cells = ("covtype/adv", "covtype/iid", "rotmnist/drift", "rotmnist/iid")
    c.algos = ("memorypair", "sgd", "adagrad", "ons", "rls")
    c.lam = 1e-3  # comparator ridge strength, as in configs/regret.py
    c.spectrum_every = 1000  # Memory-Pair: eigenvalue bounds of H every this many steps
    c.image_size = 14
    c.workdir = "results"
    c.learners = learner_defaults()
    return c
