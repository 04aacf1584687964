"""Plain-language verdicts, and what each attack does, for the audit report.

Decision rule, per attack and victim, on the attack's primary metric (AUC for class labels,
R^2 for regression labels and for features; the other metric is reported beside it):

1. **inconclusive** when the attack could not see what the attacker really sees (it ran on
   ciphertext bytes that the attacker holds the key to) or fewer than ``MIN_ROWS`` rows were
   left to score it on; also instead of LEAKS when it ran on a noise-free stand-in for a DP
   release it cannot see (a feature party's self-audit under CKKS+DP: a worst case);
2. **LEAKS** when the paired sign-flip test rejects "the transcript adds nothing" at level
   ``alpha`` (0.01) divided by the number of verdicts in the audit (Bonferroni: the chance of
   any false LEAKS in one audit stays at most 0.01). The MDA is the advantage an attacker with chance-like per-row noise
   needs; an attack that beats its baseline on nearly every row is detected below it;
3. **no leak detected** when it does not, and the minimum detectable advantage (MDA) at this n
   and at the verdict's own (Bonferroni) level is at most ``MATERIAL`` (0.10 on the metric's
   0..1 scale): a leak of that size would have been seen. The verdict's MDA is therefore larger
   than the per-attack MDA of the detail table (which is at alpha = 0.01): with 6 verdicts
   ``z_(1 - 0.01/6) / z_0.99 = 1.26`` times larger;
4. **inconclusive** otherwise: this many rows cannot rule out a material leak.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .stats import detectable

LEAKS, NO_LEAK, INCONCLUSIVE = "LEAKS", "no leak detected", "inconclusive"
MATERIAL = 0.10
MIN_ROWS = 20

LABELS, FEATURES, MEMBERSHIP = "label inference", "feature reconstruction", "membership inference"

#: attack -> (family, what it does and what its metric means)
ATTACKS = {
    "label_inversion": (LABELS, (
        "A feature party reads the labels straight off the first residuals it received: for "
        "cross-entropy the largest residual of a row points at its class, for L1/L2 the residual "
        "is a monotone function of the label (fitted on the known labels). Accuracy is the share "
        "of unknown labels guessed right; AUC (0.5 = guessing, 1 = perfect ranking) says how well "
        "its scores rank the true class first; R^2 and MAD measure regression targets.")),
    "label_rounds": (LABELS, (
        "A feature party sums the residuals of every round it received, then reads the labels off "
        "the sum as label inversion does off the first round. Under label-DP each round brings "
        "fresh noise around the same sign, so the sum reads more labels the more rounds there are. "
        "Metrics as for label inversion.")),
    "label_clustering": (LABELS, (
        "A feature party clusters the residual trajectories of all rounds (rows with the same "
        "label move alike) and names the clusters with its few known labels. It needs no "
        "knowledge of the loss. Metrics as for label inversion.")),
    "model_completion": (LABELS, (
        "A feature party trains a model on its own columns plus everything it received, using "
        "its known labels (Fu et al., USENIX Security 2022). The baseline is the same model "
        "without the transcript, so the advantage is what the transcript added beyond what the "
        "party's own columns already predict.")),
    "hat_matrix": (FEATURES, (
        "The label owner solves for a party's columns from the predictions the party returned: "
        "a linear learner's predictions lie in the span of its columns, so a handful of known rows "
        "fix the map back (equality solving, Luo et al., ICDE 2021). R^2 (mean over the party's "
        "columns; 1 = exact copy, 0 = no better than the column means) and MSE (in standardized "
        "units) score the reconstruction of the rows it did not know.")),
    "inversion_net": (FEATURES, (
        "The label owner trains a small neural network from the returned predictions to the "
        "party's columns on its known rows. It does not assume a linear learner. Metrics as for "
        "the hat-matrix attack.")),
    "active_residuals": (FEATURES, (
        "A malicious label owner sends random crafted residuals instead of true ones until the "
        "replies stop adding directions (about d + 1 rounds), then solves the replies for the "
        "party's columns. Metrics as for the hat-matrix attack.")),
    "active_predictions": (LABELS, (
        "A malicious feature party adds large crafted pushes to the predictions it returns (a "
        "random quarter of the rows, +-4 each round). The label owner combines them with its fitted "
        "weights and line-searched step, so the residuals that come back next round depend on the "
        "labels through that combination. The party reads the labels from what it received after "
        "each push (residual levels and changes, with a classifier trained on its known labels). "
        "Under CKKS it only ever receives ciphertexts. Metrics as for label inversion.")),
    "membership_held": (MEMBERSHIP, (
        "A feature party guesses, for each ID it holds, that it is in the label owner's set when the "
        "label owner selected that row after the private set intersection. This disclosure is by "
        "design: the label owner must tell the party which of its rows to use (and the size of its "
        "set). Accuracy is the share of the party's IDs classified right; AUC 0.5 = guessing.")),
    "membership_unheld": (MEMBERSHIP, (
        "A feature party tries to learn whether IDs it does not hold are in the label owner's set: "
        "it hashes each candidate to the group with the session's domain separation and compares it "
        "with every blinded point the label owner sent (exact match, then bit distance). Without the "
        "label owner's secret exponent no comparison is possible, so this must stay at chance.")),
}

#: Attacks whose leak is the protocol's stated disclosure (the verdict says so).
DESIGNED = {"membership_held": "designed disclosure: the label owner tells the party which of its rows it uses"}

@dataclass(frozen=True)
class Verdict:
    attack: str
    attacker: str
    victim: str
    family: str
    verdict: str
    text: str
    metric: str
    score: float
    baseline: float
    advantage: float
    mda: float
    p_value: float
    reason: str
    level: float

    def to_dict(self) -> dict:
        return asdict(self)


def primary_metric(attack: str, metrics: set[str]) -> str:
    """The metric a verdict is decided on."""
    if ATTACKS[attack][0] == FEATURES:
        return "r2"
    if ATTACKS[attack][0] == MEMBERSHIP:
        return "auc"
    return "auc" if "auc" in metrics else "r2"


def normalized(row: dict, value: float) -> float:
    """``value`` (an advantage or MDA of ``row``'s metric) on a 0..1 scale: MSE and MAD as the
    fraction of the baseline's error."""
    if row["metric"] in ("mse", "mad"):
        return value / row["baseline"] if row["baseline"] > 0 else 0.0
    return value


def verdict_mda(row: dict, tests: int = 1) -> float:
    """The MDA of ``row`` at the level its verdict is decided at (alpha over ``tests`` verdicts)."""
    if row.get("se") is None:
        return row["mda"]
    return detectable(row["se"], row.get("floor_mda", 0.0), row["alpha"] / max(int(tests), 1), row["alpha"])


def decide(row: dict, tests: int = 1) -> tuple[str, str, str]:
    """(verdict, one-line text, reason) for one primary-metric row among ``tests`` verdicts of
    one audit (see the module notes)."""
    metric, mda = row["metric"], row["mda"]
    if row.get("understates"):
        return INCONCLUSIVE, f"{INCONCLUSIVE} (attacked ciphertext bytes the attacker could decrypt)", \
            "the attack could not use the attacker's real (decrypted) view"
    if row["n_scored"] < MIN_ROWS:
        return INCONCLUSIVE, f"{INCONCLUSIVE} (only {row['n_scored']} rows to score on)", "too few rows"
    level = row["alpha"] / max(int(tests), 1)
    mda = verdict_mda(row, tests)
    if row["p_value"] <= level and row.get("overstates"):
        return INCONCLUSIVE, (f"{INCONCLUSIVE} ({metric} {row['score']:.3f} against {row['baseline']:.3f} on a "
                              "noise-free stand-in for what the attacker decrypts: a worst case without the "
                              "party's DP noise, not a measurement)"), \
            f"p = {row['p_value']:.4f} <= {level:.4g} on the stand-in, which overstates"
    if row["p_value"] <= level:
        return LEAKS, f"{LEAKS} ({metric} {row['score']:.3f} against {row['baseline']:.3f} without the transcript)", \
            f"p = {row['p_value']:.4f} <= {level:.4g} ({row['alpha']} over {tests} verdicts)"
    if normalized(row, mda) <= MATERIAL:
        return NO_LEAK, (f"{NO_LEAK} (at this n the audit would detect an advantage of {mda:.3f} {metric} "
                         "or more)"), f"p = {row['p_value']:.3f}; MDA {mda:.3f} <= {MATERIAL}"
    return INCONCLUSIVE, (f"{INCONCLUSIVE} (at this n only an advantage of {mda:.3f} {metric} or more "
                          "would be detected)"), f"p = {row['p_value']:.3f}; MDA {mda:.3f} > {MATERIAL}"


def verdicts(rows: list[dict]) -> list[dict]:
    """One verdict per (attack, attacker, victim) of the audit's rows."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["attack"], row["attacker"], row["victim"]), []).append(row)
    out = []
    for (attack, attacker, victim), group in groups.items():
        metric = primary_metric(attack, {r["metric"] for r in group})
        row = next(r for r in group if r["metric"] == metric)
        verdict, text, reason = decide(row, len(groups))
        if verdict == LEAKS and attack in DESIGNED:
            text += f"; {DESIGNED[attack]}"
        out.append(Verdict(attack, attacker, victim, ATTACKS[attack][0], verdict, text, metric, row["score"],
                           row["baseline"], row["advantage"], verdict_mda(row, len(groups)), row["p_value"],
                           reason, row["alpha"] / len(groups)).to_dict())
    return out
