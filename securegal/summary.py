"""What a finished run prints: the lines ``securegal train`` and the local federations show from
its ``metrics.json``."""
from __future__ import annotations

from collections import Counter
from pathlib import Path


def summary(metrics: dict, out: Path) -> str:
    """The run's result in a few lines: scores, weights, calibration, privacy spent, notes."""
    unit = "accuracy %" if metrics["metric"] == "accuracy" else "MAD (lower is better)"
    lines = [f"securegal: {metrics['dataset']} ({metrics['task']}), M={metrics['parties']}, T={metrics['rounds']}, "
             f"learner={metrics['learner']}, residuals={metrics['residuals']}, seed={metrics['seed']}",
             f"  n train/validation/test = {metrics['n_train']}/{metrics['n_validation']}/{metrics['n_test']}",
             f"  {'method':<16}{'test ' + unit}"]
    for key, label in (("gal", "GAL"), ("gal_uniform", "GAL uniform w"), ("alone", "Alone"), ("joint", "Joint")):
        if key in metrics:
            lines.append(f"  {label:<16}{metrics[key]['test']:.2f}"
                         + ("  (not private: evaluation only)" if key != "gal" and "baselines_not_private" in metrics
                            else ""))
    if metrics["weights"]:
        last = ", ".join(f"{n}={w:.2f}" for n, w in zip(metrics["party_names"], metrics["weights"][-1]))
        eta = [f"{e:.2f}" for e in metrics["eta"]]
        shown = ", ".join(eta if len(eta) <= 6 else [*eta[:3], "...", eta[-1]])  # one line at any T
        lines.append(f"  last-round weights: {last}; eta per round: {shown} (all {len(eta)} in metrics.json)")
    absent = Counter(party for missed in metrics["gal"].get("absent_per_round", []) for party in missed)
    if absent:
        lines.append("  absent (weight 0): " + ", ".join(f"{p} in {n} of {len(metrics['eta'])} rounds"
                                                       for p, n in absent.items()))
    if metrics["gal"].get("missing_at_predict"):
        lines.append(f"  left out of the test predictions (no answer): {', '.join(metrics['gal']['missing_at_predict'])}")
    multipliers = metrics["gal"].get("multipliers")
    if multipliers:
        scaled = ", ".join(f"{n}={a:.2f}" for n, a in multipliers.items())
        alone = [n for n in multipliers if n not in metrics["party_names"]]
        lines.append(f"  calibrated on the {metrics['n_validation']} validation rows: multipliers {scaled} "
                     "(the parties' are in the weights above"
                     + (f"; {alone[0]} weighs the label owner's exact-label Alone model)" if alone else ")"))
    for party, block in metrics.get("privacy", {}).items():
        table = block.get("ledger") if isinstance(block.get("ledger"), dict) else {}
        labels = party == metrics["party_names"][0] and "label_dp" in metrics.get("plan", {})
        owner_of = "labels'" if labels else "table's"
        if "lifetime_epsilon_spent" in table:  # a table's lifetime budget: what is left is what counts
            lines.append(f"  privacy {party}: this session's releases epsilon {block['epsilon_spent']:.3f}; the "
                         f"{owner_of} lifetime epsilon {table['lifetime_epsilon_spent']:.4g} of "
                         f"{table['lifetime_epsilon_budget']:g}, {table['lifetime_epsilon_remaining']:.4g} left "
                         f"(delta={block['delta']:g}, {block['accountant']}, {len(block['releases'])} releases)")
        else:
            lines.append(f"  privacy {party}: epsilon spent {block['epsilon_spent']:.3f} of {block['epsilon_budget']:g} "
                         f"(delta={block['delta']:g}, {block['accountant']}, {len(block['releases'])} releases)")
    lines += [f"  note: {note}" for note in metrics.get("notes", [])]
    if metrics.get("plan", {}).get("membership") == "hidden":
        lines.append("  hidden membership: each party fitted on all its rows and was not told which are used; "
                     "its predictions reached the label owner only as DP feedback (docs/alignment.md)")
    for party, rounds in metrics["gal"].get("outsized_predictions", {}).items():
        lines.append(f"  WARNING: {party}'s predictions were far larger than the residuals in rounds "
                     f"{', '.join(map(str, rounds))}: not a fit to them, left out of those rounds (check that party; "
                     "the log has the sizes)")
    if "stopped" in metrics["gal"]:
        lines.append(f"  STOPPED EARLY: {metrics['gal']['stopped']}")
    lines.append(f"  wrote {out}/metrics.json, curve.png, transcripts/ ({metrics['seconds']:.1f} s)")
    return "\n".join(lines)
