"""The label owner's :class:`~securegal.transport.base.Transport` over a Flower ``Grid``."""
from __future__ import annotations

import logging
import time
from typing import Mapping

from ...errors import PartyUnavailable, ProtocolError
from ...transport.base import Reply
from .records import MESSAGE_TYPE, pack, unpack

log = logging.getLogger(__name__)


class FlowerTransport:
    """One Flower ``Message`` per party node per exchange, sent with ``grid.send_and_receive``.

    ``poll`` (seconds) replaces ``send_and_receive``'s waiting by pulls at that interval.
    ``nodes`` maps each party to the node id that proved its identity
    (:func:`securegal.deploy.flower.identity.discover`). A party with no reply within ``timeout``
    seconds, or whose ClientApp failed, gets :class:`PartyUnavailable` in its slot, so the label
    owner drops it from the round as in the other deployments.
    """

    def __init__(self, grid, nodes: Mapping[str, int], timeout: float = 300.0, poll: float | None = None):
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if poll is not None and not poll > 0:
            raise ValueError(f"poll must be > 0 seconds, got {poll!r}")
        self.grid, self.nodes, self.timeout, self.poll = grid, dict(nodes), timeout, poll
        self._parties = {node: party for party, node in self.nodes.items()}

    def _exchange(self, messages: list) -> list:
        """``grid.send_and_receive``; with ``poll``, the same with pulls every ``poll`` seconds
        (flwr 1.42's deployment Grid waits 3 s between pulls)."""
        if self.poll is None:
            return list(self.grid.send_and_receive(messages, timeout=self.timeout))
        pending = set(self.grid.push_messages(messages))
        deadline, replies = time.monotonic() + self.timeout, []
        while pending and time.monotonic() < deadline:
            got = list(self.grid.pull_messages(pending))
            replies.extend(got)
            pending -= {m.metadata.reply_to_message_id for m in got}
            if pending:
                time.sleep(self.poll)
        return replies

    def call_many(self, requests: Mapping[str, bytes]) -> dict[str, Reply]:
        from flwr.app import Message

        out: dict[str, Reply] = {}
        messages = []
        for party, data in requests.items():
            if party not in self.nodes:
                out[party] = PartyUnavailable(f"party {party!r} has no authenticated Flower node")
                continue
            messages.append(Message(content=pack(data), dst_node_id=self.nodes[party], message_type=MESSAGE_TYPE))
        for reply in self._exchange(messages) if messages else ():
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
