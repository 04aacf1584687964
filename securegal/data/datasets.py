"""Offline datasets (scikit-learn, mlxtend) and user CSV files, as one :class:`Dataset` type."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError

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


def load_csv(path: str | Path, target: str, task: str | None = None) -> Dataset:
    """A CSV with a header row; every cell numeric and present; ``target`` names the label column.

    ``task`` defaults to classification when the target holds at most 20 distinct integers.
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"CSV file {str(path)!r} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise ConfigError(f"{path}: empty file, expected a header row")
        header = [h.strip() for h in header]
        if target not in header:
            raise ConfigError(f"{path}: no column named {target!r}; columns are {', '.join(header)}")
        rows = []
        for lineno, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) != len(header):
                raise ConfigError(f"{path}:{lineno}: {len(row)} cells, the header has {len(header)}")
            values = []
            for col, cell in zip(header, row):
                try:
                    v = float(cell)
                except ValueError:
                    raise ConfigError(f"{path}:{lineno}: column {col!r} holds non-numeric value {cell!r}") from None
                if not math.isfinite(v):
                    raise ConfigError(f"{path}:{lineno}: column {col!r} holds {cell!r}; missing or infinite values are not allowed")
                values.append(v)
            rows.append(values)
    if len(rows) < 10:
        raise ConfigError(f"{path}: {len(rows)} data rows; at least 10 are needed")
    data = np.array(rows)
    j = header.index(target)
    y, X = data[:, j], np.delete(data, j, axis=1)
    if X.shape[1] == 0:
        raise ConfigError(f"{path}: no feature columns besides the target {target!r}")
    if task is None:
        task = "classification" if np.all(y == np.round(y)) and len(np.unique(y)) <= 20 else "regression"
    if task == "classification":
        if len(np.unique(y)) < 2:
            raise ConfigError(f"{path}: target {target!r} has a single class")
        return _classification(path.stem, X, y)
    if task == "regression":
        return _regression(path.stem, X, y, loss="l2")
    raise ConfigError(f"task must be 'classification' or 'regression', got {task!r}")
