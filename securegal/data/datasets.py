"""Offline datasets (scikit-learn, mlxtend) and user CSV files, as one :class:`Dataset` type."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError


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
    _, y = np.unique(y, return_inverse=True)
    return Dataset(name, np.asarray(X, dtype=np.float64), y.astype(np.int64), "classification", "cross_entropy",
                   int(y.max()) + 1, image_shape)


def _regression(name, X, y, loss="l1") -> Dataset:
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


DATASETS = {
    "diabetes": lambda: _regression("diabetes", *_sklearn("load_diabetes")),
    "boston": _boston,
    "iris": lambda: _classification("iris", *_sklearn("load_iris")),
    "wine": lambda: _classification("wine", *_sklearn("load_wine")),
    "breast_cancer": lambda: _classification("breast_cancer", *_sklearn("load_breast_cancer")),
    "digits": lambda: _classification("digits", *_sklearn("load_digits"), (8, 8)),
    "blob": _blob,
    "mnist": _mnist,
}


def load_dataset(name: str) -> Dataset:
    """One of the offline datasets: diabetes, boston, iris, wine, breast_cancer, digits, blob, mnist."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))} or use --csv")
    return DATASETS[name]()


def load_csv(path: str | Path, target: str, task: str | None = None) -> Dataset:
    """A CSV with a header row; every cell numeric and present; ``target`` names the label column.

    ``task`` defaults to classification when the target holds at most 20 distinct integers.
    """
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
                if not np.isfinite(v):
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
