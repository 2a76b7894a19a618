"""Online learners, each a pure ``(state, x, y) -> (state, loss)`` step.

``get(name, **hyper)`` builds one by name; ``LEARNERS`` lists the names.
"""

from mpjax.learners import adagrad, memory_pair, ons, rls, sgd
from mpjax.learners.base import Learner, multi_output

__all__ = ["Learner", "multi_output", "LEARNERS", "get", "adagrad", "memory_pair", "ons", "rls", "sgd"]

LEARNERS = {
    "memorypair": memory_pair,
    "sgd": sgd,
    "adagrad": adagrad,
    "ons": ons,
    "rls": rls,
}


def get(name: str, **hyper) -> Learner:
    """``make(**hyper)`` of the learner called ``name``; unknown names list the valid ones."""
    try:
        module = LEARNERS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; valid: {', '.join(LEARNERS)}") from None
    return module.make(**hyper)
