"""The small set of exceptions securegal raises on purpose.

Every one is a ``ValueError`` or ``RuntimeError`` subclass so that generic callers keep working,
and every message names the bad value.
"""
from __future__ import annotations


class SecuregalError(Exception):
    """Base class of securegal's own errors."""


class ConfigError(SecuregalError, ValueError):
    """A user-supplied setting or input file is invalid."""


class ProtocolError(SecuregalError, ValueError):
    """An incoming message is malformed, oversized, out of order or from the wrong session."""


class BudgetExceeded(SecuregalError, RuntimeError):
    """A release would spend more privacy budget than the party allows; nothing was released."""


class InsecureParameters(SecuregalError, ValueError):
    """Cryptographic parameters below the required security level."""


class PartyUnavailable(SecuregalError, RuntimeError):
    """A party did not answer (timeout, connection refused, crashed)."""


class PartyRefused(SecuregalError, RuntimeError):
    """A party answered with an error instead of a result."""

    def __init__(self, party: str, code: str, message: str):
        super().__init__(f"party {party!r} refused ({code}): {message}")
        self.party, self.code, self.message = party, code, message
