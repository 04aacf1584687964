"""Helpers for the HE tests (the session-scoped keys are fixtures in conftest.py)."""
import numpy as np


def encrypt_residuals(secret, public, r, layout):
    """Residuals (n, K) as a feature party loads them: per vector, its chunks."""
    cts = [public.load_ciphertext(b) for v in layout.input_vectors(np.asarray(r, dtype=np.float64))
           for b in secret.encrypt(v)]
    return [cts[i:i + layout.chunks] for i in range(0, len(cts), layout.chunks)]


def decrypt_outputs(secret, vectors, layout):
    """(n, K) plaintext from encrypted output vectors in ``layout``."""
    return layout.output_array([secret.decrypt(chunks, layout.length, layout.pairs) for chunks in vectors])
