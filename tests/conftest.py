import numpy as np
import pytest

from securegal.privacy.he import CkksParams, SecretContext


def pytest_collection_modifyitems(config, items):
    """Files with a slow test first: under ``--dist loadfile --no-loadscope-reorder`` (``make test``)
    the long files start at once and the short ones fill in behind them, so no long file is left
    running alone at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# CKKS keys for the HE tests, made once per session: key generation is the slow part.
@pytest.fixture(scope="session")
def secret_context():
    return SecretContext(CkksParams())


@pytest.fixture(scope="session")
def public_context(secret_context):
    return secret_context.public_context()


# The chain CKKS residuals use without feature-DP (one rescaling prime; params.RESIDUAL_CKKS_PARAMS).
@pytest.fixture(scope="session")
def residual_secret_context():
    from securegal.privacy.he.params import RESIDUAL_CKKS_PARAMS

    return SecretContext(RESIDUAL_CKKS_PARAMS)


@pytest.fixture(scope="session")
def residual_public_context(residual_secret_context):
    return residual_secret_context.public_context()


@pytest.fixture(autouse=True, scope="session")
def _a_benchmark_lock_of_the_tests_own(tmp_path_factory):
    """The tests' own ``securegal bench`` runs must not wait for (or hold up) a real benchmark on
    the machine, nor each other across test sessions."""
    from securegal.bench import lock

    path = tmp_path_factory.mktemp("bench-lock") / "bench.lock"
    patch = pytest.MonkeyPatch()
    patch.setattr(lock, "lock_path", lambda: path)
    yield
    patch.undo()


@pytest.fixture(autouse=True, scope="session")
def _a_table_registry_of_the_sessions_own(tmp_path_factory):
    """The module- and session-scoped fixtures' ledgers, set up before any test's own registry:
    never the user's registry."""
    from securegal.privacy.dp.registry import STATE_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STATE_ENV, str(tmp_path_factory.mktemp("session-state")))
        yield


@pytest.fixture(autouse=True)
def _a_table_registry_of_each_tests_own(tmp_path_factory, _a_table_registry_of_the_sessions_own):
    """Each test serves its tables with ledgers of its own, often the same built-in tables as
    other tests: a registry of the machine's ledgers per test (the party processes it starts
    inherit it), none of them in the user's own. Its own MonkeyPatch: a test's monkeypatch.undo()
    must not put the user's registry back."""
    from securegal.privacy.dp.registry import STATE_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STATE_ENV, str(tmp_path_factory.mktemp("state")))
        yield
