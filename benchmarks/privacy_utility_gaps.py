"""Where GAL-DP loses utility: the same trained models rescored with five sets of multipliers.

    PYTHONPATH=. python benchmarks/privacy_utility_gaps.py --dataset diabetes --seeds 100:140 --epsilons 1,8,1000

For each split and epsilon the library's default GAL-DP design (docs/privacy.md section 8) is
trained once, with seeded noise. Its per-party contributions are then rescored on the test rows
with five sets of per-party multipliers:

- ``fixed``: all 1, the uniform policy without calibration;
- ``validation``: the default, fitted on the label owner's validation rows;
- ``train-exact``: fitted on the training rows with every party's exact, un-noised train
  predictions, which no label owner has. It shows what a calibration on every training row
  could reach;
- ``train-moments``: what a DP version of ``train-exact`` could use. Least squares on the
  training rows needs each party's ``P^T P`` and ``P^T u`` (``P`` its contribution, ``u`` the
  label owner's target minus F0). The party gets ``P^T P`` as ``theta^T psd(G~) theta`` from its
  own released ``gram`` (free), ``P^T clip(u, 2)`` from one more ``stat``-like release at the
  session's ``stat`` noise times sqrt(4/3) (as if the plan had a fourth one; simulated here), and
  the label owner estimates the cross terms from the validation rows' correlations;
- ``test``: fitted on the test rows themselves, a ceiling that overfits them.

A large epsilon (1000) measures the design without noise. The script reads the parties' models
inside one process (embedded deployment, tuning seeds only). It is a study, not a method.
"""
from __future__ import annotations

import argparse
import math
import warnings

import numpy as np

from privacy_utility_tuning import paired_line, tuning_seeds
from securegal.core.calibration import MAX_MULTIPLIER, fit_party_multipliers
from securegal.data.split import split_rows
from securegal.deploy.federation import TargetScaler
from securegal.metrics import metric_for
from securegal.parties.label_owner import LabelOwner
from securegal.privacy.dp.mechanisms import InsecureNoiseWarning
from securegal.privacy.plan import FeatureDP, PrivacyPlan
from securegal.run import resolve_dataset, train

PARTIES, ROUNDS = 4, 3
METHODS = ("fixed", "validation", "train-exact", "train-moments", "test")
# train-moments: the clip of u in the simulated release, and the pull of the multipliers towards 1
MOMENT_CLIP, MOMENT_PENALTY = 2.0, 1.0


def _terms(owner: LabelOwner, ids: np.ndarray) -> tuple[list[str], np.ndarray]:
    names, terms = [], []
    for party, preds in owner._party_rounds(ids):
        names.append(party)
        terms.append(np.tensordot(owner._coefficients(party), preds, axes=1))
    return names, np.stack(terms)


def _train_terms(owner: LabelOwner, choice, names: list[str]) -> np.ndarray:
    """Each party's exact contribution on the training rows (the DP models without the
    per-row release's clip and noise; the label owner's own block as fitted)."""
    out = []
    for party in names:
        coefficients = owner._coefficients(party)
        if party == owner.own.name:
            rounds = np.stack([owner.own.trainer.train_predictions(t) for t in range(1, len(coefficients) + 1)])
        else:
            trainer = choice.trainers[party]
            rounds = np.stack([trainer._phi @ model.coef for model in trainer.models])
        out.append(np.tensordot(coefficients, rounds, axes=1))
    return np.stack(out)


