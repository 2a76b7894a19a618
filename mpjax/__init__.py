"""mpjax: online learning with certified unlearning, in JAX.

The pure core: :mod:`mpjax.learners` (``(state, x, y) -> (state, loss)`` steps),
:mod:`mpjax.lbfgs`, :mod:`mpjax.run` (scan/vmap drivers), :mod:`mpjax.regret`,
:mod:`mpjax.streams`, :mod:`mpjax.privacy`, :mod:`mpjax.unlearning`; host-side
data in :mod:`mpjax.data`. ``mpjax.MemoryPair`` is the imperative wrapper.
"""

from mpjax.wrapper import MemoryPair

__all__ = ["MemoryPair"]
__version__ = "0.1.0"
