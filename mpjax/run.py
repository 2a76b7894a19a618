"""Scan drivers: a learner over a whole stream in one ``lax.scan``; seeds by ``vmap``.

The data table is passed once and every seed indexes it through its own
schedule (a :class:`mpjax.streams.Stream`: row indices, a per-step transform
parameter and a per-seed drift direction), so there are no seeds x T x d
copies. Per step the scan emits scalars only (:class:`Trace`). The library
never calls ``jit``: an entry point does, once per configuration::

    runner = make_runner(learner, dim, make_stream_fn)
    traces = jax.jit(jax.vmap(runner, in_axes=(0, None, None)))(keys, table, targets)

Randomness: one integer seed per run. ``seed_keys`` gives replicate i the key
``fold_in(key(seed), i)``, and inside a replicate each purpose has its own tag
(:data:`TAG_STREAM`, :data:`TAG_INIT`, ...), so adding a feature never shifts
another stream.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mpjax.learners.base import Learner

__all__ = [
    "Trace",
    "TAG_STREAM",
    "TAG_INIT",
    "TAG_LEARNER",
    "seed_keys",
    "purpose_key",
    "run",
    "run_seed",
    "make_runner",
    "validate_data",
]

# Purpose tags for jax.random.fold_in. Never renumber: results depend on them.
TAG_STREAM = 1
TAG_INIT = 2
TAG_LEARNER = 3


class Trace(NamedTuple):
    loss: jax.Array  # f[T] loss of the model before it saw step t's sample
    correct: jax.Array  # bool[T] arg-max prediction (before the update) equals the label
    row: jax.Array  # i32[T] the data row seen at step t (the adversary's pick for "adaptive")


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """Keys of replicates 0..num_seeds-1 of one run with integer ``seed``."""
    root = jax.random.key(seed)
    return jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.arange(num_seeds))


def purpose_key(key: jax.Array, tag: int) -> jax.Array:
    """The key of one purpose (``TAG_*``) inside a replicate."""
    return jax.random.fold_in(key, tag)


def _correct(pred, y):
    if y.ndim == 0:  # a single binary output
        return (pred > 0.5) == (y > 0.5)
    return jnp.argmax(pred) == jnp.argmax(y)


def run(
    learner: Learner,
    state: Any,
    table: jax.Array,
    targets: jax.Array,
    stream: Any,
    transform: Callable | None = None,
    unroll: int = 1,
) -> tuple[Any, Trace]:
    """Runs ``learner`` over one stream in a single ``lax.scan``.

    Args:
      learner: the (possibly multi-output) learner.
      state: its initial state.
      table: f[n, p] data rows (features, or raw inputs when ``transform`` is given).
      targets: f[n, K] one-hot targets (or f[n] for a single output).
      stream: a ``Stream`` with ``idx`` i32[T] (or i32[T, k] candidate pools: the
        adaptive adversary picks the candidate of largest loss under the current
        model), ``aux`` f[T] and ``direction`` f[p].
      transform: optional ``transform(row, aux, direction) -> x`` (drift streams).
      unroll: ``lax.scan`` unroll factor.

    Returns:
      ``(final_state, Trace)`` with per-step scalars.
    """
    adaptive = stream.idx.ndim == 2

    def features(rows, aux):
        x = table[rows]
        if transform is None:
            return x
        if adaptive:
            return jax.vmap(transform, in_axes=(0, None, None))(x, aux, stream.direction)
        return transform(x, aux, stream.direction)

    def body(state, inp):
        rows, aux = inp
        x = features(rows, aux)
        y = targets[rows]
        if adaptive:
            cand_loss = jax.vmap(learner.loss, in_axes=(None, 0, 0))(state, x, y)
            pick = jnp.argmax(cand_loss)
            rows, x, y = rows[pick], x[pick], y[pick]
        pred = learner.predict(state, x)
        state, loss = learner.step(state, x, y)
        return state, Trace(loss, _correct(pred, y), rows.astype(jnp.int32))

    return lax.scan(body, state, (stream.idx, stream.aux), unroll=unroll)


def run_seed(
    learner: Learner,
    dim: int,
    key: jax.Array,
    table: jax.Array,
    targets: jax.Array,
    stream: Any,
    transform: Callable | None = None,
    unroll: int = 1,
) -> tuple[Any, Trace]:
    """:func:`run` for one replicate whose initial state comes from its seed ``key`` (``TAG_INIT``).

    Building the state here, inside the caller's compiled program, matters: passed in as an
    argument instead, Memory-Pair's scan ran 3x slower per step on CPU (measured,
    ``benchmarks.peers``).
    """
    state = learner.init(dim, purpose_key(key, TAG_INIT))
    return run(learner, state, table, targets, stream, transform, unroll)


def make_runner(
    learner: Learner,
    dim: int,
    make_stream: Callable[[jax.Array], Any],
    transform: Callable | None = None,
    unroll: int = 1,
) -> Callable[[jax.Array, jax.Array, jax.Array], Trace]:
    """A function ``runner(key, table, targets) -> Trace`` for one replicate.

    ``make_stream(key)`` builds the replicate's schedule from its stream key;
    the learner is initialised from its own key. ``vmap`` the runner over keys
    with ``in_axes=(0, None, None)`` so the data is shared by every seed.
    """

    def runner(key, table, targets):
        stream = make_stream(purpose_key(key, TAG_STREAM))
        return run_seed(learner, dim, key, table, targets, stream, transform, unroll)[1]

    return runner


def validate_data(xs: np.ndarray, ys: np.ndarray, *, name: str = "data") -> None:
    """Host-side check before any device work: shapes agree and values are finite.

    Raises:
      ValueError: naming the problem (wrong rank, row mismatch, or where the
        first NaN/Inf sits), so bad input is refused instead of propagated.
    """
    xs = np.asarray(xs)
    ys = np.asarray(ys)
    if xs.ndim != 2:
        raise ValueError(f"{name}: features must be a 2-D array [n, d], got shape {xs.shape}")
    if ys.ndim not in (1, 2) or ys.shape[0] != xs.shape[0]:
        raise ValueError(
            f"{name}: targets must be [n] or [n, K] with n = {xs.shape[0]} rows, got shape {ys.shape}"
        )
    if xs.shape[0] == 0:
        raise ValueError(f"{name}: no rows")
    for label, arr in (("features", xs), ("targets", ys)):
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{name}: {label} must be numeric, got dtype {arr.dtype}")
        bad = ~np.isfinite(arr)
        if bad.any():
            where = np.argwhere(bad)[0]
            raise ValueError(
                f"{name}: {label} contain {int(bad.sum())} non-finite value(s) (NaN or Inf); "
                f"first at index {tuple(int(i) for i in where)}. Clean or drop these rows."
            )
