"""A feature party behind gRPC: mutual TLS, caller identity check, chunked frames.

The server moves bytes only. Each call carries one request message (the label owner's
envelope bytes) in frames; the server reassembles it under the size limit, hands it to the
party's ``handle(bytes) -> bytes`` and streams the reply back in frames. Requests are served one
at a time, and the reply to each message id is kept for a few calls so that a client retrying
after a lost reply gets the same answer instead of a second (replayed) request.
"""
from __future__ import annotations

import errno
import ipaddress
import logging
import math
import socket
import threading
import time
from collections import OrderedDict
from concurrent import futures
from typing import Callable, Collection

import grpc

from .address import split_address
from .certs import Identity
from ..errors import ConfigError, ProtocolError
from ..messages import LABEL_OWNER
from ..wire import transport_pb2 as pb
from .frames import DEFAULT_FRAME_LIMITS, FrameLimits, reassemble, split

log = logging.getLogger(__name__)

_SERVICE = pb.DESCRIPTOR.services_by_name["Exchange"]
SERVICE_NAME = _SERVICE.full_name
METHOD_NAME = _SERVICE.methods_by_name["Call"].name
METHOD_PATH = f"/{SERVICE_NAME}/{METHOD_NAME}"
# A call whose frames stop moving for this long (seconds), in either direction, is cancelled
# (at 1 MiB frames: below 35 kB/s).
FRAME_IDLE_SECONDS = 30.0

Handler = Callable[[bytes], bytes]


def host_of(address: str) -> str:
    """The host part of ``host:port`` / ``[v6]:port``."""
    return split_address(address, any_port=True)[0]


def is_loopback(address: str) -> bool:
    host = host_of(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allow_insecure(address: str, role: str, announce: bool = True) -> None:
    """Permit plaintext only on loopback, and say so loudly (``announce``; a server says so when
    it starts serving)."""
    if not is_loopback(address):
        raise ConfigError(f"insecure (plaintext, unauthenticated) transport is only allowed on loopback, "
                          f"not {address!r}; use the federation's certificates")
    if announce:
        announce_insecure(address, role)


def announce_insecure(address: str, role: str) -> None:
    log.warning("INSECURE %s on %s: no TLS, no authentication of the peer, messages in plaintext. "
                "For loopback demos only.", role, address)


def channel_options(limits: FrameLimits) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", limits.max_frame_bytes),
            ("grpc.max_send_message_length", limits.max_frame_bytes)]


def refuse_a_taken_port(address: str) -> None:
    """ConfigError if another socket listens on ``address``'s port at any address its host names.

    gRPC binds every address a name resolves to (``localhost``: 127.0.0.1 and ::1) and starts
    when at least one of them binds, so a second party could start beside a first one on the
    other family. (A port taken between this check and gRPC's bind is still refused by gRPC.)"""
    host, port = split_address(address, "the party's listen address", any_port=True)
    if port == 0:
        return
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return  # not a name of this machine: gRPC's bind says so
    addresses = {(family, where) for family, _, _, _, where in found}
    if host == "localhost":  # gRPC resolves it itself, to both loopbacks, whatever the system's resolver says
        addresses.add((socket.AF_INET, ("127.0.0.1", port)))
        if socket.has_ipv6:
            addresses.add((socket.AF_INET6, ("::1", port, 0, 0)))
    for family, where in addresses:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(where)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(f"cannot listen on {address!r}: port {port} is in use at {where[0]} "
                                      "(another party server?)") from None


class ReplyCache:
    """The last ``items`` replies, kept for retries of the same message, holding at most
    ``max_bytes`` beside the newest reply (which is always kept): eight replies of up to
    max_message_bytes each would otherwise be 8 GiB at the default limit."""

    def __init__(self, items: int, max_bytes: int):
        self._replies: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.items, self.max_bytes, self.nbytes = items, max_bytes, 0

    def get(self, key: tuple[str, str]) -> bytes | None:
        return self._replies.get(key)

    def put(self, key: tuple[str, str], reply: bytes) -> None:
        self._replies[key] = reply
        self.nbytes += len(reply)
        while len(self._replies) > self.items or (len(self._replies) > 1 and self.nbytes - len(reply) > self.max_bytes):
            self.nbytes -= len(self._replies.popitem(last=False)[1])

    def __len__(self) -> int:
        return len(self._replies)