def _moment_multipliers(owner: LabelOwner, choice, names: list[str], train_terms: np.ndarray,
                        validation_terms: np.ndarray, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Least-squares multipliers from party-side training-row moments (``train-moments``)."""
    P = train_terms[..., 0]
    clipped = np.clip(u, -MOMENT_CLIP, MOMENT_CLIP)
    gram_diag, cross = np.zeros(len(names)), np.zeros(len(names))
    for j, party in enumerate(names):
        if party == owner.own.name:  # the label owner's own block: exact
            gram_diag[j], cross[j] = P[j] @ P[j], P[j] @ u
            continue
        trainer = choice.trainers[party]
        theta = sum(c * model.coef[:, 0] for c, model in zip(owner._coefficients(party), trainer.models))
        p = trainer._phi.shape[1]
        z = trainer.accountant.noise_multipliers
        released = trainer._gram - trainer.ridge.ridge_floor(len(u), p, z["gram"]) * np.eye(p)
        gram_diag[j] = theta @ released @ theta
        sigma = z["stat"] * math.sqrt(4 / 3) * 2 * trainer.ridge.feature_clip * MOMENT_CLIP
        cross[j] = theta @ (trainer._phi.T @ clipped + rng.normal(0.0, sigma, p))
    scale = np.sqrt(np.maximum(gram_diag, 0.0))
    S = np.corrcoef(validation_terms[..., 0]) * np.outer(scale, scale)
    np.fill_diagonal(S, gram_diag)
    a = np.linalg.solve(S + MOMENT_PENALTY * np.eye(len(names)), cross + MOMENT_PENALTY)
    return np.clip(a, 0.0, MAX_MULTIPLIER)


def rescored(dataset: str, seed: int, epsilon: float) -> dict[str, float]:
    """The test score of one trained GAL-DP model under each of :data:`METHODS`."""
    data = resolve_dataset(dataset, None, None, "impute", None)
    split = split_rows(data, seed, 0.2, 0.1)
    scaler = TargetScaler.fit(data, data.y[split.train])
    plan = PrivacyPlan(feature_dp=FeatureDP(epsilon=epsilon, seed=10_000 + seed))
    choice = plan.trainers()
    seen: dict = {}
    original = LabelOwner.calibrate

    def calibrate(owner: LabelOwner, sample_ids, y):  # record before the multipliers rescale the weights
        names, seen["test"] = _terms(owner, split.test)
        seen["names"], seen["train"] = names, _train_terms(owner, choice, names)
        seen["owner"], seen["validation_terms"] = owner, _terms(owner, sample_ids)[1]
        multipliers = original(owner, sample_ids, y)
        seen["validation"] = np.array([multipliers.get(p, 1.0) for p in names])
        return multipliers

    LabelOwner.calibrate = calibrate
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureNoiseWarning)
            reported = train(dataset, parties=PARTIES, rounds=ROUNDS, seed=seed, plan=plan, trainers=choice)["gal"]["test"]
    finally:
        LabelOwner.calibrate = original
    owner, test_terms = seen["owner"], seen["test"]
    y_test = scaler.forward(data.y[split.test])
    y_train = scaler.forward(data.y[split.train])
    multipliers = {
        "fixed": np.ones(len(seen["names"])),
        "validation": seen["validation"],
        "train-exact": fit_party_multipliers(owner.loss, y_train, owner.model.init, seen["train"], 0.0),
        "train-moments": _moment_multipliers(owner, choice, seen["names"], seen["train"], seen["validation_terms"],
                                             (y_train - owner.model.init).reshape(-1),
                                             np.random.default_rng(20_000 + seed)),
        "test": fit_party_multipliers(owner.loss, y_test, owner.model.init, test_terms, 0.0),
    }
    _, score = metric_for(data.task)
    out = {k: float(score(data.y[split.test], scaler.inverse(owner.model.init + np.tensordot(a, test_terms, axes=1))))
           for k, a in multipliers.items()}
    if not math.isclose(out["validation"], reported, rel_tol=1e-9, abs_tol=1e-9):
        raise RuntimeError(f"seed {seed}: rescoring gives {out['validation']}, the run reported {reported}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="diabetes")
    ap.add_argument("--seeds", default="100:140", help="split seeds start:stop (keep them off 0-19)")
    ap.add_argument("--epsilons", default="1,8,1000")
    args = ap.parse_args()
    try:
        seeds = tuning_seeds(args.seeds)
    except ValueError as exc:
        ap.error(str(exc))
    for epsilon in (float(e) for e in args.epsilons.split(",")):
        rows = [rescored(args.dataset, s, epsilon) for s in seeds]
        ref = np.array([r["validation"] for r in rows])
        for method in METHODS:
            values = np.array([r[method] for r in rows])
            print(paired_line(f"{args.dataset:14s} eps={epsilon:g} {method:12s}", values, ref), flush=True)


if __name__ == "__main__":
    main()
