"""DP mechanisms: row clipping, the Gaussian mechanism, and the noise source behind them.

Noise is drawn from the operating system's CSPRNG (``os.urandom``) unless a seed is given
explicitly; a seeded source is for tests and reproducible studies only and warns when created
(like Opacus's ``secure_mode``, which forbids seeds). The sampler is Box-Muller on 53-bit
uniforms, each output the scaled sum of 4 normals as in Opacus's secure mode: small enough to
read in full. See docs/privacy.md for what it does and does not defend against.

Nothing here does accounting: callers record a :class:`~securegal.privacy.dp.accountant.Release`
before they draw noise.
"""
from __future__ import annotations

import math
import os
import warnings

import numpy as np


class InsecureNoiseWarning(UserWarning):
    """Noise comes from a seeded, predictable generator: fine for tests, not for real data."""


class GaussianNoise:
    """Standard-normal noise; secure (OS CSPRNG) by default, seeded only when asked."""

    def __init__(self, seed: int | None = None):
        if seed is None:
            self._rng = None
        else:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
            warnings.warn(f"GaussianNoise(seed={seed}) is predictable: use it only in tests and "
                          "studies, never to protect real data", InsecureNoiseWarning, stacklevel=2)
            self._rng = np.random.default_rng(seed)

    @property
    def secure(self) -> bool:
        return self._rng is None

    def _uniform(self, size: int) -> np.ndarray:
        """Uniforms on [0, 1) with 53 random bits each."""
        if self._rng is not None:
            return self._rng.random(size)
        words = np.frombuffer(os.urandom(8 * size), dtype=np.uint64)
        return (words >> np.uint64(11)).astype(np.float64) * 2.0 ** -53

    def _standard_normal(self, size: int) -> np.ndarray:
        half = (size + 1) // 2
        u1 = 1.0 - self._uniform(half)  # (0, 1]: log is finite
        u2 = self._uniform(half)
        radius = np.sqrt(-2.0 * np.log(u1))
        return np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])[:size]

    def normal(self, shape: tuple[int, ...] | int, std: float) -> np.ndarray:
        """Independent N(0, std^2) draws of the given shape.

        Each draw is the sum of 4 independent Box-Muller normals divided by 2 (still N(0, 1)):
        the mitigation Opacus's secure mode uses against attacks on the floating-point
        representation of a single Gaussian sample (Holohan and Braghin, 2021).
        """
        std = float(std)
        if not (math.isfinite(std) and std >= 0):
            raise ValueError(f"noise std must be finite and >= 0, got {std!r}")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        size = int(np.prod(shape, dtype=np.int64))
        z = self._standard_normal(4 * size).reshape(4, size).sum(axis=0) / 2.0
        return (std * z).reshape(shape)


def clip_rows(X: np.ndarray, max_norm: float) -> np.ndarray:
    """Scale every row of ``X`` whose L2 norm exceeds ``max_norm`` down to ``max_norm``."""
    max_norm = float(max_norm)
    if not (math.isfinite(max_norm) and max_norm > 0):
        raise ValueError(f"clipping norm must be finite and > 0, got {max_norm!r}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X * np.minimum(1.0, max_norm / np.maximum(norms, 1e-300))


def gaussian_mechanism(value: np.ndarray, sensitivity: float, noise_multiplier: float,
                       noise: GaussianNoise) -> np.ndarray:
    """``value + N(0, (noise_multiplier * sensitivity)^2)`` entry-wise.

    ``sensitivity`` is the L2 sensitivity of ``value`` (flattened) under the adjacency in use;
    the release is then (alpha, alpha / (2 noise_multiplier^2))-RDP.
    """
    if not (sensitivity > 0 and noise_multiplier > 0):
        raise ValueError(f"sensitivity and noise_multiplier must be > 0, got {sensitivity!r}, "
                         f"{noise_multiplier!r}")
    value = np.asarray(value, dtype=np.float64)
    return value + noise.normal(value.shape, noise_multiplier * sensitivity)


def noisy_symmetric(G: np.ndarray, std: float, noise: GaussianNoise,
                    skip: tuple[int, ...] = ()) -> np.ndarray:
    """Noise the upper triangle (with diagonal) of symmetric ``G`` once and mirror it.

    Entries ``(i, i)`` for ``i`` in ``skip`` are left exact (data-independent entries).
    """
    G = np.asarray(G, dtype=np.float64)
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {G.shape}")
    iu = np.triu_indices(G.shape[0])
    upper = np.zeros_like(G)
    upper[iu] = noise.normal(len(iu[0]), std)
    for i in skip:
        upper[i, i] = 0.0
    E = upper + np.triu(upper, 1).T
    return G + E


# --- Replace-one L2 sensitivities (proof sketches in docs/privacy.md) -----------------------

def gram_sensitivity(feature_clip: float, intercept: float) -> float:
    """Upper triangle of ``Phi^T Phi`` with rows ``phi = (x, c)``, ``||x|| <= B``, constant ``c``
    (the (c, c) corner is n c^2, public, and not released): ``sqrt(2 B^4 + 4 c^2 B^2)``."""
    B, c = float(feature_clip), float(intercept)
    return math.sqrt(2 * B ** 4 + 4 * c ** 2 * B ** 2)


def statistic_sensitivity(feature_clip: float, residual_clip: float) -> float:
    """``Phi^T r`` with ``||x|| <= B`` and residual rows ``||r_i|| <= C``: ``2 B C``."""
    return 2.0 * float(feature_clip) * float(residual_clip)


def prediction_sensitivity(prediction_clip: float) -> float:
    """Per-row predictions of a fixed (already DP) model, rows clipped to ``C_f``: ``2 C_f``."""
    return 2.0 * float(prediction_clip)


def release_rows(f: np.ndarray, clip: float, noise_multiplier: float, noise: GaussianNoise) -> np.ndarray:
    """Prediction rows clipped to norm ``clip``, then the Gaussian mechanism at replace-one
    sensitivity ``2 * clip``."""
    return gaussian_mechanism(clip_rows(f, clip), prediction_sensitivity(clip), noise_multiplier, noise)
