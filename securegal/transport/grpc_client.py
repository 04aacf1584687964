"""The label owner's side of the network: a :class:`Transport` that reaches parties over gRPC.

Mutual TLS by default: the client presents its organization's certificate and checks that the
server's certificate, signed by the federation CA, names the party it meant to call. Every call
has a deadline and is retried with exponential backoff while the party is unreachable; a party
that stays down gets :class:`PartyUnavailable` in its slot of :meth:`GrpcTransport.call_many`.
"""
from __future__ import annotations

import logging
import threading
from concurrent import futures
from dataclasses import replace
from typing import Mapping

import grpc

from .certs import Identity, check_org_name
from ..errors import ConfigError, PartyRefused, PartyUnavailable, ProtocolError
from .base import Reply
from .retry import RetryPolicy
from .frames import DEFAULT_FRAME_LIMITS, FrameLimits, new_message_id, reassemble, split
from .grpc_server import METHOD_PATH, allow_insecure, channel_options

log = logging.getLogger(__name__)

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
REFUSED = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED})
MALFORMED = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED})


class GrpcTransport:
    """Reaches each party at its ``host:port`` in ``peers`` ({party name: address})."""

    def __init__(self, peers: Mapping[str, str], *, identity: Identity | None = None, insecure: bool = False,
                 retry: RetryPolicy = RetryPolicy(), limits: FrameLimits = DEFAULT_FRAME_LIMITS):
        if (identity is None) == (not insecure):
            raise ConfigError("give the label owner's identity (certificate, key, CA) or insecure=True, not both or neither")
        self.peers = {check_org_name(p): a for p, a in peers.items()}
        self.retry, self.limits, self.insecure = retry, limits, insecure
        self._channels: dict[str, grpc.Channel] = {}
        self._calls = {}
        for party, address in self.peers.items():
            options = channel_options(limits) + [
                ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", int(1000 * max(retry.backoff_max, 0.1)))]
            if insecure:
                allow_insecure(address, f"connection to {party}")
                channel = grpc.insecure_channel(address, options=options)
            else:
                creds = grpc.ssl_channel_credentials(root_certificates=identity.ca_pem,
                                                     private_key=identity.key_pem, certificate_chain=identity.cert_pem)
                # The server's certificate must name the party we mean to reach, whatever the address.
                options.append(("grpc.ssl_target_name_override", party))
                channel = grpc.secure_channel(address, creds, options=options)
            self._channels[party] = channel
            self._calls[party] = channel.stream_stream(METHOD_PATH)  # raw bytes: frames encoded/decoded here
        self._pool = futures.ThreadPoolExecutor(max_workers=max(1, len(self.peers)), thread_name_prefix="securegal-call")
        self._closed = threading.Event()
        # Parties whose last call went unanswered after every attempt: asked once per call until
        # they answer again (a dead party cost every later round the whole backoff).
        self._down: set[str] = set()

    def call(self, party: str, request: bytes, timeout: float | None = None,
             reply_limit: int | None = None) -> bytes:
        """One request to one party, retried while it is unreachable; returns the reply bytes.

        Raises :class:`PartyUnavailable` (no answer after every attempt), :class:`PartyRefused`
        (the party rejected our identity) or :class:`ProtocolError` (a malformed or oversized
        message either way; a reply whose first frame announces more than ``reply_limit`` bytes
        is cut there, the call cancelled).
        """
        if party not in self._calls:
            raise PartyUnavailable(f"no address known for party {party!r}")
        if self._closed.is_set():
            raise PartyUnavailable(f"transport closed, cannot reach {party!r}")
        deadline = timeout if timeout is not None else self.retry.timeout
        frames = list(split(new_message_id(), request, self.limits))  # one id for every retry of this message
        limits = self.limits
        if reply_limit is not None and reply_limit < limits.max_message_bytes:
            limits = replace(limits, max_message_bytes=reply_limit)
        last = None
        attempts = 1 if party in self._down else self.retry.attempts
        for attempt in range(attempts):
            try:
                replies = self._calls[party](iter(f.SerializeToString() for f in frames), timeout=deadline)
                try:
                    reply_id, reply = reassemble(replies, limits)
                except ProtocolError as exc:
                    replies.cancel()
                    raise ProtocolError(f"reply from {party!r}: {exc}") from None
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details()
                if code in REFUSED:
                    raise PartyRefused(party, code.name.lower(), details or "") from None
                if code in MALFORMED:
                    raise ProtocolError(f"party {party!r} rejected the message: {details}") from None
                if "Hostname Verification Check failed" in (details or ""):  # a wrong address: never retried
                    raise PartyRefused(party, "tls", f"the server at {self.peers[party]} presents a certificate that "
                                                     f"does not name {party!r} (another organization's address?)"
                                       ) from None
                if code not in RETRYABLE:
                    raise PartyUnavailable(f"party {party!r} failed: {code.name} {details}") from None
                last = f"{code.name}: {details}"
                if attempt + 1 < attempts:
                    wait = self.retry.delay(attempt)
                    log.info("party %s attempt %d failed (%s); retrying in %.2fs", party, attempt + 1, last, wait)
                    if self._closed.wait(wait):
                        break
                continue
            if reply_id != frames[0].message_id:
                raise ProtocolError(f"party {party!r} answered message {reply_id}, expected {frames[0].message_id}")
            if party in self._down:
                self._down.discard(party)
                log.warning("party %s answers again", party)
            return reply
        self._down.add(party)
        raise PartyUnavailable(f"party {party!r} at {self.peers[party]} did not answer after "
                               f"{attempts} attempt{'s' if attempts > 1 else ''} ({last})")

    def call_many(self, requests: Mapping[str, bytes], reply_limits: Mapping[str, int] | None = None,
                  timeout: float | None = None) -> dict[str, Reply]:
        """Send every request concurrently; each party's slot holds its reply bytes or the error."""
        limit = dict(reply_limits or {})
        down = set(self._down)
        pending = {p: self._pool.submit(self.call, p, data, timeout, limit.get(p)) for p, data in requests.items()}
        out: dict[str, Reply] = {}
        for party, fut in pending.items():
            try:
                out[party] = fut.result()
            except (PartyUnavailable, PartyRefused, ProtocolError) as exc:
                still = party in down and isinstance(exc, PartyUnavailable)  # said once, when it went away
                log.log(logging.INFO if still else logging.WARNING, "party %s: %s", party, exc)
                out[party] = exc
        return out

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=True)
        for channel in self._channels.values():
            channel.close()
