"""Active attacks run end to end: a malicious label owner trains a federation, then is scored.

``crafted_residuals``: the label owner sends random crafted residuals instead of the true ones
(:class:`CraftedResiduals`, a residual channel passed to the public ``securegal.train(...,
channel=...)``), keeps the replies, and solves them for each feature party's columns
(:mod:`securegal.attacks.active_residuals`). The run is scored like the passive attacks; with
``epsilon`` every feature party protects its releases with DP (the run's ``--epsilon``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import ConfigError, ProtocolError

#: Active attacks ``securegal audit --active NAME`` can run.
ACTIVE = ("crafted_residuals",)


class CraftedResiduals:
    """A malicious label owner's residual channel: every party receives crafted residuals.

    A :class:`securegal.seam.ResidualChannel` on plaintext (``name``, ``setup_fields``, ``seal``,
    ``open``, ``report``); the feature parties see an ordinary plain run.
    """

    name = "crafted"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def setup_fields(self, party: str) -> Mapping[str, object]:
        return {"residuals": "plain"}

    def seal(self, residuals: np.ndarray, round: int, party: str) -> np.ndarray:
        from ..attacks.active_residuals import crafted_residuals

        n, k = np.shape(residuals)
        return crafted_residuals(n, k, round, self.seed)

    def open(self, payload, round: int, party: str, shape: tuple[int, ...]) -> np.ndarray:
        if not isinstance(payload, np.ndarray) or payload.shape != tuple(shape) or not np.isfinite(payload).all():
            raise ProtocolError(f"predictions of {party!r} in round {round}: expected finite plaintext {tuple(shape)}")
        return payload.astype(np.float64, copy=False)

    def report(self) -> dict:
        return {"malicious_label_owner": {"residuals": "crafted", "seed": self.seed}}


def train_crafted(out: Path | str, *, dataset: str | None = None, csv: str | Path | None = None,
                  target: str | None = None, parties: int = 4, rounds: int = 10, seed: int = 0,
                  epsilon: float | None = None, overwrite: bool = False, progress: bool = False) -> Path:
    """Train a federation whose label owner sends crafted residuals into ``out`` (with the
    evaluation-only ground truth the audit scores against); ``epsilon``: feature-DP budget."""
    from .. import train
    from ..privacy.plan import FeatureDP, PrivacyPlan

    if epsilon is not None and not (isinstance(epsilon, (int, float)) and epsilon > 0):
        raise ConfigError(f"--epsilon must be > 0, got {epsilon!r}")
    plan = PrivacyPlan(feature_dp=FeatureDP(epsilon=float(epsilon))) if epsilon is not None else PrivacyPlan()
    train(dataset, csv=csv, target=target, parties=parties, rounds=rounds, seed=seed, out=out, overwrite=overwrite,
          ground_truth=True, progress=progress, plan=plan, channel=CraftedResiduals(seed + 1))
    return Path(out)
