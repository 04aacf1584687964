"""The label owner's :class:`~securegal.transport.base.Transport` over a Flower ``Grid``."""
from __future__ import annotations

import logging
from typing import Mapping

from ...errors import PartyUnavailable, ProtocolError
from ...transport.base import Reply
from .records import MESSAGE_TYPE, pack, unpack

log = logging.getLogger(__name__)


class FlowerTransport:
    """One Flower ``Message`` per party node per exchange, sent with ``grid.send_and_receive``.

    ``nodes`` maps each party to the node id that proved its identity
    (:func:`securegal.deploy.flower.identity.discover`). A party with no reply within ``timeout``
    seconds, or whose ClientApp failed, gets :class:`PartyUnavailable` in its slot, so the label
    owner drops it from the round as in the other deployments.
    """

    def __init__(self, grid, nodes: Mapping[str, int], timeout: float = 300.0):
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.grid, self.nodes, self.timeout = grid, dict(nodes), timeout
        self._parties = {node: party for party, node in self.nodes.items()}

    def call_many(self, requests: Mapping[str, bytes]) -> dict[str, Reply]:
        from flwr.app import Message

        out: dict[str, Reply] = {}
        messages = []
        for party, data in requests.items():
            if party not in self.nodes:
                out[party] = PartyUnavailable(f"party {party!r} has no authenticated Flower node")
                continue
            messages.append(Message(content=pack(data), dst_node_id=self.nodes[party], message_type=MESSAGE_TYPE))
        for reply in self.grid.send_and_receive(messages, timeout=self.timeout) if messages else ():
            party = self._parties.get(reply.metadata.src_node_id)
            if party is None or party not in requests or party in out:
                log.warning("ignoring a reply from node %s", reply.metadata.src_node_id)
                continue
            if reply.has_error():
                out[party] = PartyUnavailable(f"party {party!r}: Flower error {reply.error.code}: {reply.error.reason}")
                continue
            try:
                out[party] = unpack(reply.content)
            except ProtocolError as exc:
                out[party] = exc
        for party in requests:
            if party not in out:
                out[party] = PartyUnavailable(f"party {party!r} did not answer within {self.timeout:g} s")
                log.warning("%s", out[party])
        return out

    def close(self) -> None:
        """Nothing to release: the Grid belongs to the ServerApp's runtime."""
