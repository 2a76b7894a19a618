"""Stream schedules: per-seed index arrays into the data plus a transform schedule.

A stream never copies the data: `make_stream` returns indices (and, for drift, a
transform parameter per step) that a scan driver uses to index the table returned by
`stream_table`, passed once to all seeds (DESIGN.md §2):

- `iid`: a fresh random permutation of the n rows per pass; T may be below or above n.
  Permutations are keyed Feistel bijections evaluated at the T positions needed
  (`keyed_permutation`), not sorts of all n rows: a stream costs O(T), not O(n log n).
- `drift`: the same order as `iid` with the same key, plus `aux[t] =
  (t // drift_every) * drift_step`: a rotation angle in degrees for images (default 5
  degrees per 1,000 samples) or a mean-shift amount in standard deviations along a unit
  per-seed `direction` for tabular data (default 0.1 per 1,000). The transform is always
  applied to the original sample (no compounding).
- `adv`: every `block` (500) steps the stream switches to a block of one class; the
  class order is a seeded permutation of the classes present, repeated. Within a class,
  rows follow a seeded (keyed) permutation of that class, cycling.
- `adaptive`: `idx` is i32[T, pool_size] of uniformly random candidates per step; the
  driver picks the candidate with the largest loss under the current model.

Everything here is pure and jittable; `make_stream` vmaps over the key with
`in_axes=(None, 0, None, None)` (labels passed once). Randomness comes from
`jax.random.fold_in(key, tag)` with a fixed tag per purpose. Every draw has an
explicit float32 / int32 dtype, so a stream is a function of the seed and the
configuration only: a float64 run (`jax_enable_x64`) sees the same rows in the
same order (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from mpjax.data.loaders import Dataset

__all__ = [
    "STREAMS",
    "Stream",
    "drift_schedule",
    "keyed_permutation",
    "make_stream",
    "make_transform",
    "rotate_image",
    "stream_table",
]

STREAMS = ("iid", "drift", "adv", "adaptive")

# Purpose tags for fold_in: fixed forever, so adding a stream never shifts another.
_TAG_ORDER = 1       # iid / drift permutations (fold_in(., pass) per pass)
_TAG_DIRECTION = 2   # tabular drift direction
_TAG_CLASS_ORDER = 3  # adv class order
_TAG_CLASS_ROWS = 4  # adv within-class permutation
_TAG_POOL = 5        # adaptive candidate pools

_DEFAULTS = {"drift_every": 1000, "drift_step": None, "block": 500, "pool_size": 8}


class Stream(NamedTuple):
    """A per-seed stream schedule.

    Attributes:
      idx: i32[T] row indices into the table; i32[T, k] candidate pools for "adaptive".
      aux: f32[T] transform parameter per step: rotation angle (degrees) for images,
        shift amount (std units) for tabular data; zeros when unused.
      direction: f32[p] per-seed unit drift direction for tabular data; zeros otherwise.
    """

    idx: jax.Array
    aux: jax.Array
    direction: jax.Array


_FEISTEL_ROUNDS = 4


def _mix32(x: jax.Array) -> jax.Array:
    """The 32-bit finaliser of MurmurHash3 (a bijective avalanche mix of uint32)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def keyed_permutation(round_keys: jax.Array, size: jax.Array, i: jax.Array) -> jax.Array:
    """``pi(i)`` for a keyed pseudo-random permutation ``pi`` of ``range(size)``, elementwise.

    A 4-round balanced Feistel network on ``[0, 4^h)``, ``4^h >= size > 4^(h-1)`` (Luby &
    Rackoff 1988; round function: MurmurHash3's mix of the half-word and the round key),
    restricted to ``range(size)`` by cycle walking (Black & Rogaway 2002): values that land
    outside are mapped again until they are inside, which keeps a bijection. The domain
    is at most 4x the range, so an element walks < 4 times on average. No sort: O(1) per
    element, so a stream of T steps costs O(T) however large the data set is.

    Args:
      round_keys: u32[..., 4] round keys (broadcast against ``i``).
      size: i32[...] the range sizes (>= 1).
      i: i32[...] positions in ``range(size)``.

    Returns:
      i32 ``pi(i)``, a bijection of ``range(size)`` for each fixed key and size.
    """
    size = jnp.asarray(size, jnp.uint32)
    bits = jnp.uint32(32) - jax.lax.clz(jnp.maximum(size, 2) - jnp.uint32(1))  # bit length of size - 1
    h = jnp.where(size <= 1, 0, (bits + 1) // 2).astype(jnp.uint32)
    mask = (jnp.uint32(1) << h) - jnp.uint32(1)

    def pi(x):
        left, right = x >> h, x & mask
        for r in range(_FEISTEL_ROUNDS):
            left, right = right, left ^ (_mix32(right ^ round_keys[..., r]) & mask)
        return (left << h) | right

    y = pi(jnp.asarray(i, jnp.uint32))
    y = jax.lax.while_loop(lambda y: jnp.any(y >= size), lambda y: jnp.where(y >= size, pi(y), y), y)
    return y.astype(jnp.int32)


def _round_keys(key: jax.Array, shape=()) -> jax.Array:
    return jax.random.bits(key, (*shape, _FEISTEL_ROUNDS), jnp.uint32)


def _permutation_passes(key: jax.Array, n: int, T: int) -> jax.Array:
    """i32[T]: concatenated fresh permutations of range(n), one per pass (keyed, sort-free)."""
    passes = max(1, math.ceil(T / n))
    keys = jax.vmap(lambda p: _round_keys(jax.random.fold_in(key, p)))(jnp.arange(passes))  # u32[passes, 4]
    t = jnp.arange(T, dtype=jnp.int32)
    return keyed_permutation(keys[t // n], jnp.full((T,), n, jnp.int32), t % n)


def drift_schedule(T: int, drift_every: int, drift_step) -> jax.Array:
    """f32[T]: `(t // drift_every) * drift_step`, the drift amount at each step."""
    steps = (jnp.arange(T, dtype=jnp.int32) // drift_every).astype(jnp.float32)
    return steps * jnp.asarray(drift_step, jnp.float32)


def _adv_indices(key: jax.Array, labels: jax.Array, T: int, num_classes: int,
                 block: int) -> jax.Array:
    labels = labels.astype(jnp.int32)
    counts = jnp.bincount(labels, length=num_classes)
    offsets = jnp.cumsum(counts) - counts
    # The rows of each class in row order (the same for every seed; computed once under a vmap).
    by_class = jnp.argsort(labels, stable=True).astype(jnp.int32)
    # Each class's own keyed permutation of its rows, applied to the draw count below.
    class_keys = _round_keys(jax.random.fold_in(key, _TAG_CLASS_ROWS), (num_classes,))
    # Class order: a seeded permutation of the classes present, repeated.
    # Explicit float32: under jax_enable_x64 the default dtype would draw other bits, and the
    # stream must depend on the seed and configuration only, never on the precision.
    u = jax.random.uniform(jax.random.fold_in(key, _TAG_CLASS_ORDER), (num_classes,), jnp.float32)
    order = jnp.argsort(jnp.where(counts > 0, u, 2.0))
    present = jnp.maximum(jnp.sum(counts > 0), 1)
    t = jnp.arange(T, dtype=jnp.int32)
    b = t // block
    cls = order[b % present]
    # Earlier draws of this class: one full block per earlier cycle.
    drawn = (b // present) * block + t % block
    size = jnp.maximum(counts[cls], 1)
    within = keyed_permutation(class_keys[cls], size, drawn % size)
    return by_class[offsets[cls] + within].astype(jnp.int32)


def make_stream(kind: str, key: jax.Array, labels: jax.Array, T: int, *, num_classes: int,
                is_image: bool, raw_dim: int, **opts) -> Stream:
    """Builds the stream schedule for one seed (pure; jit/vmap over `key`).

    Args:
      kind: one of `STREAMS`.
      key: PRNG key of this seed.
      labels: i32[n] class index per row (only its length matters except for "adv").
      T: stream length (Python int).
      num_classes: K (Python int).
      is_image: images rotate under drift; tabular rows shift along `direction`.
      raw_dim: p, the width of `Dataset.raw` (Python int).
      **opts: `drift_every` (1000), `drift_step` (5.0 degrees for images, 0.1 std for
        tabular), `block` (500), `pool_size` (8). Options a kind does not use are ignored.

    Returns:
      The `Stream`.

    Raises:
      ValueError: unknown `kind` or option, or a non-positive size.
    """
    if kind not in STREAMS:
        raise ValueError(f"unknown stream kind {kind!r}; valid: {', '.join(STREAMS)}")
    unknown = set(opts) - set(_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown stream options {sorted(unknown)}; valid: {sorted(_DEFAULTS)}")
    o = {**_DEFAULTS, **opts}
    if o["drift_step"] is None:
        o["drift_step"] = 5.0 if is_image else 0.1
    for name in ("drift_every", "block", "pool_size"):
        if int(o[name]) < 1:
            raise ValueError(f"{name} must be >= 1, got {o[name]}")
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    n = labels.shape[0]
    aux = jnp.zeros((T,), jnp.float32)
    direction = jnp.zeros((raw_dim,), jnp.float32)
    if kind in ("iid", "drift"):
        idx = _permutation_passes(jax.random.fold_in(key, _TAG_ORDER), n, T)
        if kind == "drift":
            aux = drift_schedule(T, int(o["drift_every"]), o["drift_step"])
            if not is_image:
                v = jax.random.normal(jax.random.fold_in(key, _TAG_DIRECTION), (raw_dim,), jnp.float32)
                direction = v / jnp.linalg.norm(v)
    elif kind == "adv":
        idx = _adv_indices(key, labels, T, num_classes, int(o["block"]))
    else:
        idx = jax.random.randint(jax.random.fold_in(key, _TAG_POOL), (T, int(o["pool_size"])),
                                 0, n, dtype=jnp.int32)
    return Stream(idx=idx, aux=aux, direction=direction)


def rotate_image(image: jax.Array, angle_deg: jax.Array) -> jax.Array:
    """Rotates an image counter-clockwise about its centre (bilinear, zero fill).

    Matches `np.rot90(image)` at 90 degrees up to interpolation rounding.

    Args:
      image: f32[H, W] or f32[H, W, C] (channels rotate independently).
      angle_deg: f32[] angle in degrees.

    Returns:
      The rotated image, same shape.
    """
    h, w = image.shape[0], image.shape[1]
    theta = jnp.deg2rad(jnp.asarray(angle_deg, jnp.float32))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    ci, cj = (h - 1) / 2.0, (w - 1) / 2.0
    r, c = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - ci,
                        jnp.arange(w, dtype=jnp.float32) - cj, indexing="ij")
    # Output pixel (r, c) reads the source at the inverse rotation of (r, c).
    coords = [cos * r + sin * c + ci, -sin * r + cos * c + cj]

    def one(channel):
        return jax.scipy.ndimage.map_coordinates(channel, coords, order=1, mode="constant", cval=0.0)

    if image.ndim == 2:
        return one(image)
    return jax.vmap(one, in_axes=-1, out_axes=-1)(image)


def _phi(raw: jax.Array, scale: float) -> jax.Array:
    """The shared feature map: append bias 1, then v / max(scale, ||v||)."""
    v = jnp.concatenate([raw, jnp.ones((1,), raw.dtype)])
    # Same formula and margin as mpjax.data.loaders: ||phi(v)|| <= 1 despite f32 rounding.
    return v / jnp.maximum(jnp.float32(scale), jnp.linalg.norm(v) * jnp.float32(1.0 + 1e-6))


def make_transform(dataset: Dataset, kind: str) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array] | None:
    """The per-step feature transform for streams that need one.

    Args:
      dataset: the loaded `Dataset` (only its static metadata is captured).
      kind: one of `STREAMS`.

    Returns:
      None for "iid", "adv" and "adaptive" (index `dataset.x` directly). For "drift",
      `transform(raw_row f32[p], aux f32[], direction f32[p]) -> f32[d]`: rotate the
      image by `aux` degrees (per channel) or shift the row by `aux * direction`, then
      append the bias and apply the same scaling as `dataset.x`. Pure and jittable.

    Raises:
      ValueError: unknown `kind`.
    """
    if kind not in STREAMS:
        raise ValueError(f"unknown stream kind {kind!r}; valid: {', '.join(STREAMS)}")
    if kind != "drift":
        return None
    scale = float(dataset.feature_scale)
    shape = dataset.image_shape

    if shape is not None:
        def transform(raw_row, aux, direction):
            del direction
            img = rotate_image(raw_row.reshape(shape), aux)
            return _phi(img.reshape(-1), scale)
    else:
        def transform(raw_row, aux, direction):
            return _phi(raw_row + aux * direction, scale)

    return transform


def stream_table(dataset: Dataset, kind: str) -> np.ndarray:
    """The table a stream's indices point into: `dataset.raw` for drift, else `dataset.x`.

    Raises:
      ValueError: unknown `kind`.
    """
    if kind not in STREAMS:
        raise ValueError(f"unknown stream kind {kind!r}; valid: {', '.join(STREAMS)}")
    return dataset.raw if kind == "drift" else dataset.x
