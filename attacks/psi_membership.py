"""Membership inference (e): what a feature party learns about who is in the label owner's set.

The party's view of the ECDH private set intersection (:mod:`securegal.align.psi`) is the
label owner's blinded points ``[a] H(x)`` (one per ID of the label owner: their number is
``|X|``), its own reply, and then which of its own rows the label owner selected (its
alignment record: the selected handles and its own IDs of those rows). Two attacks:

- ``membership_held``: for each ID the party holds, "selected => in the label owner's
  set". This is a disclosure **by design**: the label owner must tell the party which of its
  rows to use. A row not selected is either outside the label owner's set or missing at
  another party, so the guess is exact when every other party holds the row.
- ``membership_unheld``: for IDs the party does *not* hold (candidates it can name, e.g.
  a list of people it suspects), it hashes each candidate to the group with the session's
  domain separation, ``H(c)``, and compares it with every blinded point it received: an exact
  match would say "c is in the label owner's set", and the smallest bit distance to any point
  is its score. Without the label owner's secret ``a`` no point can be compared to ``H(c)``,
  so this must sit at chance: that is the protocol's guarantee, measured.

Scores are accuracy and AUC of "in the label owner's set", against a baseline that knows
only the class balance (the sizes ``|X|`` and ``|Y|`` are public in this protocol); the
advantage is tested like every other attack (:mod:`.stats`).
"""
from __future__ import annotations

import numpy as np

from . import stats
from .metrics import accuracy
from .result import AttackResult, measured

HELD, UNHELD = "membership_held", "membership_unheld"
POINT = 32
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def _score(attack: str, attacker: str, victim: str, truth: np.ndarray, score: np.ndarray,
           guess: np.ndarray) -> list[AttackResult]:
    """Accuracy of ``guess`` and AUC of ``score`` for "in the set" against the class-balance baseline."""
    truth = np.asarray(truth, dtype=bool)
    if truth.all() or not truth.any():
        raise ValueError(f"{attack}: every candidate is on one side of the set: nothing to score")
    majority = truth.mean() >= 0.5
    base_guess = np.full(truth.size, majority)
    classes = np.array([0, 1])
    t = truth.astype(np.int64)
    scores = np.column_stack([-score, score])
    flat = np.zeros((truth.size, 2))
    return [
        measured(attack, attacker, victim, "accuracy", accuracy(truth, guess), accuracy(truth, base_guess),
                 stats.accuracy_contrib(truth, guess), stats.accuracy_contrib(truth, base_guess)),
        measured(attack, attacker, victim, "auc", min(float(np.sum(stats.binary_auc_contrib(truth, score))), 1.0), 0.5,
                 stats.binary_auc_contrib(truth, score), stats.binary_auc_contrib(truth, np.zeros(truth.size)),
                 floor_se=stats.mann_whitney_se(t, classes), score_se=stats.auc_se(t, scores, classes),
                 baseline_se=stats.auc_se(t, flat, classes)),
    ]


def held(own_ids: np.ndarray, selected_ids: np.ndarray, in_set: np.ndarray, attacker: str,
         victim: str) -> list[AttackResult]:
    """"Selected => in the label owner's set" over the party's own IDs (``in_set``: the truth)."""
    selected = np.isin(np.asarray(own_ids), np.asarray(selected_ids))
    return _score(HELD, attacker, victim, in_set, selected.astype(np.float64), selected)


def nearest_bits(candidates: bytes, points: bytes, block: int = 256) -> np.ndarray:
    """For each packed candidate point, the smallest number of differing bits to any packed point."""
    c = np.frombuffer(candidates, dtype=np.uint8).reshape(-1, POINT)
    p = np.frombuffer(points, dtype=np.uint8).reshape(-1, POINT)
    out = np.empty(c.shape[0], dtype=np.int64)
    for i in range(0, c.shape[0], block):
        diff = _POPCOUNT[np.bitwise_xor(c[i:i + block, None, :], p[None, :, :])].sum(axis=2)
        out[i:i + block] = diff.min(axis=1)
    return out


def unheld(candidate_points: bytes, request_points: bytes, in_set: np.ndarray, attacker: str,
           victim: str) -> list[AttackResult]:
    """Match the candidates' hash points ``H(c)`` (packed; computed with the protocol's public
    hash and the session's domain separation, :func:`securegal.align.group.hash_to_group`)
    against the label owner's blinded points from the PSI request."""
    for what, packed in (("PSI request", request_points), ("candidate points", candidate_points)):
        if len(packed) % POINT or not packed:
            raise ValueError(f"the {what} must hold whole 32-byte points")
    distance = nearest_bits(candidate_points, request_points)
    return _score(UNHELD, attacker, victim, in_set, -distance.astype(np.float64), distance == 0)
