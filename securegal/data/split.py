"""Seeded row splits (train / validation / test) and vertical splits into party blocks."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from ..errors import ConfigError
from .datasets import Dataset
from .tables import FeatureTable


@dataclass(frozen=True)
class RowSplit:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_rows(dataset: Dataset, seed: int, test_fraction: float = 0.2, validation_fraction: float = 0.0,
               stratify: bool = True) -> RowSplit:
    """Sample IDs (row numbers) of each split, stratified for classification unless
    ``stratify`` is False (label-DP: then the split depends on the seed and n only)."""
    if not 0 < test_fraction < 1 or not 0 <= validation_fraction < 1 or test_fraction + validation_fraction >= 1:
        raise ConfigError(f"need 0 < test_fraction, 0 <= validation_fraction, sum < 1; got {test_fraction}, {validation_fraction}")
    ids = np.arange(len(dataset.y), dtype=np.int64)
    strat = dataset.y if dataset.task == "classification" and stratify else None
    if strat is not None:  # every part of a stratified split holds a row of each class
        classes = len(np.unique(strat))
        n_test = math.ceil(test_fraction * len(ids))
        n_val = math.ceil(validation_fraction * len(ids)) if validation_fraction > 0 else classes
        if min(n_test, n_val) < classes:
            needed = math.ceil(classes / min(test_fraction, validation_fraction or 1))
            raise ConfigError(f"cannot split {dataset.name}: {len(ids)} rows give {min(n_test, n_val)} "
                              f"{'test' if n_test <= n_val else 'validation'} rows, fewer than its {classes} classes "
                              f"(each part holds a row of every class); about {needed} rows are needed")
    try:
        rest, test = train_test_split(ids, test_size=test_fraction, random_state=seed, stratify=strat)
        val = np.array([], dtype=np.int64)
        if validation_fraction > 0:
            rest, val = train_test_split(rest, test_size=validation_fraction / (1 - test_fraction), random_state=seed + 1,
                                         stratify=None if strat is None else dataset.y[rest])
    except ValueError as exc:
        raise ConfigError(f"cannot split {dataset.name} ({len(ids)} rows): {exc}") from None
    return RowSplit(np.sort(rest), np.sort(val), np.sort(test))


@dataclass(frozen=True)
class Block:
    """The columns one party holds; ``patch_shape`` for image patches (flattened row-major)."""

    columns: np.ndarray
    patch_shape: tuple[int, int] | None = None


def contiguous_blocks(n_features: int, parties: int) -> list[Block]:
    """M contiguous column blocks of n // M columns, the remainder to the last party."""
    if parties < 1:
        raise ConfigError(f"need at least 1 party, got {parties}")
    if parties > n_features:
        raise ConfigError(f"{parties} parties but only {n_features} features: every party needs at least one column")
    size = n_features // parties
    bounds = [i * size for i in range(parties)] + [n_features]
    return [Block(np.arange(bounds[i], bounds[i + 1])) for i in range(parties)]


GRIDS = {1: (1, 1), 2: (1, 2), 4: (2, 2), 8: (2, 4)}


def image_blocks(image_shape: tuple[int, int], parties: int) -> list[Block]:
    """A grid of patches (M in 1, 2, 4, 8): 2 -> 1x2, 4 -> 2x2, 8 -> 2x4 (rows x columns)."""
    if parties not in GRIDS:
        raise ConfigError(f"image data splits into 1, 2, 4 or 8 patches, not {parties}")
    h, w = image_shape
    gr, gc = GRIDS[parties]
    if h < gr or w < gc:
        raise ConfigError(f"a {h}x{w} image cannot be cut into a {gr}x{gc} grid")
    rows = np.array_split(np.arange(h), gr)
    cols = np.array_split(np.arange(w), gc)
    blocks = []
    for rr in rows:
        for cc in cols:
            idx = (rr[:, None] * w + cc[None, :]).ravel()
            blocks.append(Block(idx, (len(rr), len(cc))))
    return blocks


def vertical_split(dataset: Dataset, parties: int) -> list[Block]:
    if dataset.image_shape is not None:
        return image_blocks(dataset.image_shape, parties)
    return contiguous_blocks(dataset.X.shape[1], parties)


def _columns(X: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``X[:, columns]``: a view (no copy) when the columns are a contiguous range."""
    columns = np.asarray(columns)
    if columns.size and (np.diff(columns) == 1).all():
        return X[:, int(columns[0]):int(columns[-1]) + 1]
    return X[:, columns]


def party_tables(dataset: Dataset, blocks: list[Block]) -> list[FeatureTable]:
    """Each party's feature table (all rows, its own columns), keyed by row number.

    Contiguous column blocks are views of the dataset's table, not copies: a party copies only
    the rows it trains on, once, when it standardizes them at setup.
    """
    ids = np.arange(len(dataset.y), dtype=np.int64)
    return [FeatureTable(ids, _columns(dataset.X, b.columns), b.patch_shape) for b in blocks]
