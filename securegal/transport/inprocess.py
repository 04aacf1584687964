"""The embedded default: every party in this process, every message still through the codec."""
from __future__ import annotations

from typing import Callable, Mapping

from ..errors import PartyUnavailable
from .base import Reply

Handler = Callable[[bytes], bytes]


class InProcessTransport:
    """Hands each request's bytes to the named party's handler (bytes in, bytes out).

    ``on_close`` runs when the label owner closes the transport (e.g. to close the parties'
    transcripts); the transport itself holds nothing else. It calls the parties one after
    another (``sequential``), so the messenger hands it one request at a time.
    """

    sequential = True

    def __init__(self, handlers: Mapping[str, Handler], on_close: Callable[[], None] | None = None):
        self.handlers = dict(handlers)
        self._on_close = on_close

    def call_many(self, requests: Mapping[str, bytes],
                  reply_limits: Mapping[str, int] | None = None) -> dict[str, Reply]:
        """Each party's handler's reply (in memory already: ``reply_limits`` is left to the messenger)."""
        replies: dict[str, Reply] = {}
        for party, data in requests.items():
            handler = self.handlers.get(party)
            replies[party] = handler(data) if handler else PartyUnavailable(f"no party named {party!r}")
        return replies

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