class PartyServer:
    """Serves ``handler`` on ``address`` to the organizations in ``clients`` only.

    With an :class:`Identity` (the default way), TLS requires a client certificate signed by
    the federation CA and the caller's certificate must name one of ``clients``; ``insecure``
    is for loopback demos and is refused elsewhere.
    """

    def __init__(self, handler: Handler, address: str = "127.0.0.1:0", *, identity: Identity | None = None,
                 clients: Collection[str] = (LABEL_OWNER,), insecure: bool = False,
                 limits: FrameLimits = DEFAULT_FRAME_LIMITS, reply_cache: int = 8, max_workers: int = 4,
                 idle_timeout: float = FRAME_IDLE_SECONDS):
        if (identity is None) == (not insecure):
            raise ConfigError("give the party's identity (certificate, key, CA) or insecure=True, not both or neither")
        if insecure:
            allow_insecure(address, "party server", announce=False)  # said when it starts serving
        refuse_a_taken_port(address)
        self.handler, self.address, self.identity = handler, address, identity
        self.clients, self.insecure, self.limits = frozenset(clients), insecure, limits
        self._lock = threading.Lock()
        self._replies = ReplyCache(reply_cache, limits.max_message_bytes)
        self.idle_timeout = idle_timeout
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                   # a second server on the same port must fail, not share it
                                   options=[*channel_options(limits), ("grpc.so_reuseport", 0)])
        rpc = grpc.stream_stream_rpc_method_handler(self._call)  # raw bytes in and out: frames decoded here
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, {METHOD_NAME: rpc}),))
        if insecure:
            bind = lambda: self._server.add_insecure_port(address)  # noqa: E731
        else:
            creds = grpc.ssl_server_credentials([(identity.key_pem, identity.cert_pem)],
                                                root_certificates=identity.ca_pem, require_client_auth=True)
            bind = lambda: self._server.add_secure_port(address, creds)  # noqa: E731
        try:
            self.port = bind()
        except RuntimeError:  # grpc: "Failed to bind" (address in use, unknown host)
            self.port = 0
        if not self.port:
            raise ConfigError(f"cannot listen on {address!r} (address in use, or not an address of this machine)")

    def start(self) -> "PartyServer":
        if self.insecure:
            announce_insecure(self.address, "party server")
        self._server.start()
        log.info("party server listening on port %d (%s)", self.port, "INSECURE" if self.insecure else "mutual TLS")
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (True) or ``timeout`` passes (False)."""
        return self._server.wait_for_termination(timeout)

    def stop(self, grace: float | None = 1.0) -> None:
        self._server.stop(grace).wait()

    def __enter__(self) -> "PartyServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _caller(self, context: grpc.ServicerContext) -> str:
        if self.insecure:
            return "insecure"
        auth = context.auth_context()
        names = [v.decode("utf-8", "replace") for v in auth.get("x509_common_name", [])]
        sans = {v.decode("utf-8", "replace") for v in auth.get("x509_subject_alternative_name", [])}
        if len(names) != 1 or names[0] not in self.clients or names[0] not in sans:
            log.warning("refused caller %s: certificate names %s (SAN %s), allowed %s",
                        context.peer(), names, sorted(sans), sorted(self.clients))
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"certificate names {names}, this party only serves {sorted(self.clients)}")
        return names[0]

    def _call(self, frames, context: grpc.ServicerContext):
        caller = self._caller(context)
        watchdog = _Watchdog(context, self.idle_timeout)
        try:
            yield from self._answer(caller, frames, context, watchdog)
        finally:
            watchdog.stop()

    def _answer(self, caller: str, frames, context: grpc.ServicerContext, watchdog: _Watchdog):
        try:
            message_id, request = reassemble(watchdog.frames(frames), self.limits)
        except ProtocolError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        key = (caller, message_id)
        watchdog.pause()  # the party's own work is not the caller's stall
        with self._lock:
            reply = self._replies.get(key)
            if reply is None:
                reply = self.handler(request)
                if len(reply) <= self.limits.max_message_bytes:  # an oversized reply is refused, never kept
                    self._replies.put(key, reply)
            else:
                log.info("message %s retried by %s: answering with the kept reply", message_id, caller)
        if len(reply) > self.limits.max_message_bytes:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"reply of {len(reply)} bytes exceeds this party's limit of {self.limits.max_message_bytes}")
        for frame in split(message_id, reply, self.limits):
            watchdog.touch()  # the caller took the previous frame
            yield frame.SerializeToString()


class _Watchdog:
    """Cancels a call when its frames stop moving, in either direction, for ``idle`` seconds: a
    caller that starts a message and stalls, or never reads its reply, would otherwise hold one of
    the server's few worker threads. Paused while the party works on the request. One thread per
    call."""

    def __init__(self, context: grpc.ServicerContext, idle: float):
        self.context, self.idle = context, idle
        self._last = time.monotonic()
        self._done = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def touch(self) -> None:
        self._last = time.monotonic()

    def pause(self) -> None:
        self._last = math.inf

    def stop(self) -> None:
        self._done.set()

    def frames(self, frames):
        for frame in frames:
            self.touch()
            yield frame

    def _watch(self) -> None:
        while not self._done.wait(max(0.05, min(self.idle, self._last + self.idle - time.monotonic()))):
            if time.monotonic() - self._last >= self.idle:
                log.warning("cancelled a call whose frames stopped for %g s (%s)", self.idle, self.context.peer())
                self.context.cancel()
                return
