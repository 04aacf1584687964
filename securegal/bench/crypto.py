"""``securegal bench crypto``: what protecting the residuals costs, per GAL round and party.

The job: a feature party with a linear smoother (``A`` (p, n), ``Phi`` (n, p)) and the label
owner's residual column ``r`` (n,). Schemes:

- ``plain``: r travels in the clear; the party computes ``f = Phi (A r)``.
- ``ckks``: r travels CKKS-encrypted (seeded symmetric); the party returns ``enc(f)``.
- ``paillier_fate``: FATE-style, r encrypted element-wise (phe, 2048-bit); the party computes
  ``enc(Phi^T r)``, adds a random mask and the label owner decrypts the p masked values (which
  hands the party ``Phi^T r``: a weaker protocol, shown because it is what FATE-style systems do).
- ``paillier_full``: the same job as CKKS, ``enc(f)`` with ``f = Phi (A r)``, on Paillier.

Paillier is measured at a small ``n`` and extrapolated linearly in n (its costs are per element);
rows say so in ``extrapolated_from_n``. Times are seconds (medians), sizes bytes. The party's
compute is reported as wall-clock time and as CPU time of this process (``party_cpu_seconds``):
SEAL runs on one thread, so on a shared machine the CPU time is the one-core cost.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import ConfigError
from ..learners.linear import LinearLearner
from ..privacy.he import CkksParams, SecretContext
from ..privacy.he.smoother import EncryptedSmoother
from ..privacy.he.wire import serialize

SIZES = ((4096, 8), (4096, 32), (16384, 32), (65536, 16))
PAILLIER_BITS = 2048
PAILLIER_CIPHERTEXT_BYTES = 2 * PAILLIER_BITS // 8  # an element of Z_{n^2}


@dataclass(frozen=True)
class Row:
    n: int
    p: int
    scheme: str
    party_seconds: float
    party_cpu_seconds: float
    owner_encrypt_seconds: float
    owner_decrypt_seconds: float
    bytes_to_party: int
    bytes_to_owner: int
    extrapolated_from_n: int | None = None
    rotations: int | None = None


def make_job(n: int, p: int, seed: int = 0):
    """A ridge smoother on p-1 random features plus the intercept, and a residual column."""
    rng = np.random.default_rng(seed)
    op = LinearLearner().operator(rng.normal(size=(n, p - 1)))
    return op, rng.normal(size=n)


def _median_times(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall-clock and CPU seconds of ``fn()`` over ``repeats`` calls, and its last result."""
    wall, cpu, out = [], [], None
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu), out


def _median_time(fn, repeats: int) -> tuple[float, object]:
    wall, _, out = _median_times(fn, repeats)
    return wall, out


def bench_plain(n: int, p: int, repeats: int = 5) -> Row:
    op, r = make_job(n, p)
    seconds, cpu, _ = _median_times(lambda: op.phi_train @ (op.A @ r), repeats)
    return Row(n, p, "plain", seconds, cpu, 0.0, 0.0, 8 * n, 8 * n)


def bench_ckks(n: int, p: int, repeats: int = 5, secret: SecretContext | None = None, public=None) -> Row:
    secret = secret or SecretContext(CkksParams())
    public = public or secret.public_context()
    op, r = make_job(n, p)
    smoother = EncryptedSmoother(public, op)
    enc_seconds, blobs = _median_time(lambda: secret.encrypt(r), repeats)
    cts = [public.load_ciphertext(b) for b in blobs]
    party_seconds, party_cpu, fitted = _median_times(lambda: smoother.fit([cts]), repeats)
    out = serialize(fitted.f[0])
    received = [secret.load_ciphertext(b) for b in out]
    dec_seconds, f = _median_time(lambda: secret.decrypt(received, n), repeats)
    want = op.phi_train @ (op.A @ r)
    error = float(np.abs(f - want).max() / np.abs(want).max())
    if not error < 1e-4:
        raise RuntimeError(f"CKKS result off by {error:.2e} (relative) at n={n}, p={p}")
    return Row(n, p, "ckks", party_seconds, party_cpu, enc_seconds, dec_seconds, sum(map(len, blobs)), sum(map(len, out)),
               rotations=smoother.last_rotations)


def _paillier_keys():
    try:
        from phe import paillier
    except ImportError:
        raise ConfigError("the Paillier comparison needs the phe package (pip install 'securegal[dev]'); "
                          "or pass --paillier-n 0 to skip it") from None
    return paillier.generate_paillier_keypair(n_length=PAILLIER_BITS)


def _enc_dot(weights: np.ndarray, cts: list):
    acc = cts[0] * float(weights[0])
    for w, c in zip(weights[1:], cts[1:]):
        acc = acc + c * float(w)
    return acc


