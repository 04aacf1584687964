"""The privacy seam: what a party does to a message's payload on its way out and in.

Label owner side, a :class:`ResidualChannel` turns the plaintext residuals into what travels
(plain, encrypted, noised) and opens what comes back. Feature-party side, a
:class:`RoundTrainer` fits the round model to whatever arrived and returns what the party
releases. The coordinator and the party state machine only call these; swapping a layer never
changes the round loop.
"""
from __future__ import annotations

from typing import Callable, Mapping, Protocol, runtime_checkable

import numpy as np

from .errors import ProtocolError
from .messages import EncryptedPayload, Payload, Setup


@runtime_checkable
class ResidualChannel(Protocol):
    """Label-owner side: residuals out, predictions in."""

    name: str

    def setup_fields(self, party: str) -> Mapping[str, object]:
        """Extra :class:`Setup` fields for ``party`` (e.g. ``residuals``, ``he_context``)."""

    def seal(self, residuals: np.ndarray, round: int, party: str) -> Payload:
        """What ``party`` receives as this round's residuals."""

    def open(self, payload: Payload, round: int, party: str, shape: tuple[int, ...]) -> np.ndarray:
        """The plaintext predictions of ``party``'s reply; ``shape`` is what they must be."""

    def reply_bytes(self, party: str, shape: tuple[int, ...]) -> int:
        """The most bytes the payload of ``party``'s reply can take when it holds predictions of
        ``shape`` (checked before the reply is decoded)."""

    def report(self) -> dict:
        """Facts for ``metrics.json`` (sizes, parameters, privacy spent)."""


@runtime_checkable
class RoundTrainer(Protocol):
    """Feature-party side: fit each round's model to the residuals as they arrived."""

    def setup(self, X_train: np.ndarray, setup: Setup) -> None: ...

    def fit_round(self, round: int, residuals: Payload) -> Payload:
        """Fit round ``round``'s model; return the predictions on the training rows to release."""

    def predict(self, X: np.ndarray, rounds: int) -> Payload:
        """Per-round predictions (rounds, n, K) for rows ``X``; zeros for rounds not fitted."""

    def report(self) -> dict: ...


def plain_bytes(shape: tuple[int, ...]) -> int:
    """Bytes of a float64 array of ``shape``: a plaintext reply's payload."""
    return 8 * int(np.prod(shape, dtype=np.int64))


def plain_array(payload: Payload, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``payload`` as a finite float64 array of exactly ``shape``, or a :class:`ProtocolError`."""
    if isinstance(payload, EncryptedPayload):
        raise ProtocolError(f"{what}: expected a plaintext array, got {payload.scheme} ciphertexts")
    if not isinstance(payload, np.ndarray):
        raise ProtocolError(f"{what}: expected an array, got {type(payload).__name__}")
    if payload.shape != tuple(shape):
        raise ProtocolError(f"{what}: expected shape {tuple(shape)}, got {payload.shape}")
    if payload.dtype.kind != "f":
        raise ProtocolError(f"{what}: expected floating point values, got {payload.dtype}")
    if not np.isfinite(payload).all():
        raise ProtocolError(f"{what}: values must be finite")
    return payload.astype(np.float64, copy=False)


# Builds a feature party's trainer when a Setup arrives (the Setup says which residual mode the
# label owner chose; the factory refuses a mode its layer cannot run).
TrainerFactory = Callable[[Setup], RoundTrainer]

