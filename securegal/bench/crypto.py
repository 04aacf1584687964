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

Each row is compared with ``paillier_full`` at the same (n, p) (see :data:`LEGEND`): the whole
job (owner encryption + party compute + owner decryption) and the party's compute alone.
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
from ..privacy.he import SecretContext
from ..privacy.plan import PrivacyPlan
from ..privacy.he.smoother import EncryptedSmoother
from ..privacy.he.wire import serialize

SIZES = ((4096, 8), (4096, 32), (16384, 32), (65536, 16))
# Bounds on a job: the plaintext operator holds about 3 n p doubles and the CKKS party about
# 2 n p / slots encoded diagonals of 200 KB each, so n p <= 2^22 stays under about 1 GB.
MAX_N, MAX_P, MAX_CELLS = 1 << 20, 256, 1 << 22

LEGEND = """columns:
  n, p        rows and model size (p - 1 random features plus an intercept) of one party's job
  scheme      plain: residuals in the clear; ckks: CKKS-encrypted residuals, enc(f) back;
              paillier_fate: FATE-style masked enc(Phi^T r) (a weaker protocol);
              paillier_full: the same job as ckks, enc(f), on 2048-bit Paillier
  party s     the feature party's compute, wall-clock seconds (median)
  party cpu   the same in CPU seconds of this process (the one-core cost on a shared machine)
  enc s       the label owner encrypting the residuals; dec s: decrypting the reply
  to party    bytes the label owner sends; to owner: bytes the party sends back
  job vs P    paillier_full's whole job (enc s + party s + dec s) over this row's (x: times faster)
  party vs P  paillier_full's party cpu over this row's
  note        Paillier rows are measured at a small n and scaled linearly in n"""
# Paillier is measured on at most this many rows (then extrapolated linearly): at 2048 bits one
# row of 32 features costs about a second, so more only makes the benchmark run for hours.
MAX_PAILLIER_N = 1024
MAX_REPEATS = 100
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


def check_size(n: int, p: int) -> tuple[int, int]:
    """``(n, p)`` if the job fits the bounds, else a one-line :class:`ConfigError`."""
    if not (isinstance(n, int) and isinstance(p, int)) or n < 2 or p < 2:
        raise ConfigError(f"bench sizes need integers n >= 2 and p >= 2, got {n!r}x{p!r}")
    if n > MAX_N or p > MAX_P:
        raise ConfigError(f"bench size {n}x{p} is out of range: need n <= {MAX_N} and p <= {MAX_P}")
    if n * p > MAX_CELLS:
        raise ConfigError(f"bench size {n}x{p} is too large: need n*p <= {MAX_CELLS} (it would need about "
                          f"{24 * n * p / 2**30:.1f} GiB for the plaintext operator alone, more for its CKKS encoding)")
    return n, p


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


def ckks_params(feature_dp: bool = False):
    """The CKKS chain of a run without (or with) feature-DP, as the plan decides it (docs/he.md)."""
    return PrivacyPlan.from_options(residuals="ckks", epsilon=1.0 if feature_dp else None).ckks_params


def bench_plain(n: int, p: int, repeats: int = 5) -> Row:
    op, r = make_job(n, p)
    seconds, cpu, _ = _median_times(lambda: op.phi_train @ (op.A @ r), repeats)
    return Row(n, p, "plain", seconds, cpu, 0.0, 0.0, 8 * n, 8 * n)


def bench_ckks(n: int, p: int, repeats: int = 5, secret: SecretContext | None = None, public=None) -> Row:
    secret = secret or SecretContext(ckks_params())
    public = public or secret.public_context()
    op, r = make_job(n, p)
    smoother = EncryptedSmoother(public, op)
    # The residual column in the layout the smoother expects (the label owner's; repeated with a
    # period when it fits one ciphertext), exactly as training sends it.
    vectors = smoother.layout.input_vectors(r[:, None])
    enc_seconds, blobs = _median_time(lambda: tuple(b for v in vectors for b in secret.encrypt(v)), repeats)
    cts = [public.load_ciphertext(b) for b in blobs]
    party_seconds, party_cpu, fitted = _median_times(lambda: smoother.fit([cts]), repeats)
    out = serialize(fitted.f[0])
    received = [secret.load_ciphertext(b) for b in out]
    dec_seconds, f = _median_time(lambda: secret.decrypt(received, n, pairs=smoother.layout.pairs), repeats)
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


