"""Where the CKKS job's time goes: operation counts x unit costs, against the measured time.

Runs the job of ``test_ckks_scale.py`` (T=10, M=4, 32 features, linear, in process) for the
plain and the CKKS layer (median of ``--repeats`` each, the same process, with CPU time and the
load average), then one CKKS run under cProfile for the number of calls and the time spent in
each SEAL operation, and times every operation alone at the plan's parameters (median over a
pool of ciphertexts, so caches are not warmer than in the job). Prints one markdown table::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/ckks_profile.py --rows 50000

``predicted`` is count x unit cost; ``in the job`` is cProfile's time for that call (the
profiler adds a little per call). What the table does not list is Python and numpy work
around the calls (the federation, the wire codec, the plaintext step search, layout).
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import statistics
import time

import numpy as np
import tenseal.sealapi as sealapi

from gal_job import load_average, run_once, synthetic
from securegal.privacy.he import _seal
from securegal.privacy.he.keys import SecretContext
from securegal.privacy.plan import PrivacyPlan

N_FEATURES, PARTIES, ROUNDS = 32, 4, 10
# (row label, the calls counted, the calls whose time is summed): a name alone is a sealapi or
# hashlib built-in (its own time); "file:function" is a securegal function (its cumulative
# time: the file round trip sealapi needs for bytes, and the checks, included)
OPERATIONS = [
    ("rotation or conjugation (key switch, 2 primes)", ("rotate_vector", "complex_conjugate"),
     ("rotate_vector", "complex_conjugate")),
    ("plaintext product", ("multiply_plain",), ("multiply_plain",)),
    ("ciphertext add / negate", ("add_inplace",), ("add_inplace", "negate", "sub_inplace")),
    ("rescale", ("rescale_to_next_inplace",), ("rescale_to_next_inplace",)),
    ("encode (diagonals, residuals)", ("encode",), ("encode",)),
    ("encryption (symmetric, seeded)", ("encrypt_symmetric",), ("encrypt_symmetric",)),
    ("decryption + decode", ("decrypt",), ("decrypt", "decode_double", "decode_complex")),
    ("serialise (bytes via /dev/shm)", ("_seal.py:dump",), ("_seal.py:dump",)),
    ("load and validate", ("keys.py:load_ciphertext",), ("keys.py:load_ciphertext",)),
    ("SHA-256 of a ciphertext", ("openssl_sha256",), ("openssl_sha256",)),
]
_BUILTIN = "<built-in method "


def _median_ms(fn, pool: int, repeats: int = 5) -> float:
    """Median time of one call in ms, cycling over ``pool`` arguments ``repeats`` times."""
    times = []
    for _ in range(repeats):
        for i in range(pool):
            started = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def unit_costs(params, pool: int = 16) -> dict[str, float]:
    """ms per call of each operation at ``params``, where the smoother uses it: products,
    rotations, adds and rescales on fresh (level 0) ciphertexts, decryption and serialisation
    on the last level (the replies), loads of both."""
    secret = SecretContext(params)
    public = secret.public_context()
    ev, gk = public.evaluator, public.galois_keys
    rng = np.random.default_rng(0)
    values = [rng.normal(size=public.slots) for _ in range(pool)]
    fresh_plains = [public.encode(v, 0) for v in values]
    operators = [public.encode(v, 0, params.output_scale ** 0.5) for v in values]
    blobs = [secret.encrypt(v)[0] for v in values]
    cts = [public.load_ciphertext(b) for b in blobs]
    lasts = [public.load_ciphertext(b) for b in blobs]
    for ct in lasts:
        while public.level_of(ct) < len(public.levels) - 1:
            ev.mod_switch_to_next_inplace(ct)
    last_blobs = [_seal.dump(ct) for ct in lasts]

    def product(i):
        out = sealapi.Ciphertext()
        ev.multiply_plain(cts[i], operators[i], out)
        return out

    def rescaled(i):
        ev.rescale_to_next_inplace(product(i))

    sums = [product(i) for i in range(pool)]
    product_ms = _median_ms(product, pool)
    return {
        "rotation or conjugation (key switch, 2 primes)": _median_ms(
            lambda i: ev.rotate_vector(cts[i], 1 << (i % 12), gk, sealapi.Ciphertext()), pool),
        "plaintext product": product_ms,
        "ciphertext add / negate": _median_ms(lambda i: ev.add_inplace(sums[i], sums[(i + 1) % pool]), pool),
        "rescale": _median_ms(rescaled, pool) - product_ms,
        "encode (diagonals, residuals)": _median_ms(lambda i: public.encode(values[i], 0), pool),
        "encryption (symmetric, seeded)": _median_ms(lambda i: secret._encryptor.encrypt_symmetric(fresh_plains[i]),
                                                     pool),
        "decryption + decode": _median_ms(lambda i: secret.decrypt([lasts[i]], public.slots, params.packs_pairs), pool),
        "serialise (bytes via /dev/shm)": _median_ms(lambda i: _seal.dump(lasts[i]), pool),
        "load and validate": _median_ms(lambda i: public.load_ciphertext(blobs[i] if i % 2 else last_blobs[i]), pool),
        "SHA-256 of a ciphertext": _median_ms(lambda i: hashlib.sha256(blobs[i]).digest(), pool),
    }


def _calls(stats, name: str) -> tuple[int, float]:
    """(calls, seconds) of ``name`` in ``pstats`` data (see OPERATIONS)."""
    calls = seconds = 0
    for (path, _, func), (_, ncalls, tottime, cumtime, _) in stats.items():
        if ":" in name:
            where, what = name.split(":")
            if path.endswith(where) and func == what:
                calls, seconds = calls + ncalls, seconds + cumtime
        elif func.startswith(_BUILTIN) and func[len(_BUILTIN):-1].split(".")[-1] == name:
            calls, seconds = calls + ncalls, seconds + tottime
    return calls, seconds


def profiled_calls(data) -> tuple[dict[str, tuple[int, float]], float]:
    """Per operation row: (calls, seconds) in one profiled CKKS run; and the profiled total."""
    profile = cProfile.Profile()
    profile.runcall(run_once, data, PARTIES, ROUNDS, "ckks")
    stats = pstats.Stats(profile).stats
    out = {label: (sum(_calls(stats, name)[0] for name in counted), sum(_calls(stats, name)[1] for name in timed))
           for label, counted, timed in OPERATIONS}
    return out, sum(tottime for (_, _, tottime, _, _) in stats.values())


def timed(data, residuals: str, repeats: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run_once(data, PARTIES, ROUNDS, residuals)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    params = PrivacyPlan(residuals="ckks").ckks_params
    data = synthetic(args.rows, N_FEATURES)
    load = load_average()
    plain_wall, plain_cpu = timed(data, "plain", args.repeats)
    ckks_wall, ckks_cpu = timed(data, "ckks", args.repeats)
    calls, profiled_total = profiled_calls(data)
    units = unit_costs(params)
    print(f"n = {args.rows:,}, T = {ROUNDS}, M = {PARTIES}, {N_FEATURES} features; CKKS parameters "
          f"N = {params.poly_modulus_degree}, primes {params.coeff_mod_bit_sizes}; load {load:.1f} -> "
          f"{load_average():.1f}")
    print(f"plain {plain_wall:.3f} s (CPU {plain_cpu:.3f} s), CKKS {ckks_wall:.3f} s (CPU {ckks_cpu:.3f} s), "
          f"median of {args.repeats}: CKKS/plain = {ckks_wall / plain_wall:.1f}x\n")
    print("| operation | count | unit cost (ms, alone) | predicted (s) | in the job (s, cProfile) |")
    print("|---|---|---|---|---|")
    predicted_total = measured_total = 0.0
    for label, _, _ in OPERATIONS:
        count, seconds = calls[label]
        predicted = count * units[label] / 1e3
        predicted_total += predicted
        measured_total += seconds
        print(f"| {label} | {count:,} | {units[label]:.3f} | {predicted:.3f} | {seconds:.3f} |")
    print(f"| **SEAL and hashing** | | | **{predicted_total:.2f}** | **{measured_total:.2f}** |")
    print(f"| everything else (federation, wire codec, numpy, keys, setup) | | | | "
          f"{profiled_total - measured_total:.2f} |")
    print(f"| **whole CKKS job** (profiled / unprofiled median) | | | | **{profiled_total:.2f} / {ckks_wall:.2f}** |")
    print(f"\nThe listed SEAL operations alone take {predicted_total / plain_wall:.1f}x the plain job "
          f"({predicted_total:.2f} s predicted from unit costs against {plain_wall:.3f} s).")


if __name__ == "__main__":
    main()
