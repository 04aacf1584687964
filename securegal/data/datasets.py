"""Offline datasets (scikit-learn, mlxtend) and user CSV files, as one :class:`Dataset` type."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ..errors import ConfigError

log = logging.getLogger(__name__)

# numpy, scikit-learn and mlxtend are imported by the loaders: the command line's help reads
# :data:`DATASETS` and should not pay for them.
if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Rows are people; ``X`` holds every column of the (simulated) federation."""

    name: str
    X: np.ndarray
    y: np.ndarray
    task: str                       # "classification" | "regression"
    loss: str                       # overarching loss: cross_entropy | l1 | l2
    n_classes: int = 0
    image_shape: tuple[int, int] | None = None
    ids: object = None  # each row's ID (strings or integers) when the rows came with one; else row numbers
    columns: tuple | None = None  # column names of X, when the data came from a table
    encoding: dict | None = None  # what the owner did to its table: categorical columns, imputed cells

    def row_ids(self):
        """Each row's ID: the table's own, or synthetic row numbers 0..n-1."""
        import numpy as np

        return np.arange(len(self.y), dtype=np.int64) if self.ids is None else self.ids

    @property
    def n_outputs(self) -> int:
        return self.n_classes if self.task == "classification" else 1


def _classification(name, X, y, image_shape=None) -> Dataset:
    import numpy as np

    _, y = np.unique(y, return_inverse=True)
    return Dataset(name, np.asarray(X, dtype=np.float64), y.astype(np.int64), "classification", "cross_entropy",
                   int(y.max()) + 1, image_shape)


def _regression(name, X, y, loss="l1") -> Dataset:
    import numpy as np

    return Dataset(name, np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), "regression", loss)


def _sklearn(loader_name: str):
    from sklearn import datasets

    return getattr(datasets, loader_name)(return_X_y=True)


def _blob() -> Dataset:
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=100, n_features=10, centers=10, random_state=0)
    return _classification("blob", X, y)


def _boston() -> Dataset:
    from mlxtend.data import boston_housing_data

    X, y = boston_housing_data()
    return _regression("boston", X, y)


def _mnist() -> Dataset:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return _classification("mnist", X / 255.0, y, (28, 28))


@dataclass(frozen=True)
class DatasetInfo:
    """How to load an offline dataset, and a one-line summary for users."""

    load: Callable[[], Dataset]
    summary: str


DATASETS = {
    "diabetes": DatasetInfo(lambda: _regression("diabetes", *_sklearn("load_diabetes")),
                            "442 patients, 10 features, disease progression (regression)"),
    "boston": DatasetInfo(_boston, "506 districts, 13 features, house prices (regression)"),
    "iris": DatasetInfo(lambda: _classification("iris", *_sklearn("load_iris")),
                        "150 flowers, 4 features, 3 species"),
    "wine": DatasetInfo(lambda: _classification("wine", *_sklearn("load_wine")),
                        "178 wines, 13 features, 3 cultivars"),
    "breast_cancer": DatasetInfo(lambda: _classification("breast_cancer", *_sklearn("load_breast_cancer")),
                                 "569 tumours, 30 features, benign or malignant"),
    "digits": DatasetInfo(lambda: _classification("digits", *_sklearn("load_digits"), (8, 8)),
                          "1,797 handwritten digits as 8x8 images, 10 classes"),
    "blob": DatasetInfo(_blob, "100 synthetic points, 10 features, 10 Gaussian clusters"),
    "mnist": DatasetInfo(_mnist, "5,000 handwritten digits as 28x28 images, 10 classes (mlxtend)"),
}


def describe() -> str:
    """One line per offline dataset, ``name  summary``, for help texts."""
    width = max(map(len, DATASETS))
    return "\n".join(f"  {name:<{width}}  {info.summary}" for name, info in DATASETS.items())


