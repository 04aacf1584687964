"""How the label owner retries a call to a party: attempts, deadline and backoff."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries per call, each with a ``timeout`` (seconds) deadline; between tries
    wait ``backoff * 2**k`` seconds, at most ``backoff_max``."""

    attempts: int = 4
    timeout: float = 300.0
    backoff: float = 0.25
    backoff_max: float = 4.0

    def __post_init__(self):
        if self.attempts < 1:
            raise ConfigError(f"attempts must be >= 1, got {self.attempts}")
        if not self.timeout > 0 or self.backoff < 0 or self.backoff_max < 0:
            raise ConfigError(f"timeout must be > 0 and backoff >= 0, got {self.timeout}, {self.backoff}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        return min(self.backoff_max, self.backoff * (2 ** attempt))