# Paillier works on integers: values and weights in fixed point with one shared scale, so every
# product has the same exponent and a sum needs no alignment (float scalars, each with its own
# exponent, made the baseline about 1.7x slower than it need be: review K).
PAILLIER_SCALE = 1 << 40


def _fixed(value: float) -> int:
    return int(round(float(value) * PAILLIER_SCALE))


def _enc_dot(weights: np.ndarray, cts: list):
    """sum_i weights[i] * cts[i], the weights in fixed point: the result's scale is the cts' times
    PAILLIER_SCALE."""
    acc = cts[0] * _fixed(weights[0])
    for w, c in zip(weights[1:], cts[1:]):
        acc = acc + c * _fixed(w)
    return acc


def bench_paillier(n: int, p: int, measure_n: int = 64, keys=None) -> list[Row]:
    """Both Paillier variants, measured at ``measure_n`` rows and scaled linearly to ``n``."""
    pub, priv = keys or _paillier_keys()
    op, r = make_job(measure_n, p)
    scale = n / measure_n
    started = time.perf_counter()
    enc_r = [pub.encrypt(_fixed(v)) for v in r]
    enc_seconds = time.perf_counter() - started

    started, started_cpu = time.perf_counter(), time.process_time()  # FATE-style: masked enc(Phi^T r)
    rng = np.random.default_rng(1)
    masks = rng.normal(size=p) * 1e3
    masked = [_enc_dot(op.phi_train[:, j], enc_r) + _fixed(masks[j]) * PAILLIER_SCALE for j in range(p)]
    fate_party, fate_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    started = time.perf_counter()
    [priv.decrypt(c) for c in masked]
    fate_dec = time.perf_counter() - started

    started, started_cpu = time.perf_counter(), time.process_time()  # the full job: A enc(r), Phi enc(z)
    enc_z = [_enc_dot(op.A[j], enc_r) for j in range(p)]
    enc_f = [_enc_dot(op.phi_train[i], enc_z) for i in range(measure_n)]
    full_party, full_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    started = time.perf_counter()
    f = np.array([priv.decrypt(c) / PAILLIER_SCALE ** 3 for c in enc_f])
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


def run(sizes: Iterable[tuple[int, int]] = SIZES, repeats: int = 5, paillier_n: int = 64,
        secret: SecretContext | None = None, bar: bool = False) -> list[Row]:
    """Every scheme at every (n, p); one shared CKKS key and one Paillier key pair; ``bar``: a
    progress bar (stderr) over the measurements."""
    from tqdm import tqdm

    sizes = list(sizes)
    if not all(isinstance(size, (tuple, list)) and len(size) == 2 for size in sizes):
        raise ConfigError(f"sizes must be (n, p) pairs, e.g. [(1024, 8)], got {sizes!r}")
    sizes = [check_size(n, p) for n, p in sizes]
    if not isinstance(repeats, int) or not 1 <= repeats <= MAX_REPEATS or not isinstance(paillier_n, int) \
            or not 0 <= paillier_n <= MAX_PAILLIER_N:
        raise ConfigError(f"need repeats in 1..{MAX_REPEATS} and paillier_n in 0..{MAX_PAILLIER_N}, got {repeats!r} "
                          f"and {paillier_n!r}")
    secret = secret or SecretContext(ckks_params())
    public = secret.public_context()
    keys = _paillier_keys() if paillier_n > 0 else None
    rows: list[Row] = []
    schemes = ["plaintext", "ckks"] + (["paillier"] if paillier_n else [])
    with tqdm(total=len(sizes) * len(schemes), desc="bench crypto", unit="run", disable=not bar) as progress:
        for n, p in sizes:
            for scheme in schemes:
                progress.set_postfix_str(f"{n}x{p} {scheme}")
                if scheme == "plaintext":
                    rows.append(bench_plain(n, p, repeats))
                elif scheme == "ckks":
                    rows.append(bench_ckks(n, p, repeats, secret, public))
                else:
                    rows += bench_paillier(n, p, min(paillier_n, n), keys)
                progress.update(1)
    return rows