def load_dataset(name: str) -> Dataset:
    """One of the offline :data:`DATASETS` (diabetes, boston, iris, wine, breast_cancer, digits, blob, mnist)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))} or use --csv")
    return DATASETS[name].load()


def load_csv(path: str | Path, target: str, task: str | None = None, *, missing: str = "impute",
             id_column: str | None = None, centres: Sequence[float] | None = None,
             private: bool = False) -> Dataset:
    """A single-table CSV or Parquet file with a header row; ``target`` names the label column.

    Read with pyarrow by :func:`securegal.data.party_file.read_party_file` (the rows get
    synthetic IDs unless ``id_column`` names the table's own): numeric columns as they are, text columns one-hot encoded, missing cells
    imputed with an indicator column (or refused with ``missing="refuse"``); ``centres`` and
    ``private`` as there (feature-DP parties holding the table's columns). ``task`` defaults to
    classification when the target holds text or at most 20 distinct integers.
    """
    import numpy as np

    from .party_file import read_party_file

    path = Path(path)
    table = read_party_file(path, id_column, target=target, label_owner=True, missing=missing, centres=centres,
                            private=private)
    if table.X.shape[0] < 10:
        raise ConfigError(f"{path}: {table.X.shape[0]} data rows; at least 10 are needed (and with the default "
                          "70% training rows and the parties' default min_rows = 20, about 29)")
    if table.X.shape[1] == 0:
        raise ConfigError(f"{path}: no feature columns besides the target {target!r}")
    y = np.asarray(table.target)
    if y.dtype.kind in "OUS":  # text labels: classes in sorted order
        classes, y = np.unique(y.astype(str), return_inverse=True)
        task = task or "classification"
    else:
        y = y.astype(np.float64)
        if not np.isfinite(y).all():
            raise ConfigError(f"{path}: target {target!r} holds non-finite values")
        if task is None:
            task = "classification" if np.all(y == np.round(y)) and len(np.unique(y)) <= 20 else "regression"
            if task == "regression":
                _warn_about_class_like_targets(path, target, y)
            elif len(np.unique(y)) > 4:  # a count or a score, trained as classes without a word (a review)
                log.warning("%s: target %r is trained as classification (%d distinct integers); if it is a quantity "
                            "such as a length of stay, say so: task regression (--task, train(task=...), or "
                            "federation.toml [data] task)", path, target, len(np.unique(y)))
    X = table.X
    if id_column is None:
        _warn_about_id_like_columns(path, table.columns, X)
    if task == "classification":
        if len(np.unique(y)) < 2:
            raise ConfigError(f"{path}: target {target!r} has a single class")
        data = _classification(path.stem, X, y)
    elif task == "regression":
        data = _regression(path.stem, X, y, loss="l2")
    else:
        raise ConfigError(f"task must be 'classification' or 'regression', got {task!r}")
    ids = table.ids if id_column is not None else None
    return replace(data, columns=table.columns, encoding=encoding_of(table.summary), ids=ids)


def _warn_about_class_like_targets(path: Path, target: str, y) -> None:
    """A target trained as regression that is nearly a handful of integer classes (a typo such
    as one 0.5 among 0/1), or one distinct integer per row (an ID?): say so, loudly."""
    import numpy as np

    whole = y == np.round(y)
    if not whole.all() and whole.mean() >= 0.95 and len(np.unique(y[whole])) <= 20:
        odd = np.unique(y[~whole])[:3]
        log.warning("%s: target %r is trained as regression because of %d non-integer value(s) (e.g. %s) among "
                    "%d integer classes; fix them if it is a classification target", path, target,
                    int((~whole).sum()), ", ".join(f"{v:g}" for v in odd), len(np.unique(y[whole])))
    elif whole.all() and len(np.unique(y)) == len(y):
        log.warning("%s: target %r is trained as regression: it holds a distinct integer in every row (an ID?)",
                    path, target)


def _warn_about_id_like_columns(path: Path, columns, X) -> None:
    """A column of distinct integers, one per row, is most likely an ID: training on it is a mistake."""
    import numpy as np

    for j, name in enumerate(columns):
        col = X[:, j]
        if np.all(col == np.round(col)) and len(np.unique(col)) == len(col):
            log.warning("%s: column %r holds a distinct integer in every row; if it is an ID, pass --id %s "
                        "(id_column=%r) to keep it out of the features", path, name, name, name)


def encoding_of(summary) -> dict:
    """A table's encoding summary as plain data (metrics.json ``data``)."""
    return {"categorical": {k: list(v) for k, v in summary.categorical.items()},
            "imputed": {k: int(cells) for k, (cells, _) in summary.imputed.items()}}