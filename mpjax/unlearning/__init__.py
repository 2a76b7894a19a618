"""Certified unlearning: the phase machine, three deletion mechanisms and the deletion-experiment driver.

* :mod:`mpjax.unlearning.core`: ``make`` -> :class:`Unlearner` (phases, refusals, the
  ``exact``, ``polish`` and ``seed`` mechanisms with their theorems in the docstring).
* :mod:`mpjax.unlearning.ridge`: sufficient statistics of the deletion objective, the exact
  minimiser (Cholesky) and a certified distance bound.
* :mod:`mpjax.unlearning.polish`: the stored rows and the certified polishing iteration.
* :mod:`mpjax.unlearning.driver`: the pure scan logic of the deletion experiment (schedules,
  deletion targets, stages, replay).
* :mod:`mpjax.unlearning.audit`: host-side float64 references (retrain, distances, the
  feature-injection weight, the distinguishing audit).

The names of :mod:`~mpjax.unlearning.core` are re-exported here (``unlearning.make``, ...).
"""

from mpjax.unlearning import polish, ridge
from mpjax.unlearning.core import (
    ALREADY_PRESENT,
    BAD_ROW,
    BUDGET,
    CALIBRATION,
    INTERLEAVING,
    LEARNING,
    MECHANISMS,
    MISMATCH,
    NOT_CERTIFIED,
    NOT_PRESENT,
    OK,
    OP_CALIBRATE,
    OP_DELETE,
    OP_INSERT,
    OP_NAMES,
    OP_NOOP,
    PHASE_NAMES,
    REASONS,
    WRONG_PHASE,
    Event,
    Settings,
    Unlearner,
    UnlearningState,
    make,
    resolve_mechanism,
)

__all__ = [
    "polish",
    "ridge",
    "ALREADY_PRESENT",
    "BAD_ROW",
    "BUDGET",
    "CALIBRATION",
    "INTERLEAVING",
    "LEARNING",
    "MECHANISMS",
    "MISMATCH",
    "NOT_CERTIFIED",
    "NOT_PRESENT",
    "OK",
    "OP_CALIBRATE",
    "OP_DELETE",
    "OP_INSERT",
    "OP_NAMES",
    "OP_NOOP",
    "PHASE_NAMES",
    "REASONS",
    "WRONG_PHASE",
    "Event",
    "Settings",
    "Unlearner",
    "UnlearningState",
    "make",
    "resolve_mechanism",
]
