"""Which Flower node is which party: a handshake bound to Flower's node authentication.

The label owner sends every connected node a fresh nonce. Each ClientApp answers with the party
name from its own node config and, when its node config names the SuperNode's authentication key
(``auth-key``, the same key the SuperLink authenticated with ``--enable-supernode-auth``), an
ECDSA signature over (nonce, node id, party name). The label owner checks that signature against
the public key it holds for that party (its ``supernode-keys`` directory: ``<party>.pub``), so a
party's identity is never taken from message content alone: a node that cannot sign with the key
registered for a name cannot claim it. Without keys (the simulation engine, one process) the
names come from the node configs the operator wrote.
"""
from __future__ import annotations

import logging
import secrets
import struct
from pathlib import Path
from typing import Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ...errors import ConfigError, ProtocolError
from ...transport.certs import check_org_name
from .records import IDENTITY_TYPE, config, read_config
from .transport import exchange

log = logging.getLogger(__name__)

NONCE_BYTES = 32
_DOMAIN = b"securegal-flower-identity-v1\0"


def _signed_bytes(nonce: bytes, node_id: int, party: str) -> bytes:
    return _DOMAIN + nonce + struct.pack(">Q", node_id) + party.encode()


def load_private_key(path: str | Path) -> ec.EllipticCurvePrivateKey:
    """A SuperNode's authentication key (OpenSSH or PEM, as ``flower-supernode`` takes it)."""
    raw = _read(path)
    try:
        key = (serialization.load_ssh_private_key(raw, None) if raw.startswith(b"-----BEGIN OPENSSH")
               else serialization.load_pem_private_key(raw, None))
    except ValueError as exc:
        raise ConfigError(f"{path}: not an unencrypted EC private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path}: SuperNode authentication keys are elliptic-curve keys, got {type(key).__name__}")
    return key


def load_public_key(path: str | Path) -> ec.EllipticCurvePublicKey:
    raw = _read(path)
    try:
        key = (serialization.load_pem_public_key(raw) if raw.startswith(b"-----BEGIN")
               else serialization.load_ssh_public_key(raw))
    except ValueError as exc:
        raise ConfigError(f"{path}: not an EC public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(f"{path}: SuperNode authentication keys are elliptic-curve keys, got {type(key).__name__}")
    return key


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read key {path}: {exc.strerror or exc}") from None


def party_keys(directory: str | Path, parties: Iterable[str]) -> dict[str, ec.EllipticCurvePublicKey]:
    """``<directory>/<party>.pub`` for every party; ConfigError naming a missing one."""
    directory = Path(directory)
    return {p: load_public_key(directory / f"{p}.pub") for p in parties}


def answer(nonce: bytes, node_id: int, party: str, key: ec.EllipticCurvePrivateKey | None) -> dict:
    """A ClientApp's handshake reply: its party name, signed when it holds the node's key."""
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:  # a ConfigRecord value may be any scalar
        raise ProtocolError(f"identity nonce must be {NONCE_BYTES} bytes")
    signature = b"" if key is None else key.sign(_signed_bytes(nonce, node_id, party), ec.ECDSA(hashes.SHA256()))
    return {"party": party, "signature": signature}


def discover(grid, parties: Iterable[str], keys: Mapping[str, ec.EllipticCurvePublicKey] | None,
             timeout: float) -> dict[str, int]:
    """{party: node id} of the connected nodes that proved who they are.

    A node whose signature does not verify against the key held for the party it names, that
    names a party outside ``parties``, or that names one twice, is left out (and logged): it is
    never sent securegal messages; a party named by two nodes is refused on both. Parties with no proven node are absent from the result.
    """
    from flwr.app import Message

    expected = {check_org_name(p) for p in parties}
    nonces, messages = {}, []
    for node_id in grid.get_node_ids():
        nonces[node_id] = secrets.token_bytes(NONCE_BYTES)
        messages.append(Message(content=config(nonce=nonces[node_id]), dst_node_id=node_id,
                                message_type=IDENTITY_TYPE))
    found: dict[str, int] = {}
    ambiguous: set[str] = set()
    for node_id, reply in zip(nonces, exchange(grid, messages, timeout) if messages else [], strict=True):
        if reply is None or reply.has_error() or reply.metadata.src_node_id != node_id:
            log.warning("node %s gave no identity (%s)", node_id,
                        "no reply" if reply is None else reply.error.reason if reply.has_error()
                        else f"the reply came from node {reply.metadata.src_node_id}")
            continue
        try:
            claim = read_config(reply.content, "party", "signature")
            party = check_org_name(claim["party"])
        except (ProtocolError, ConfigError) as exc:
            log.warning("node %s: malformed identity: %s", node_id, exc)
            continue
        if party not in expected:
            log.warning("node %s claims party %r, which is not in this federation", node_id, party)
            continue
        if keys is not None:
            try:
                keys[party].verify(claim["signature"], _signed_bytes(nonces[node_id], node_id, party),
                                   ec.ECDSA(hashes.SHA256()))
            except (InvalidSignature, TypeError, ValueError):
                log.warning("node %s claims party %r but did not sign with its registered key; refused", node_id, party)
                continue
        if party in found or party in ambiguous:
            log.warning("party %r answered from two nodes (%s, %s); refusing both", party, found.get(party), node_id)
            found.pop(party, None)
            ambiguous.add(party)
            continue
        found[party] = node_id
    return found