def bench_paillier(n: int, p: int, measure_n: int = 64, keys=None) -> list[Row]:
    """Both Paillier variants, measured at ``measure_n`` rows and scaled linearly to ``n``."""
    pub, priv = keys or _paillier_keys()
    op, r = make_job(measure_n, p)
    scale = n / measure_n
    started = time.perf_counter()
    enc_r = [pub.encrypt(float(v)) for v in r]
    enc_seconds = time.perf_counter() - started

    started, started_cpu = time.perf_counter(), time.process_time()  # FATE-style: masked enc(Phi^T r)
    rng = np.random.default_rng(1)
    masks = rng.normal(size=p) * 1e3
    masked = [_enc_dot(op.phi_train[:, j], enc_r) + float(masks[j]) for j in range(p)]
    fate_party, fate_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    started = time.perf_counter()
    [priv.decrypt(c) for c in masked]
    fate_dec = time.perf_counter() - started

    started, started_cpu = time.perf_counter(), time.process_time()  # the full job: A enc(r), Phi enc(z)
    enc_z = [_enc_dot(op.A[j], enc_r) for j in range(p)]
    enc_f = [_enc_dot(op.phi_train[i], enc_z) for i in range(measure_n)]
    full_party, full_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    started = time.perf_counter()
    f = np.array([priv.decrypt(c) for c in enc_f])
    full_dec = time.perf_counter() - started
    want = op.phi_train @ (op.A @ r)
    if not np.allclose(f, want, rtol=1e-6, atol=1e-9):
        raise RuntimeError("Paillier result does not match plaintext")
    # per-element costs scale with n; FATE's p masked values (and their decryption) do not
    c = PAILLIER_CIPHERTEXT_BYTES
    return [
        Row(n, p, "paillier_fate", fate_party * scale, fate_cpu * scale, enc_seconds * scale, fate_dec,
            c * n, c * p + 8 * p, extrapolated_from_n=measure_n),
        Row(n, p, "paillier_full", full_party * scale, full_cpu * scale, enc_seconds * scale, full_dec * scale,
            c * n, c * n, extrapolated_from_n=measure_n),
    ]


def run(sizes: Iterable[tuple[int, int]] = SIZES, repeats: int = 5, paillier_n: int = 64) -> list[Row]:
    """Every scheme at every (n, p); one shared CKKS key and one Paillier key pair."""
    secret = SecretContext(CkksParams())
    public = secret.public_context()
    keys = _paillier_keys() if paillier_n > 0 else None
    rows: list[Row] = []
    for n, p in sizes:
        rows.append(bench_plain(n, p, repeats))
        rows.append(bench_ckks(n, p, repeats, secret, public))
        if paillier_n > 0:
            rows += bench_paillier(n, p, min(paillier_n, n), keys)
    return rows


def speedups(rows: list[Row]) -> dict[str, float]:
    """Paillier full-job party CPU time over CKKS party CPU time, per (n, p)."""
    by = {(r.n, r.p, r.scheme): r for r in rows}
    return {f"{n}x{p}": by[(n, p, "paillier_full")].party_cpu_seconds / by[(n, p, "ckks")].party_cpu_seconds
            for (n, p, s) in by if s == "ckks" and (n, p, "paillier_full") in by}


def table(rows: list[Row]) -> str:
    head = (f"{'n':>6} {'p':>3} {'scheme':<14} {'party s':>10} {'party cpu':>10} {'enc s':>9} {'dec s':>9} "
            f"{'to party':>11} {'to owner':>11}  note")
    lines = [head, "-" * len(head)]
    for r in rows:
        note = f"extrapolated from n={r.extrapolated_from_n}" if r.extrapolated_from_n else (
            f"{r.rotations} rotations" if r.rotations is not None else "")
        lines.append(f"{r.n:>6} {r.p:>3} {r.scheme:<14} {r.party_seconds:>10.4f} {r.party_cpu_seconds:>10.4f} "
                     f"{r.owner_encrypt_seconds:>9.4f} "
                     f"{r.owner_decrypt_seconds:>9.4f} {_size(r.bytes_to_party):>11} {_size(r.bytes_to_owner):>11}  {note}")
    for key, ratio in speedups(rows).items():
        lines.append(f"CKKS vs Paillier (full enc(f) job, party CPU time) at {key}: {ratio:,.0f}x faster")
    return "\n".join(lines)


def _size(b: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024


def write_json(rows: list[Row], path: Path) -> None:
    data = {"rows": [asdict(r) for r in rows], "ckks_speedup_over_paillier_full": speedups(rows),
            "units": {"time": "seconds", "size": "bytes"}}
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
