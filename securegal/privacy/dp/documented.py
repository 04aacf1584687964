"""Public column knowledge of the built-in datasets, from their published documentation.

A DP party may not standardize with its exact training statistics (docs/privacy.md section 6).
For the built-in demo datasets securegal declares, on the party's behalf, what the datasets'
own documentation publishes (scikit-learn's dataset descriptions): the per-column mean and SD
(wine, iris), the per-column min and max (breast_cancer), the documented scaling (diabetes:
mean-centred, scaled so each column's sum of squares is 1 over its 442 rows) or the pixel range
(digits 0..16, mnist 0..1 after /255). These numbers are fixed public constants: a neighbouring
table does not change them. For any other table the party declares ``[privacy.columns]``.
"""
from __future__ import annotations

import math
import re

from ...errors import ConfigError
from .table import ColumnSpec

_ROW = re.compile(r"^\s*([^:]+):\s+(.*)$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _summary_table(descr: str) -> tuple[list[str], list[list[float]]]:
    """Header names and numeric rows of the 'Summary Statistics' table of a sklearn DESCR."""
    start = descr.index("Summary Statistics")
    lines = descr[start:].splitlines()
    rulers = [i for i, line in enumerate(lines) if line.strip().startswith("====")]
    header = lines[rulers[0] + 1].split()
    rows = []
    for line in lines[rulers[1] + 1:rulers[2]]:
        match = _ROW.match(line)
        if not match:
            continue
        cells = [c for c in match.group(2).split() if _NUMBER.match(c)]
        rows.append([float(c) for c in cells[:len(header)]])
    return header, rows


def _from_descr(loader: str, n_features: int) -> ColumnSpec:
    from sklearn import datasets

    header, rows = _summary_table(getattr(datasets, loader)().DESCR)
    if len(rows) != n_features:
        raise ValueError(f"{loader}: documented {len(rows)} columns, expected {n_features}")
    col = {name: [r[header.index(name)] for r in rows] for name in header if name in ("Min", "Max", "Mean", "SD")}
    source = f"public ranges from the {loader.removeprefix('load_')} dataset's documentation"
    if "Mean" in col and "SD" in col:
        return ColumnSpec(col["Min"], col["Max"], col["Mean"], col["SD"], source=source)
    return ColumnSpec(col["Min"], col["Max"], source=source)


# Where only bounds are documented, the default map is a DP estimate of centre and scale from
# them, paid with this share of the table's lifetime epsilon (on breast_cancer at epsilon 1 it
# beats the bounds' mid-range map: 93.3% against 91.4% over 10 splits).
DP_ESTIMATE_SHARE = 0.1


def documented_columns(dataset: str, n_features: int, epsilon: float | None = None) -> ColumnSpec | None:
    """The published column knowledge of built-in ``dataset`` (all its columns), or None. With a
    lifetime ``epsilon``, bounds-only knowledge becomes a DP estimate from the bounds costing
    :data:`DP_ESTIMATE_SHARE` of it."""
    if dataset in ("wine", "iris", "breast_cancer"):
        spec = _from_descr(f"load_{dataset}", n_features)
    elif dataset == "diabetes":
        s = 1.0 / math.sqrt(442)
        return ColumnSpec(centre=[0.0] * n_features, scale=[s] * n_features,
                          source="the diabetes dataset's documented scaling (centred, unit sum of squares)")
    elif dataset == "digits":
        spec = ColumnSpec([0.0] * n_features, [16.0] * n_features, source="pixel range 0..16 (documented)")
    elif dataset == "mnist":
        spec = ColumnSpec([0.0] * n_features, [1.0] * n_features, source="pixel range 0..1 (after /255)")
    else:
        return None
    if spec.centre is None and epsilon is not None:
        if not DP_ESTIMATE_SHARE * epsilon > 0:
            raise ConfigError(f"epsilon {epsilon!r} is too small to pay for the DP estimate of the columns' centre "
                              f"and scale ({DP_ESTIMATE_SHARE:g} of it is 0)")
        spec = ColumnSpec(spec.lower, spec.upper, dp_epsilon=DP_ESTIMATE_SHARE * epsilon, source=spec.source)
    return spec
