"""What a transport is: it moves request bytes to named parties and reply bytes back."""
from __future__ import annotations

from typing import Mapping, Protocol, Union, runtime_checkable

Reply = Union[bytes, Exception]


@runtime_checkable
class Transport(Protocol):
    """Label-owner side. Each party's slot holds its reply bytes or the exception that prevented
    one (e.g. :class:`securegal.errors.PartyUnavailable`). A transport that answers the parties
    one after another may say so with a true ``sequential`` attribute: the messenger then sends
    it one request at a time (fewer request and reply bytes alive at once). ``reply_limits``:
    per party, the most bytes its reply may take; a transport that receives a reply in parts
    stops at the first part that announces more (the messenger checks every reply again)."""

    def call_many(self, requests: Mapping[str, bytes],
                  reply_limits: Mapping[str, int] | None = None) -> dict[str, Reply]: ...

    def close(self) -> None: ...
