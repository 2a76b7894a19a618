"""One OpenBLAS thread for the deletion tests (see experiments.common.single_threaded_blas)."""

import pytest

from experiments import common


@pytest.fixture(autouse=True, scope="package")
def _single_threaded_blas():
    with common.single_threaded_blas():
        yield
