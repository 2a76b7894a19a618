"""Data attribution by exact metagradients (MAGIC), validated by the LDS.

``remat`` (nested-checkpoint scans), ``metagrad`` (training with per-row weights and
its exact reverse-mode influence), ``baselines`` (TracIn, gradient dot product,
influence function, exact ridge leave-one-out), ``lds`` (masks, retrains, Spearman,
bootstrap), ``cnn`` (the CIFAR-10 ResNet-9 path).
"""

from mpjax.influence import baselines, lds, metagrad, remat
from mpjax.influence.metagrad import metagradients, train_weighted
from mpjax.influence.remat import balanced_levels, scan_remat

__all__ = ["baselines", "lds", "metagrad", "remat", "metagradients", "train_weighted", "balanced_levels",
           "scan_remat"]
