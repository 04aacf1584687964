"""The embedded default: every party in this process, every message still through the codec."""
from __future__ import annotations

from typing import Mapping

from ..errors import PartyUnavailable
from ..parties.endpoint import PartyEndpoint
from .base import Reply


class InProcessTransport:
    def __init__(self, endpoints: Mapping[str, PartyEndpoint]):
        self.endpoints = dict(endpoints)

    def call_many(self, requests: Mapping[str, bytes]) -> dict[str, Reply]:
        replies: dict[str, Reply] = {}
        for party, data in requests.items():
            endpoint = self.endpoints.get(party)
            replies[party] = endpoint.handle(data) if endpoint else PartyUnavailable(f"no party named {party!r}")
        return replies

    def close(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.close()
