"""Per-round cost of protecting the residuals (pytest-benchmark): plaintext, CKKS, Paillier.

Run: ``pytest benchmarks/test_crypto.py --benchmark-only`` (``securegal bench crypto`` prints the
same comparison as a table, with bytes each way). The CKKS party round is timed in CPU time of
this process (SEAL is single-threaded: the one-core cost, even on a shared machine). Targets (one
core): CKKS feature-party compute median <= 30 ms at (4096, 8) (issue 13) and <= 300 ms at
(65536, 16); CKKS >= 1000x faster than Paillier on the same job (issue 3): met on the whole job
(encryption, party compute, decryption: 2,192x at (4096, 8), 11,407x at (65536, 16)); on the party's
compute alone 558x at (4096, 8) and 1,336x from (4096, 32) on (2026-12-05, Paillier in fixed point
with one shared scale, as a fair baseline would be).
"""
import time

import numpy as np
import pytest

from securegal.bench import crypto
from securegal.privacy.he import SecretContext
from securegal.privacy.he.smoother import EncryptedSmoother

SIZES = [pytest.param(n, p, id=f"{n}x{p}") for n, p in crypto.SIZES]
PAILLIER_N = 32  # Paillier is measured at 32 rows and compared per row


@pytest.fixture(scope="module", params=["ckks", "ckks+dp"])
def keys(request):
    """The chain of a CKKS run without feature-DP, and the longer one a DP party uses."""
    secret = SecretContext(crypto.ckks_params(feature_dp=request.param == "ckks+dp"))
    return secret, secret.public_context()


@pytest.mark.parametrize("n,p", SIZES)
def test_plain_party_round(benchmark, n, p):
    op, r = crypto.make_job(n, p)
    benchmark(lambda: op.phi_train @ (op.A @ r))


@pytest.mark.benchmark(timer=time.process_time)
@pytest.mark.parametrize("n,p", SIZES)
def test_ckks_party_round(benchmark, keys, n, p):
    secret, public = keys
    op, r = crypto.make_job(n, p)
    smoother = EncryptedSmoother(public, op)
    cts = [public.load_ciphertext(b) for v in smoother.layout.input_vectors(r[:, None]) for b in secret.encrypt(v)]
    fitted = benchmark.pedantic(lambda: smoother.fit([cts]), rounds=7, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(rotations=smoother.last_rotations, slots=public.slots)
    f = secret.decrypt(fitted.f[0], n, pairs=smoother.layout.pairs)
    want = op.phi_train @ (op.A @ r)
    assert np.abs(f - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.parametrize("n,p", SIZES)
def test_ckks_owner_encrypt(benchmark, keys, n, p):
    secret, _ = keys
    _, r = crypto.make_job(n, p)
    blobs = benchmark(lambda: secret.encrypt(r))
    benchmark.extra_info["bytes_to_party"] = sum(map(len, blobs))


@pytest.mark.parametrize("p", [8, 32])
def test_paillier_full_job_per_row(benchmark, p):
    """The full enc(f) job on Paillier at n=32; multiply by n/32 for a size above (linear in n)."""
    keys = crypto._paillier_keys()
    rows = benchmark.pedantic(lambda: crypto.bench_paillier(PAILLIER_N, p, PAILLIER_N, keys), rounds=1, iterations=1)
    benchmark.extra_info.update({r.scheme: r.party_seconds for r in rows})
