"""One-command leakage sweep: train plain, CKKS and DP runs of one task, then audit them all.

Each run is trained exactly as ``securegal train`` would with the matching flags
(``--residuals ckks``; ``--epsilon E`` or ``--label-epsilon E``, which imply uniform weights and
a fixed step 0.75 * M / T) and with ``--save-ground-truth``, into
``OUT/<plain|ckks|dp-epsE|label-dp-epsE>``.
"""
from __future__ import annotations

from pathlib import Path

from securegal.errors import ConfigError
from securegal.run import train

DP_DELTA = 1e-5


def _dp(epsilon: float, parties: int, rounds: int) -> dict:
    from securegal.privacy.dp.layers import DPTrainers
    from securegal.privacy.dp.trainer import DPConfig

    return dict(trainers=DPTrainers(DPConfig(epsilon, DP_DELTA)), weighting="uniform", eta=0.75 * parties / rounds)


def _label_dp(epsilon: float, parties: int, rounds: int) -> dict:
    from securegal.privacy.dp.layers import LabelDPConfig, LabelDPResiduals

    return dict(channel=LabelDPResiduals(LabelDPConfig(epsilon, DP_DELTA)), weighting="uniform",
                eta=0.75 * parties / rounds)


def _ckks() -> dict:
    from securegal.privacy.he.layers import CkksResiduals, ckks_trainers

    return dict(channel=CkksResiduals(), trainers=ckks_trainers)


def train_sweep(out: Path | str, *, dataset: str | None = None, csv: str | Path | None = None,
                target: str | None = None, parties: int = 4, rounds: int = 10, seed: int = 0,
                epsilons: tuple[float, ...] = (0.5, 1.0, 3.0, 8.0), label_epsilons: tuple[float, ...] = (),
                ckks: bool = True,
                overwrite: bool = False, progress: bool = False) -> list[Path]:
    """Train the sweep's runs under ``out``; returns their directories (plain first)."""
    for eps in (*epsilons, *label_epsilons):
        if not eps > 0:
            raise ConfigError(f"sweep epsilons must be > 0, got {eps!r}")
    out = Path(out)
    plans: list[tuple[str, dict]] = [("plain", {})]
    if ckks:
        plans.append(("ckks", _ckks()))
    plans += [(f"dp-eps{eps:g}", _dp(eps, parties, rounds)) for eps in epsilons]
    plans += [(f"label-dp-eps{eps:g}", _label_dp(eps, parties, rounds)) for eps in label_epsilons]
    runs = []
    for name, options in plans:
        train(dataset, csv=csv, target=target, parties=parties, rounds=rounds, seed=seed, out=out / name,
              overwrite=overwrite, ground_truth=True, progress=progress, **options)
        runs.append(out / name)
    return runs
