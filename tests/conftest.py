"""Shared pytest setup: strict rank promotion, opt-in float64, no network."""

import socket

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
# Start the backends now: an entry point's main() called in a test then finds them running and
# leaves XLA_FLAGS alone (experiments.common.configure_xla_cpu: "too late"), whatever the test
# order, instead of compiling every later test of this worker with its settings.
jax.devices()


@pytest.fixture
def x64():
    """Runs the test with float64 enabled; everything else stays float32."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests never touch the network: any socket connection fails loudly."""

    def _refuse(*args, **kwargs):
        raise OSError("network access is disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
