"""One-command leakage sweep: train one run per registered privacy layer of one task, then audit
them all (``securegal audit --sweep``).

The runs are read off the layer registry (:data:`securegal.privacy.registry.LAYERS`): every
layer without a budget once, every feature-DP layer at each of ``epsilons`` and every label-DP
layer at each of ``label_epsilons`` (classification only), each trained exactly as
``securegal train`` would with the matching flags and with ``--save-ground-truth``, into
``OUT/<layer>`` or ``OUT/<layer>-eps<E>``.
"""
from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from ..errors import ConfigError
from ..privacy.registry import LAYERS
from ..run import resolve_dataset, train


def sweep_plans(*, epsilons=(0.5, 1.0, 3.0, 8.0), label_epsilons=(), ckks: bool = True) -> list[tuple[str, object]]:
    """(run name, plan) for every registered layer the sweep covers."""
    for eps in (*epsilons, *label_epsilons):
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < float("inf"):
            raise ConfigError(f"sweep epsilons must be finite and > 0, got {eps!r}")
    plans = []
    for layer in LAYERS.values():
        if layer.residuals == "ckks" and not ckks:
            continue
        if layer.budget is None:
            plans.append((layer.name, layer.plan()))
        else:
            budgets = epsilons if layer.budget == "feature" else label_epsilons
            plans += [(f"{layer.name}-eps{eps:g}", layer.plan(eps)) for eps in budgets]
    return plans


def _run_command(command: str, plan, columns_flag: str, out: Path) -> str:
    """The ``securegal train`` command of one sweep run: ``command`` and the flags of its plan."""
    flags = ["--residuals ckks"] if plan.residuals == "ckks" else []
    if plan.feature_dp is not None:
        flags += [f"--epsilon {plan.feature_dp.epsilon:g}", columns_flag]
    if plan.label_dp is not None:
        flags.append(f"--label-epsilon {plan.label_dp.epsilon:g}")
    return " ".join([command, *(f for f in flags if f), "--save-ground-truth", f"--out {shlex.quote(str(out))}"])


def train_sweep(out: Path | str, *, dataset: str | None = None, csv: str | Path | None = None,
                target: str | None = None, parties: int = 4, rounds: int = 10, seed: int = 0,
                epsilons: tuple[float, ...] = (0.5, 1.0, 3.0, 8.0), label_epsilons: tuple[float, ...] = (),
                ckks: bool = True, overwrite: bool = False, progress: bool = False, id_column: str | None = None,
                columns=None, command: str | None = None, columns_flag: str = "") -> list[Path]:
    """Train the sweep's runs under ``out``; returns their directories (plain first). ``columns``:
    the CSV's public column knowledge for the feature-DP runs (as ``securegal train --columns``).
    ``command``: the ``securegal train`` command every run shares (data, parties, rounds, seed),
    to which each run's layer flags (``columns_flag`` for the feature-DP ones) and ``--out`` are
    added for its metrics.json.

    Checked before the first run: every run's directory free (unless ``overwrite``), and what a
    DP run of a CSV needs. A sweep that fails or is interrupted removes the runs it wrote: a
    half sweep is not a result."""
    out = Path(out)
    plans = sweep_plans(epsilons=epsilons, label_epsilons=label_epsilons, ckks=ckks)
    if csv is not None and columns is None and any(plan.feature_dp is not None for _, plan in plans):
        raise ConfigError("the sweep's feature-DP runs of a CSV standardize with public per-column bounds or "
                          "centres/scales, never their training statistics: give --columns FILE (as securegal "
                          "train --columns), or --epsilons '' for no DP runs (docs/privacy.md section 6)")
    taken = [out / name for name, _ in plans if (out / name).exists() and any((out / name).iterdir())]
    if taken and not overwrite:
        raise ConfigError(f"--sweep {out} already holds {', '.join(p.name for p in taken)}; pass --overwrite to "
                          "replace them, or choose another OUT")
    if columns is not None:  # the declaration against the table's columns, before the first run trains
        data = resolve_dataset(dataset, csv, target, id_column=id_column, columns=columns, private=True)
        if columns.d != data.X.shape[1]:
            raise ConfigError(f"the column declaration has {columns.d} columns, {data.name!r} has "
                              f"{data.X.shape[1]} feature columns")
    made = not out.exists()
    runs = []
    try:
        for name, plan in plans:
            train(dataset, csv=csv, target=target, parties=parties, rounds=rounds, seed=seed, out=out / name,
                  overwrite=overwrite, ground_truth=True, progress=progress, plan=plan, id_column=id_column,
                  columns=columns if plan.feature_dp is not None else None,
                  command=None if command is None else _run_command(command, plan, columns_flag, out / name))
            runs.append(out / name)
    except BaseException:
        for run in runs:
            shutil.rmtree(run, ignore_errors=True)
        if made and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    return runs