def job_seconds(row: Row) -> float:
    """The whole job's wall time: owner encryption + party compute + owner decryption."""
    return row.owner_encrypt_seconds + row.party_seconds + row.owner_decrypt_seconds


def _ratio(paillier: float, own: float) -> float | None:
    return paillier / own if own > 0 else None


def ratios(rows: list[Row]) -> dict[tuple[int, int, str], tuple[float | None, float | None]]:
    """Per row (n, p, scheme): (whole-job ratio, party-only ratio) of ``paillier_full`` at the
    same (n, p) to the row; above 1 the row is that many times faster than Paillier. Rows without
    a Paillier measurement at their size are left out."""
    full = {(r.n, r.p): r for r in rows if r.scheme == "paillier_full"}
    out = {}
    for r in rows:
        ref = full.get((r.n, r.p))
        if ref is not None:
            out[(r.n, r.p, r.scheme)] = (_ratio(job_seconds(ref), job_seconds(r)),
                                         _ratio(ref.party_cpu_seconds, r.party_cpu_seconds))
    return out


def speedups(rows: list[Row]) -> dict[str, float]:
    """Paillier full-job party CPU time over CKKS party CPU time, per (n, p)."""
    return {f"{n}x{p}": party for (n, p, s), (_, party) in ratios(rows).items() if s == "ckks" and party is not None}


def job_speedups(rows: list[Row]) -> dict[str, float]:
    """Paillier's whole job (encrypt + party + decrypt) over CKKS's, per (n, p)."""
    return {f"{n}x{p}": job for (n, p, s), (job, _) in ratios(rows).items() if s == "ckks" and job is not None}


def _times(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.2f}x"


def table(rows: list[Row]) -> str:
    """The rows as a text table, a line per CKKS-vs-Paillier speedup, then :data:`LEGEND`."""
    by_row = ratios(rows)
    head = (f"{'n':>7} {'p':>3} {'scheme':<14} {'party s':>10} {'party cpu':>10} {'enc s':>9} {'dec s':>9} "
            f"{'to party':>11} {'to owner':>11} {'job vs P':>10} {'party vs P':>10}  note")
    lines = [head, "-" * len(head)]
    for r in rows:
        note = f"extrapolated from n={r.extrapolated_from_n}" if r.extrapolated_from_n else (
            f"{r.rotations} rotations" if r.rotations is not None else "")
        job, party = by_row.get((r.n, r.p, r.scheme), (None, None))
        lines.append(f"{r.n:>7} {r.p:>3} {r.scheme:<14} {r.party_seconds:>10.4f} {r.party_cpu_seconds:>10.4f} "
                     f"{r.owner_encrypt_seconds:>9.4f} {r.owner_decrypt_seconds:>9.4f} {_size(r.bytes_to_party):>11} "
                     f"{_size(r.bytes_to_owner):>11} {_times(job):>10} {_times(party):>10}  {note}")
    jobs = job_speedups(rows)
    for key, ratio in speedups(rows).items():
        lines.append(f"CKKS vs Paillier (same enc(f) job) at {key}: party CPU {ratio:,.0f}x faster, "
                     f"whole job (encrypt + party + decrypt) {jobs[key]:,.0f}x faster")
    return "\n".join(lines + ["", LEGEND])


def _size(b: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024


def write_json(rows: list[Row], path: Path) -> None:
    by_row = ratios(rows)
    data = {"rows": [{**asdict(r), "job_seconds": job_seconds(r),
                      "job_ratio_paillier_full": by_row.get((r.n, r.p, r.scheme), (None, None))[0],
                      "party_ratio_paillier_full": by_row.get((r.n, r.p, r.scheme), (None, None))[1]} for r in rows],
            "ckks_speedup_over_paillier_full": speedups(rows),
            "ckks_job_speedup_over_paillier_full": job_speedups(rows),
            "units": {"time": "seconds", "size": "bytes"}}
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
