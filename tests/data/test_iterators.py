"""Tests for mpjax/data/iterators.py and the sanity_check CLI."""

import numpy as np
import pytest

from mpjax import streams
from mpjax.data import (get_covtype_stream, get_rotating_fashion_mnist_stream, get_rotating_mnist_stream,
                        load_dataset, make_stream)
from mpjax.data import iterators, sanity_check


@pytest.fixture(scope="module")
def cov():
    return load_dataset("covtype", data_source="simulated", max_rows=300)


def test_generator_follows_the_pure_schedule(cov):
    pairs = list(make_stream(cov, "adv", seed=1, T=600))
    assert len(pairs) == 600
    x, y = pairs[0]
    assert x.shape == (55,) and y.shape == (7,) and y.sum() == 1
    labels = [int(np.argmax(y)) for _, y in pairs]
    assert len(set(labels[:500])) == 1


def test_drift_generator_matches_transform(cov):
    out = list(sanity_check.iterate_stream(cov, "drift", seed=0, T=1100, drift_every=100))
    x_last, _, row, aux = out[-1]
    assert aux == pytest.approx(1.0)  # 10 steps of 0.1
    assert np.linalg.norm(x_last) <= 1.0 + 1e-6
    x_first, _, row0, _ = out[0]
    np.testing.assert_allclose(x_first, cov.x[row0], rtol=1e-5, atol=1e-7)


def test_adaptive_needs_loss_fn_and_picks_max(cov):
    with pytest.raises(ValueError, match="loss_fn"):
        make_stream(cov, "adaptive", T=10)
    w = np.random.default_rng(0).normal(size=(55, 7))
    loss = lambda x, y: 0.5 * float(np.sum((x @ w - y) ** 2))  # noqa: E731
    pool = np.asarray(iterators._schedule(cov, "adaptive", 0, 20, {}).idx)
    for t, (x, y) in enumerate(make_stream(cov, "adaptive", seed=0, T=20, loss_fn=loss)):
        assert loss(x, y) == pytest.approx(max(loss(cov.x[i], cov.y[i]) for i in pool[t]))


def test_named_generators():
    xs = list(get_rotating_mnist_stream("iid", T=5, data_source="subset", image_size=14))
    assert len(xs) == 5 and xs[0][0].shape == (197,)
    xs = list(get_covtype_stream("drift", T=5, data_source="simulated", max_rows=100))
    assert xs[0][1].shape == (7,)
    xs = list(get_rotating_fashion_mnist_stream("drift", T=5, data_source="simulated", max_rows=100,
                                                image_size=14))
    assert xs[0][0].shape == (197,) and xs[0][1].shape == (10,)


@pytest.mark.parametrize("dataset,mode", [(d, m) for d in ("rotmnist", "covtype", "cifar10") for m in streams.STREAMS]
                         + [("fashion_mnist", "drift")])
def test_sanity_check_cli_runs(dataset, mode, capsys):
    args = ["--dataset", dataset, "--mode", mode, "--T", "300", "--max_rows", "200",
            "--image_size", "8"] + (["--data_source", "simulated"] if dataset != "rotmnist" else [])
    assert sanity_check.main(args) == 0
    out = capsys.readouterr().out
    assert "provenance" in out and out.count("  t=") == 5
    assert len([ln for ln in out.splitlines() if ln.startswith("stream sha256: ")]) == 1
    if mode == "adaptive":
        assert "zero model" in out


@pytest.mark.parametrize("mode", ["drift", "adv"])
def test_sanity_check_hash_is_deterministic(mode):
    ds = load_dataset("rotmnist", data_source="subset", max_rows=300, image_size=14)
    a = sanity_check.stream_sha256(ds, mode, 7, 1200)
    assert a == sanity_check.stream_sha256(ds, mode, 7, 1200)
    assert a != sanity_check.stream_sha256(ds, mode, 8, 1200)
