"""Ridge regression trained with DP by perturbing its sufficient statistics.

The party's rows become ``phi = (clip(x / sqrt(d), B), c)``: the feature part clipped to L2 norm
``B`` and a small constant ``c`` for the intercept. ``G = Phi^T Phi`` is released once (its upper
triangle, Gaussian noise), ``s_t = Phi^T clip(r_t, C)`` once per round; the round model
``coef_t = (psd(G~) + lam I)^-1 s~_t`` is post-processing of those releases, so its predictions
on any rows cost no further privacy for the *model*; per-row predictions returned to the label
owner are a separate release (see :mod:`securegal.privacy.dp.trainer`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError
from ...learners.base import SmootherOperator
from . import defaults
from .mechanisms import (
    GaussianNoise,
    clip_rows,
    gram_sensitivity,
    noisy_symmetric,
    statistic_sensitivity,
)


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be finite and > 0, got {value!r}")
    return value


@dataclass(frozen=True)
class ClippedFeatureMap:
    """A DP party's row map ``x -> (phi(x), c)``, ``||phi(x)|| <= B`` for every x: data-independent,
    so the same map serves train and test.

    With ``coordinate_clip`` a: ``phi(x) = clip(x, -a, a) * B / (a sqrt(d))`` coordinate-wise
    (every coordinate within ``B / sqrt(d)``, so the row within B; linear for rows inside the
    box). Without (None): ``phi(x) = clip_rows(x / sqrt(d), B)``, the row projected onto the ball.
    """

    d: int
    feature_clip: float
    intercept: float
    coordinate_clip: float | None = None

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.d:
            raise ValueError(f"expected features of shape (n, {self.d}), got {X.shape}")
        if self.coordinate_clip is None:
            Z = clip_rows(X / math.sqrt(self.d), self.feature_clip)
        else:
            a = self.coordinate_clip
            Z = np.clip(X, -a, a) * (self.feature_clip / (a * math.sqrt(self.d)))
        return np.hstack([Z, np.full((X.shape[0], 1), self.intercept)])


@dataclass(frozen=True)
class DPLinearModel:
    """One round's DP ridge model: ``predict(X) = feature_map(X) @ coef``."""

    coef: np.ndarray
    feature_map: ClippedFeatureMap

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.feature_map(X) @ self.coef


class DPRidge:
    """DP ridge by perturbed sufficient statistics (noise multipliers are chosen by the caller).

    ``feature_clip`` B and ``residual_clip`` C bound the sensitivities; ``lam`` is the ridge
    penalty per row (total ``lam * n``), to which ``noise_ridge * sigma_G * sqrt(p)`` is added so
    that the noisy Gram matrix stays well conditioned.
    """

    name = "dp-linear"

    def __init__(self, feature_clip: float = 0.5, residual_clip: float = defaults.RESIDUAL_CLIP,
                 intercept: float = defaults.INTERCEPT, lam: float = defaults.LAM,
                 noise_ridge: float = defaults.NOISE_RIDGE,
                 coordinate_clip: float | None = None):
        self.feature_clip = _positive("feature_clip", feature_clip)
        self.coordinate_clip = None if coordinate_clip is None else _positive("coordinate_clip", coordinate_clip)
        self.residual_clip = _positive("residual_clip", residual_clip)
        self.intercept = _positive("intercept", intercept)
        self.lam = _positive("lam", lam)
        if not (math.isfinite(noise_ridge) and noise_ridge >= 0):
            raise ValueError(f"noise_ridge must be finite and >= 0, got {noise_ridge!r}")
        self.noise_ridge = float(noise_ridge)

    @property
    def gram_sensitivity(self) -> float:
        return gram_sensitivity(self.feature_clip, self.intercept)

    @property
    def statistic_sensitivity(self) -> float:
        return statistic_sensitivity(self.feature_clip, self.residual_clip)

    def feature_map(self, d: int) -> ClippedFeatureMap:
        return ClippedFeatureMap(int(d), self.feature_clip, self.intercept, self.coordinate_clip)

    def ridge_floor(self, n: int, p: int, gram_noise_multiplier: float) -> float:
        """The ridge added to the PSD-projected noisy Gram: ``lam n + noise_ridge sigma_G sqrt(p)``.
        Public (n, p and the noise level are), and a lower bound on the smallest eigenvalue of
        :meth:`private_gram`'s result whatever the data."""
        return self.lam * n + self.noise_ridge * gram_noise_multiplier * self.gram_sensitivity * math.sqrt(p)

    def private_gram(self, Phi: np.ndarray, noise_multiplier: float,
                     noise: GaussianNoise) -> np.ndarray:
        """Noisy ``Phi^T Phi`` (corner n c^2 exact), projected to PSD and ridge-regularised."""
        n, p = Phi.shape
        sigma = noise_multiplier * self.gram_sensitivity
        G = noisy_symmetric(Phi.T @ Phi, sigma, noise, skip=(p - 1,))
        w, V = np.linalg.eigh(G)
        lam = self.ridge_floor(n, p, noise_multiplier)
        return (V * np.maximum(w, 0.0)) @ V.T + lam * np.eye(p)

    def private_statistic(self, Phi: np.ndarray, r: np.ndarray, noise_multiplier: float,
                          noise: GaussianNoise) -> np.ndarray:
        """Noisy ``Phi^T clip(r, C)`` of shape (p, K)."""
        r = clip_rows(r, self.residual_clip)
        if r.shape[0] != Phi.shape[0]:
            raise ValueError(f"residuals have {r.shape[0]} rows, features {Phi.shape[0]}")
        s = Phi.T @ r
        return s + noise.normal(s.shape, noise_multiplier * self.statistic_sensitivity)

    def smoother_operator(self, X: np.ndarray, gram_noise_multiplier: float,
                          noise: GaussianNoise) -> tuple[SmootherOperator, np.ndarray]:
        """CKKS hook: a DP linear smoother for encrypted residuals, and its regularised Gram.

        ``A = (psd(G~) + lam I)^-1 Phi^T`` depends on the data only through the ``gram`` release
        (the caller records it). Each round the party computes ``enc(z) = A enc(r)`` and adds the
        plaintext :meth:`encrypted_statistic_offset` to it homomorphically, which gives exactly
        ``(psd(G~) + lam I)^-1 (Phi^T r + e)``: the ``stat`` release, post-processed. Residual rows
        must be bounded by ``residual_clip`` without the party's help (clipped by the label owner
        before encryption, or bounded by the loss: sqrt 2 for cross-entropy, 1 for L1).
        """
        X = np.asarray(X, dtype=np.float64)
        fmap = self.feature_map(X.shape[1])
        Phi = fmap(X)
        gram = self.private_gram(Phi, gram_noise_multiplier, noise)
        return SmootherOperator(A=np.linalg.solve(gram, Phi.T), phi_train=Phi, feature_map=fmap), gram

    def encrypted_statistic_offset(self, gram: np.ndarray, n_outputs: int, noise_multiplier: float,
                                   noise: GaussianNoise) -> np.ndarray:
        """``gram^-1 e`` with ``e ~ N(0, (z * 2BC)^2)`` of shape (p, K): the plaintext to add to
        ``enc(A r)`` so that the encrypted round model is the DP ``stat`` release's model."""
        e = noise.normal((gram.shape[0], int(n_outputs)), noise_multiplier * self.statistic_sensitivity)
        return np.linalg.solve(gram, e)

    @staticmethod
    def solve(gram: np.ndarray, statistic: np.ndarray, feature_map: ClippedFeatureMap) -> DPLinearModel:
        return DPLinearModel(np.linalg.solve(gram, statistic), feature_map)
