import pytest

from securegal.bench.lock import one_benchmark_at_a_time


@pytest.fixture(autouse=True, scope="session")
def _one_benchmark_at_a_time():
    """``make bench`` and ``securegal bench`` wait for each other (securegal.bench.lock)."""
    with one_benchmark_at_a_time():
        yield
