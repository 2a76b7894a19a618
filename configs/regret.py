"""Regret experiment: does cumulative regret grow like sqrt(T)?

Command (the default `make run`; about 40 seconds on a 2-core CPU, see README):

    python -m experiments.regret --dataset=covtype --stream=adv

Every field can be overridden with ``--config.<field>=value`` (for example
``--config.learners.memorypair.learning_rate=0.3``); the common axes also have
named flags (``--dataset``, ``--stream``, ``--algo``, ``--T``, ``--seed``,
``--num_seeds``, ``--workdir``, ``--data_source``, ``--require_real``,
``--float64``, ``--sweep``, ``--commit_results``, ``--shard_seeds``,
``--overwrite``), which win over the config.

Seeds are sharded over one host device per core by default (``shard_seeds``,
``cpu_devices``; results are bit-identical to one device), and compiled programs
are cached in ``compilation_cache`` for later runs. XLA CPU compiles every learner's scan
whole instead of kernel by kernel (``small_loop_bytes``; 0: XLA's defaults), and seeds run in
batches of ``seeds_per_batch`` on each device. RLS keeps float64 state in a float32 run
(``float64_learners``).

CPU defaults: images are downsampled to ``image_size=14`` (d = 197; CIFAR-10 in
grayscale), and learners whose step costs O(K d^2) (ons, rls) run at most
``d2_max_seeds`` seeds when d > ``d2_dim_threshold``. Both are reported in the
banner and the metadata; set ``--config.image_size=0 --config.d2_max_seeds=0``
for full size on an accelerator.
"""

from ml_collections import ConfigDict, config_dict

from experiments.common import SMALL_LOOP_BYTES


def learner_defaults() -> ConfigDict:
    """Default hyper-parameters of every learner (passed to ``make(**...)``)."""
    return ConfigDict(
        {
            "memorypair": {
                "memory_size": 10,
                # eta_t = 0.7 / sqrt(t), normalised by 1 + eta_t x.Hx; and each curvature pair
                # averages the Hessian of 100 samples. Chosen together (README "Tuning Memory-Pair"):
                # blocks of 20 at eta_0 = 1 gave 4 % lower adversarial and 16 % lower iid Covertype
                # regret, but metagradients that do not predict retrains (LDS 0.82 Covertype, 0.21 MNIST).
                "learning_rate": 0.7,
                "l2": 1e-4,
                "clip_norm": 1.0,
                "curvature_block": 100,
            },
            "sgd": {"learning_rate": 2.0, "l2": 1e-4, "clip_norm": 10.0},
            "adagrad": {"learning_rate": 0.1, "l2": 1e-4, "clip_norm": 10.0, "initial_accumulator": 0.1},
            "ons": {"grad_bound": 1.0, "diameter": 1.0, "alpha": 1.0, "l2": 1e-4, "clip_norm": 10.0},
            "rls": {"l2": 1e-3},
        }
    )


def seeds_per_batch_defaults() -> ConfigDict:
    """Seeds vmapped together (a batch of fixed width, see experiments.common.map_seeds).

    -1 = auto (``experiments.common.batch_width``): where the learner's scan is compiled
    whole (``small_loop_bytes``, README "Where the time goes"), pairs for Memory-Pair and SGD
    up to 256 features on an even seed count per device (``common.AUTO_WHOLE``), else one
    seed at a time; batches of 16 where it runs kernel by kernel or on an accelerator. A
    ``vmap`` over seeds pays off mainly while a step's cost is per-kernel dispatch; in a
    whole-compiled scan a batch shares only the loop's overhead (simulated Covertype, d = 55,
    K = 7, 32 seeds over 2 cores, aggregate samples/s at widths 1 / 4 / 16: Memory-Pair 1.43M
    / 1.25M / 1.26M, AdaGrad 4.18M / 4.27M / 3.73M, RLS 3.70M / 3.12M / 2.82M; at width 2
    Memory-Pair +8 % and SGD +6-12 % over width 1, SGD at 4 +6-8 %, ``python -m
    benchmarks.seed_gain --widths=1,2,4``). Widths 1 and 2 give bit-identical losses there
    (tested), so each seed's result is also bit-identical to a one-seed run, and the pairs may
    depend on the device count. Memory-Pair's scan is not compiled whole above
    ``FAST_SCAN_MAX_DIM`` features, where a batch pays again (d = 197, 32 seeds: 349k
    samples/s at width 16 against 211k at 1); there, and for explicit widths, the width
    depends on the configuration, the learner and the data's dimension, never on the device
    count, so a sharded run is bit-identical to one device on any number of cores.
    """
    return ConfigDict({name: -1 for name in ("memorypair", "sgd", "adagrad", "ons", "rls")})


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
    c.shard_seeds = True  # split the seed axis over the host devices (bit-identical results; tested)
    c.cpu_devices = 0  # host devices on a CPU backend: 0 = one per core, 1 = a single device
    c.compilation_cache = "~/.cache/mpjax/jax_compilation_cache"  # persistent XLA cache; "" disables
    # XLA CPU compiles a learner's scan whole when its step moves fewer bytes than this
    # (README "Where the time goes"); 0: XLA's defaults.
    c.small_loop_bytes = SMALL_LOOP_BYTES
    c.distributed = False  # call jax.distributed.initialize() (multi-host)
    c.overwrite = False
    c.loss = "squared"

    # Comparator: min_theta sum_s l_s(theta) + lam/2 |theta|^2 (once, not per step).
    c.lam = 1e-3
    # Steps per block of the exact comparator (BLAS-3 blocks; LAPACK on one OpenBLAS thread, see
    # experiments.regret.comparators). 32 seeds, T = 5,000: blocks of 50 took 0.33 s (d = 55) and
    # 1.4 s (d = 197), blocks of 10 took 0.38 s and 2.8 s.
    c.comparator_block = 50
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

    # Learners whose state is float64 even in a float32 run: RLS is the exact reference learner,
    # and its float32 Sherman-Morrison recursion drifts (0.7% regret at T = 5,000, 4% at 20,000).
    c.float64_learners = ("rls",)

    c.unroll = 1
    c.seeds_per_batch = seeds_per_batch_defaults()
    c.learners = learner_defaults()
    return c
