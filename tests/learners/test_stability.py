"""Stability of every learner (DESIGN.md §2): rounding-sized perturbations stay small.

Two float64 runs on the same stream whose initial weights differ by 1e-10 must stay
within 1e-6 (relative to |W_t|) of each other at every step. Streams are the
experiment's: simulated Covertype (adv, iid) and the real MNIST subset with drift.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import learners, streams
from mpjax import run as run_lib
from mpjax.data import load_dataset

EPS = 1e-10
CELLS = [("covtype", "adv"), ("covtype", "iid"), ("rotmnist", "drift")]
# The experiment's settings (configs/regret.py) for the learners.
HYPER = {
    "memorypair": {"learning_rate": 2.0, "l2": 1e-4, "clip_norm": 1.0},
    "sgd": {"learning_rate": 2.0, "l2": 1e-4, "clip_norm": 10.0},
    "adagrad": {"learning_rate": 0.1, "l2": 1e-4, "clip_norm": 10.0},
    "ons": {"l2": 1e-4, "clip_norm": 10.0},
    "rls": {"l2": 1e-3},
}


@functools.lru_cache(maxsize=None)
def _dataset(name):
    if name == "rotmnist":
        return load_dataset("rotmnist", data_source="subset", image_size=14, progress=False)
    return load_dataset("covtype", data_source="simulated", max_rows=50_000, progress=False)


@functools.lru_cache(maxsize=None)
def stream_xy(name, kind, T, seed=0):
    """Features and one-hot targets of one seed's stream, in the order the learner sees them (float64)."""
    ds = _dataset(name)
    key = run_lib.purpose_key(run_lib.seed_keys(42, seed + 1)[seed], run_lib.TAG_STREAM)
    with jax.enable_x64(True):
        st = streams.make_stream(kind, key, jnp.asarray(ds.labels, jnp.int32), T, num_classes=ds.num_classes,
                                 is_image=ds.image_shape is not None, raw_dim=ds.raw.shape[1])
        rows = np.asarray(st.idx)
        x = jnp.asarray(streams.stream_table(ds, kind)[rows], jnp.float64)
        transform = streams.make_transform(ds, kind)
        if transform is not None:
            x = jax.jit(jax.vmap(transform, in_axes=(0, 0, None)))(x, st.aux, st.direction)
        return np.asarray(x, np.float64), np.asarray(ds.y[rows], np.float64)


def perturbation_gap(learner, x, y, eps=EPS, seed=0):
    """Per step: |W_t - W'_t| / eps (amplification) and |W_t - W'_t| / |W_t| for |W_0 - W'_0| = eps."""
    learner = learners.multi_output(learner, y.shape[1])
    with jax.enable_x64(True):
        state = learner.init(x.shape[1], jax.random.key(0))
        delta = np.random.default_rng(seed).normal(size=state.w.shape)
        other = state._replace(w=state.w + jnp.asarray(delta * eps / np.linalg.norm(delta)))

        def body(carry, xy):
            a, b = carry
            a, _ = learner.step(a, *xy)
            b, _ = learner.step(b, *xy)
            gap = jnp.linalg.norm(a.w - b.w)
            return (a, b), (gap / eps, gap / jnp.maximum(jnp.linalg.norm(a.w), 1e-300))

        _, (amp, rel) = jax.jit(lambda s, o, x, y: jax.lax.scan(body, (s, o), (x, y)))(
            state, other, jnp.asarray(x), jnp.asarray(y))
        return np.asarray(amp), np.asarray(rel)


@pytest.mark.parametrize("name", list(learners.LEARNERS))
@pytest.mark.parametrize("dataset,kind", CELLS)
def test_perturbed_runs_stay_together(name, dataset, kind):
    x, y = stream_xy(dataset, kind, 2000)
    amp, rel = perturbation_gap(learners.get(name, **HYPER[name]), x, y)
    assert np.all(np.isfinite(amp))
    assert rel[10:].max() <= 1e-6, f"relative gap {rel.max():.3g}, amplification {amp.max():.3g}"
    assert amp.max() <= 1e3


def test_memory_pair_float32_and_float64_agree():
    """The same stream in float32 and float64: per-step losses and their sum agree closely."""
    x, y = stream_xy("covtype", "adv", 2000)
    learner = learners.multi_output(learners.get("memorypair", **HYPER["memorypair"]), 7)

    def losses(dtype):
        state = learner.init(x.shape[1], jax.random.key(0))
        f = jax.jit(lambda s, x, y: jax.lax.scan(lambda s, xy: learner.step(s, *xy), s, (x, y))[1])
        return np.asarray(f(state, jnp.asarray(x, dtype), jnp.asarray(y, dtype)), np.float64)

    l32 = losses(jnp.float32)
    with jax.enable_x64(True):
        l64 = losses(jnp.float64)
    assert abs(l32.sum() - l64.sum()) / l64.sum() <= 1e-5
    assert np.max(np.abs(l32 - l64)) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("dataset,kind", CELLS)
def test_memory_pair_full_length_perturbation(dataset, kind):
    x, y = stream_xy(dataset, kind, 100_000)
    amp, rel = perturbation_gap(learners.get("memorypair", **HYPER["memorypair"]), x, y)
    assert rel[10:].max() <= 1e-6 and amp.max() <= 1e3
