"""Seed-compatible generators yielding `(x_t, y_t)` NumPy pairs one at a time.

These serve code written against the original NumPy API. They use the same schedules
as the scan drivers: the pure `mpjax.streams.make_stream` is jitted once, the indices
are brought to the host, and the drift transform is jitted once (vmapped over chunks of
steps) and applied lazily.

Name clash, on purpose: `mpjax.streams.make_stream(kind, key, labels, T, ...)` is the
pure schedule builder; `mpjax.data.make_stream(dataset, mode, seed, T)` (this module) is
the host-side generator.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from mpjax import streams
from mpjax.data.loaders import Dataset, load_dataset

__all__ = [
    "get_cifar10_stream",
    "get_covtype_stream",
    "get_rotating_fashion_mnist_stream",
    "get_rotating_mnist_stream",
    "iterate_stream",
    "make_stream",
]

_CHUNK = 512
_LOAD_KW = ("data_source", "require_real", "cache_dir", "image_size", "grayscale", "max_rows",
            "base_url", "checksums", "timeout", "progress")


@functools.lru_cache(maxsize=32)
def _schedule_fn(mode: str, T: int, num_classes: int, is_image: bool, raw_dim: int, opts: tuple):
    """One jitted schedule builder per static configuration (compiled once, reused)."""
    return jax.jit(lambda key, labels: streams.make_stream(
        mode, key, labels, T, num_classes=num_classes, is_image=is_image, raw_dim=raw_dim,
        **dict(opts)))


@functools.lru_cache(maxsize=32)
def _batched_transform(image_shape, scale: float, raw_dim: int):
    """The drift transform, vmapped over a chunk of steps and jitted once per data layout."""
    stub = Dataset(name="", x=np.empty((0, raw_dim + 1), np.float32), y=np.empty((0, 1)),
                   labels=np.empty(0, np.int32), num_classes=1, raw=np.empty((0, raw_dim)),
                   image_shape=image_shape, provenance="", source="", feature_scale=scale)
    return jax.jit(jax.vmap(streams.make_transform(stub, "drift"), in_axes=(0, 0, None)))


def _schedule(dataset: Dataset, mode: str, seed: int, T: int, opts) -> streams.Stream:
    fn = _schedule_fn(mode, T, dataset.num_classes, dataset.image_shape is not None,
                      dataset.raw.shape[1], tuple(sorted(opts.items())))
    return jax.device_get(fn(jax.random.key(seed), jnp.asarray(dataset.labels)))


def iterate_stream(dataset: Dataset, mode: str, seed: int = 42, T: int = 10000,
                   loss_fn: Callable[[np.ndarray, np.ndarray], float] | None = None,
                   **opts) -> Iterator[tuple[np.ndarray, np.ndarray, int, float]]:
    """Like `make_stream` but yields `(x_t, y_t, row, aux_t)` (row index and drift amount).

    Args:
      dataset: the loaded data.
      mode: one of `mpjax.streams.STREAMS`.
      seed: stream seed (the key is `jax.random.key(seed)`).
      T: number of samples.
      loss_fn: `loss_fn(x, y) -> float` under the caller's current model; required for
        "adaptive", which yields the candidate with the largest loss (first on ties).
      **opts: stream options (`drift_every`, `drift_step`, `block`, `pool_size`).

    Returns:
      A generator of (x f32[d], y f32[K], row int, aux float).

    Raises:
      ValueError: "adaptive" without `loss_fn`, or an unknown mode/option.
    """
    if mode not in streams.STREAMS:
        raise ValueError(f"unknown stream mode {mode!r}; valid: {', '.join(streams.STREAMS)}")
    if mode == "adaptive" and loss_fn is None:
        raise ValueError("the 'adaptive' stream needs loss_fn(x, y) -> float (the loss of the "
                         "current model) to pick the max-loss candidate from each pool")
    sched = _schedule(dataset, mode, seed, T, opts)  # validates options eagerly
    return _iterate(dataset, mode, T, loss_fn, sched)


def _iterate(dataset, mode, T, loss_fn, sched):
    idx, aux, direction = np.asarray(sched.idx), np.asarray(sched.aux), sched.direction
    if mode == "adaptive":
        for t in range(T):
            pool = idx[t]
            losses = [float(loss_fn(dataset.x[i], dataset.y[i])) for i in pool]
            row = int(pool[int(np.argmax(losses))])
            yield dataset.x[row], dataset.y[row], row, 0.0
        return
    if streams.make_transform(dataset, mode) is None:
        for t in range(T):
            row = int(idx[t])
            yield dataset.x[row], dataset.y[row], row, float(aux[t])
        return
    batched = _batched_transform(dataset.image_shape, float(dataset.feature_scale),
                                 dataset.raw.shape[1])
    for lo in range(0, T, _CHUNK):
        rows = idx[lo:lo + _CHUNK]
        m = rows.shape[0]
        pad = _CHUNK - m  # fixed chunk shape: one compile
        feats = np.asarray(batched(np.pad(dataset.raw[rows], ((0, pad), (0, 0))),
                                   np.pad(aux[lo:lo + m], (0, pad)), direction))[:m]
        for j in range(m):
            yield feats[j], dataset.y[rows[j]], int(rows[j]), float(aux[lo + j])


def make_stream(dataset: Dataset, mode: str, seed: int = 42, T: int = 10000,
                loss_fn: Callable[[np.ndarray, np.ndarray], float] | None = None,
                **opts) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Generator of `(x_t, y_t)` pairs from `dataset` under the `mode` schedule.

    Not to be confused with the pure `mpjax.streams.make_stream` (module docstring).

    Args:
      dataset: the loaded data.
      mode: "iid" | "drift" | "adv" | "adaptive".
      seed: stream seed.
      T: number of samples.
      loss_fn: required for "adaptive" (see `iterate_stream`).
      **opts: stream options.

    Returns:
      A generator of (x f32[d], y f32[K] one-hot).
    """
    return ((x, y) for x, y, _, _ in iterate_stream(dataset, mode, seed, T, loss_fn, **opts))


