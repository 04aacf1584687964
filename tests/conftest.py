import numpy as np
import pytest

from securegal.privacy.he import CkksParams, SecretContext


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
