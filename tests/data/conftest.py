"""Data tests: an empty cache, no prepared tfds data, no OS-package copies and unreachable
mirrors by default (so a machine with e.g. Debian's dataset-fashion-mnist installed tests
the same paths as CI)."""

import pytest

from mpjax.data import loaders


@pytest.fixture(autouse=True)
def _isolated_data_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MPJAX_DATA_DIR", str(tmp_path / "default_cache"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no_tfds"))
    for name in loaders.DATASETS:  # never resolve a real host name, even by accident
        monkeypatch.setenv(f"MPJAX_DATA_URL_{name.upper()}", (tmp_path / "no_mirror").as_uri())
        monkeypatch.setenv(f"MPJAX_DATA_SYSTEM_DIR_{name.upper()}", str(tmp_path / "no_system_copy"))
