"""The CKKS+DP circuit's own error, measured against its stated bound circuit_error(B, n).

    PYTHONPATH=. python benchmarks/hedp_circuit_error.py --clips 0.5,1,2 --rows 300,1500,5000

For every feature clip B, training rows n, columns d and outputs K it builds a fresh key pair
(the plan's CKKS+DP channel and chain), sets up the plan's DP trainer with that B, fits one round on
clipped residuals (rows of norm <= 1) and decrypts, before any noise is added, every slot (real
and imaginary part) of the train predictions ``enc(Phi A r)`` and of the test predictions
``enc(Phi_test z)``; the error is the largest difference from the same values computed in
float64 with the trainer's own noisy Gram. Features are Student-t (3 degrees of freedom: rows
far outside the clip as well as inside it). Prints one line per configuration and, last, the
largest error's margin below the stated bound ``circuit_error(B, n)``; exits 1 if any error exceeds
its bound.
"""
from __future__ import annotations

import argparse
import math
import sys
import warnings

import numpy as np

from securegal import messages as m
from securegal.learners.registry import make_learner
from securegal.privacy.dp.mechanisms import InsecureNoiseWarning, clip_rows
from securegal.privacy.he import wire
from securegal.privacy.hedp import circuit_error, output_vectors
from securegal.privacy.plan import FeatureDP, PrivacyPlan

PARTY = "party1"


def _error(secret, vectors, layout, exact: np.ndarray) -> float:
    """Largest |decrypted - exact| over every slot and part of ``vectors`` (per vector, chunks)."""
    worst = 0.0
    for cts, plains in zip(vectors, output_vectors(layout, exact), strict=True):
        for ct, values in zip(cts, plains, strict=True):
            got = secret.decrypt([ct], 2 * secret.slots, pairs=True)  # the real parts, then the imaginary
            want = np.zeros(got.size)
            want[:values.size] = values
            worst = max(worst, float(np.abs(got - want).max()))
    return worst


def measure(clip: float, n: int, d: int, k: int, seed: int) -> tuple[float, float]:
    """(train-prediction error, test-prediction error) of one fresh configuration."""
    rng = np.random.default_rng(seed)
    X = rng.standard_t(3, size=(n, d))
    X_test = rng.standard_t(3, size=(min(n, 2000), d))
    r = clip_rows(rng.normal(size=(n, k)), 1.0)
    # the library's CKKS+DP layers (residual clip 1, no feedback), with this clip and seeded DP noise
    plan = PrivacyPlan(residuals="ckks", feature_dp=FeatureDP(epsilon=3.0, feature_clip=clip, seed=seed))
    channel = plan.channel()
    setup = m.Setup(train_ids=np.arange(n, dtype=np.int64), n_outputs=k, rounds=1, task="classification",
                    **channel.setup_fields(PARTY))
    trainer = plan.trainers()(PARTY, 1, make_learner("linear"))(setup)
    trainer.setup(X, setup)
    payload = channel.seal(r, 1, PARTY)
    trainer.fit_round(1, payload)  # builds the smoother (spends the round's releases)
    layout = trainer._layout()
    vectors = wire.unpack(payload, trainer.context, "residuals", PARTY, 1, (n, k), 0, layout)
    fitted = trainer.smoother.fit(vectors)
    fmap = trainer.ridge.feature_map(d)
    coef = np.linalg.solve(trainer._gram, fmap(X).T @ r)
    train_error = _error(channel.secret, fitted.f, layout, fmap(X) @ coef)
    test = trainer.smoother.predict([fitted.z], X_test)[0]
    test_error = _error(channel.secret, test, layout.with_rows(len(X_test)), fmap(X_test) @ coef)
    return train_error, test_error


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default="0.5,1,2", help="feature clips B")
    ap.add_argument("--rows", default="300,1500,5000", help="training rows n")
    ap.add_argument("--columns", default="2,6,13", help="feature columns d")
    ap.add_argument("--outputs", default="1,3", help="outputs K")
    ap.add_argument("--repeats", type=int, default=1, help="fresh keys and data per configuration")
    args = ap.parse_args()
    grid = [(float(b), int(n), int(d), int(k)) for b in args.clips.split(",") for n in args.rows.split(",")
            for d in args.columns.split(",") for k in args.outputs.split(",")]
    worst = 0.0  # the largest error relative to its bound E(B, n)
    print(f"{'B':>4} {'n':>6} {'d':>3} {'K':>2}  log2(train error)  log2(test error)  log2(E(B, n))", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureNoiseWarning)
        for i, (b, n, d, k) in enumerate(grid):
            for rep in range(args.repeats):
                tr, te = measure(b, n, d, k, seed=1000 * i + rep)
                bound = circuit_error(b, n)
                worst = max(worst, tr / bound, te / bound)
                print(f"{b:4g} {n:6d} {d:3d} {k:2d}  {math.log2(tr):17.2f}  {math.log2(te):16.2f}  "
                      f"{math.log2(bound):13.2f}", flush=True)
    print(f"largest error / E(B, n): 2^{math.log2(worst):.2f} (a margin of 2^{-math.log2(worst):.2f})")
    return 0 if worst <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