def _named(name: str, mode: str, seed: int, T: int, loss_fn, kw) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    load_kw = {k: kw.pop(k) for k in list(kw) if k in _LOAD_KW}
    dataset = load_dataset(name, seed=seed, **load_kw)
    return make_stream(dataset, mode, seed=seed, T=T, loss_fn=loss_fn, **kw)


def get_rotating_mnist_stream(mode: str, seed: int = 42, T: int = 10000, loss_fn=None,
                              **kw) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """MNIST stream generator (drift = rotating MNIST).

    Args:
      mode: "iid" | "drift" | "adv" | "adaptive".
      seed: data and stream seed.
      T: number of samples.
      loss_fn: required for "adaptive".
      **kw: `load_dataset` keywords (data_source, require_real, cache_dir, image_size,
        max_rows, ...) and stream options (drift_every, drift_step, block, pool_size).

    Returns:
      A generator of (x f32[d], y f32[10]).
    """
    return _named("rotmnist", mode, seed, T, loss_fn, dict(kw))


def get_covtype_stream(mode: str, seed: int = 42, T: int = 10000, loss_fn=None,
                       **kw) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Covertype stream generator; arguments as `get_rotating_mnist_stream` (y is f32[7])."""
    return _named("covtype", mode, seed, T, loss_fn, dict(kw))


def get_cifar10_stream(mode: str, seed: int = 42, T: int = 10000, loss_fn=None,
                       **kw) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """CIFAR-10 stream generator; arguments as `get_rotating_mnist_stream` (y is f32[10])."""
    return _named("cifar10", mode, seed, T, loss_fn, dict(kw))


def get_rotating_fashion_mnist_stream(mode: str, seed: int = 42, T: int = 10000, loss_fn=None,
                                      **kw) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST stream generator (drift = rotating Fashion-MNIST); arguments as
    `get_rotating_mnist_stream` (y is f32[10])."""
    return _named("fashion_mnist", mode, seed, T, loss_fn, dict(kw))
