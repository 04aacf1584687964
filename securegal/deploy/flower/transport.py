"""The label owner's :class:`~securegal.transport.base.Transport` over a Flower ``Grid``.

Replies are collected by :func:`exchange`, which polls the SuperLink every ``poll`` seconds
(default :data:`POLL_SECONDS`) instead of Flower's ``Grid.send_and_receive``, whose deployment
Grid (``HttpGrid``, flwr 1.42) sleeps a fixed 3 s between pulls: with it every exchange took a
multiple of 3 s (docs/deployments.md, "Where Flower's seconds go").
"""
from __future__ import annotations

import logging
import math
import time
from typing import Mapping, Sequence

from ...errors import PartyUnavailable, ProtocolError
from ...transport.base import Reply
from ...transport.retry import RetryPolicy
from .records import MESSAGE_TYPE, pack, unpack

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # one PullMessages request to the SuperLink per poll: cheap while nothing is ready


def check_poll(poll: float) -> float:
    """``poll`` if it is a finite number of seconds in (0, 10]; ValueError naming it otherwise."""
    if isinstance(poll, bool) or not (isinstance(poll, (int, float)) and math.isfinite(poll) and 0 < poll <= 10):
        raise ValueError(f"poll must be in (0, 10] seconds, got {poll!r}")
    return float(poll)


def exchange(grid, messages: Sequence, timeout: float, poll: float = POLL_SECONDS) -> list:
    """Push ``messages`` and pull their replies every ``poll`` seconds until all arrived or
    ``timeout`` seconds passed; returns the reply to each message, in order (None: no reply, or
    the SuperLink did not take the message).

    Replies are matched by the id of the message they answer (``reply_to_message_id``), so the
    error replies the SuperLink itself writes for a message whose node went offline
    (``NODE_UNAVAILABLE``, source node: the SuperLink) land in the right slot.
    """
    ids = list(grid.push_messages(list(messages)))
    pending = {mid for mid in ids if mid}
    deadline = time.monotonic() + timeout
    replies: dict[str, object] = {}
    while pending:
        for reply in grid.pull_messages(sorted(pending)):
            mid = reply.metadata.reply_to_message_id
            if mid in pending:
                pending.discard(mid)
                replies[mid] = reply
        remaining = deadline - time.monotonic()
        if not pending or remaining <= 0:
            break
        time.sleep(min(poll, remaining))
    return [replies.get(mid) if mid else None for mid in ids]


class FlowerTransport:
    """One Flower ``Message`` per party node per exchange.

    ``nodes`` maps each party to the node id that proved its identity
    (:func:`securegal.deploy.flower.identity.discover`). A party with no reply within ``timeout``
    seconds, whose node went offline, or whose ClientApp failed, gets :class:`PartyUnavailable`
    in its slot, so the label owner drops it from the round as in the other deployments.
    """

    def __init__(self, grid, nodes: Mapping[str, int], timeout: float = RetryPolicy.timeout,
                 poll: float = POLL_SECONDS):
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.grid, self.nodes, self.timeout, self.poll = grid, dict(nodes), timeout, check_poll(poll)

    def call_many(self, requests: Mapping[str, bytes],
                  reply_limits: Mapping[str, int] | None = None) -> dict[str, Reply]:
        """Flower delivers each reply whole: ``reply_limits`` is left to the messenger."""
        from flwr.app import Message

        out: dict[str, Reply] = {}
        parties, messages = [], []
        for party, data in requests.items():
            if party not in self.nodes:
                out[party] = PartyUnavailable(f"party {party!r} has no authenticated Flower node")
                continue
            parties.append(party)
            messages.append(Message(content=pack(data), dst_node_id=self.nodes[party], message_type=MESSAGE_TYPE))
        replies = exchange(self.grid, messages, self.timeout, self.poll) if messages else []
        for party, reply in zip(parties, replies, strict=True):
            if reply is None:
                out[party] = PartyUnavailable(f"party {party!r} did not answer within {self.timeout:g} s")
                log.warning("%s", out[party])
            elif reply.has_error():
                out[party] = PartyUnavailable(f"party {party!r}: Flower error {reply.error.code}: {reply.error.reason}")
                log.warning("%s", out[party])
            elif reply.metadata.src_node_id != self.nodes[party]:
                out[party] = ProtocolError(f"party {party!r}: the reply came from node {reply.metadata.src_node_id}, "
                                           f"not from its node {self.nodes[party]}")
            else:
                try:
                    out[party] = unpack(reply.content)
                except ProtocolError as exc:
                    out[party] = exc
        return out

    def close(self) -> None:
        """Nothing to release: the Grid belongs to the ServerApp's runtime."""
