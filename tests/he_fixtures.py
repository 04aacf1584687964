"""Session-scoped CKKS keys for the HE tests (made once: key generation is the slow part)."""
import numpy as np
import pytest

from securegal.privacy.he import CkksParams, SecretContext


@pytest.fixture(scope="session")
def secret_context():
    return SecretContext(CkksParams())


@pytest.fixture(scope="session")
def public_context(secret_context):
    return secret_context.public_context()


def encrypt_columns(secret, public, r):
    """Residual columns as a feature party loads them."""
    r = np.asarray(r, dtype=np.float64).reshape(r.shape[0], -1)
    return [[public.load_ciphertext(b) for b in secret.encrypt(r[:, k])] for k in range(r.shape[1])]
