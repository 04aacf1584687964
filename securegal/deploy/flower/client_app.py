"""A feature party as a Flower ``ClientApp``.

Which party this node is comes from the SuperNode's node config, never from message content:

- ``party-config``: path of the party's ``party.toml`` (its table, learner and ``[privacy]``;
  ``listen``/``[tls]`` are the gRPC deployment's and unused here);
- ``auth-key`` (optional): the SuperNode's authentication private key, used to sign the identity
  handshake (:mod:`.identity`).

In the simulation engine (one process, no per-node config files) the run config
``party-configs`` lists the parties' files, comma-separated, picked by ``partition-id``.

Party state (the session, round models, trainer, DP ledger) must outlive one message:

- simulation engine: it lives in :data:`_ENDPOINTS`, a module-level cache keyed by (run id,
  node id), which needs every message of a node in one long-lived Python process: ONE Ray actor
  (``client_resources.num_cpus`` equal to the backend's ``num_cpus``, :data:`SIMULATION_BACKEND`);
- deployment runtime: flwr 1.42 starts a fresh ``flwr-clientapp`` process for EVERY message, with
  both ``--isolation subprocess`` and ``--isolation process``, so no Python object survives. The
  state then lives in the organization's party runtime (:mod:`.party_runtime`, beside the
  SuperNode) and node config ``party-runtime = "host:port"`` makes this ClientApp a relay to it,
  authenticated with the organization's own certificate (party.toml ``[tls]``).
"""
from __future__ import annotations

import logging
import threading
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import require_flwr

require_flwr()
from flwr.app import Context, Message  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402

from ...errors import ConfigError  # noqa: E402
from .identity import answer, load_private_key  # noqa: E402
from .records import ACTION, IDENTITY_ACTION, config, pack, read_config, unpack  # noqa: E402

if TYPE_CHECKING:  # the party itself is imported only where it runs (the simulation engine): a
    from ...parties.endpoint import PartyEndpoint  # relay ClientApp, one process per message, stays light
    from ..party_process import PartyConfig

log = logging.getLogger(__name__)

# Backend config for flwr.simulation.run_simulation: one actor holds every node's party state.
SIMULATION_BACKEND = {"init_args": {"num_cpus": 1}, "client_resources": {"num_cpus": 1, "num_gpus": 0.0}}

_ENDPOINTS: dict[tuple[int, int], PartyEndpoint] = {}
_LOCK = threading.Lock()


def party_config_path(context: Context, party_configs: Sequence[str | Path] | None = None) -> Path:
    """This node's ``party.toml``: node config ``party-config``, else entry ``partition-id`` of
    ``party_configs`` (or of the run config's comma-separated ``party-configs``)."""
    node = context.node_config
    if "party-config" in node:
        return Path(str(node["party-config"]))
    listed = party_configs
    if listed is None and context.run_config.get("party-configs"):
        listed = [p.strip() for p in str(context.run_config["party-configs"]).split(",")]
    if listed is None or "partition-id" not in node:
        raise ConfigError("this SuperNode's node config needs party-config (path of its party.toml)")
    index = int(node["partition-id"])
    if not 0 <= index < len(listed):
        raise ConfigError(f"partition-id {index} has no party config (run config lists {len(listed)})")
    return Path(str(listed[index]))


def _load(path: Path) -> PartyConfig:
    """``party.toml``; its ``[tls]`` may be left out (Flower does TLS), in which case none is loaded."""
    from ..party_process import PartyConfig

    try:
        has_tls = "tls" in tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        has_tls = True  # PartyConfig.load reports it
    return PartyConfig.load(path, insecure=not has_tls)


def _endpoint(context: Context, party_configs) -> PartyEndpoint:
    """This node's party (simulation engine: built at its first message, kept until its Finish)."""
    from ..party_process import build_party

    key = (context.run_id, context.node_id)
    with _LOCK:
        if key not in _ENDPOINTS:
            _ENDPOINTS[key] = build_party(_load(party_config_path(context, party_configs)))
        return _ENDPOINTS[key]


def _release(context: Context) -> None:
    with _LOCK:
        endpoint = _ENDPOINTS.pop((context.run_id, context.node_id), None)
    if endpoint is not None:
        endpoint.close()


def _relay(path: Path, address: str, data: bytes) -> bytes:
    """``data`` to the party runtime at ``address`` (mutual TLS with the party's own certificate)."""
    from ...transport.grpc_client import GrpcTransport
    from ...transport.frames import FrameLimits
    from .. import config as schema
    from ..tls import TlsConfig

    f, _ = schema.read(path, schema.PartyFile)
    tls = TlsConfig.build(f.tls, f.name, str(path), path.resolve().parent)
    transport = GrpcTransport({f.name: address}, identity=tls.identity, insecure=tls.insecure,
                              limits=FrameLimits(chunk_bytes=f.limits.chunk_bytes,
                                                 max_message_bytes=f.limits.max_message_bytes))
    try:
        return transport.call(f.name, data)
    finally:
        transport.close()


def _party_name(path: Path) -> str:
    from .. import config as schema

    return schema.read(path, schema.PartyFile)[0].name


def make_client_app(party_configs: Sequence[str | Path] | None = None) -> ClientApp:
    """A ClientApp serving the party its node config names (``party_configs``: simulation only)."""
    app = ClientApp()

    @app.query(ACTION)
    def securegal(message: Message, context: Context) -> Message:
        runtime = context.node_config.get("party-runtime")
        if runtime:  # deployment runtime: the state lives in the party runtime process
            reply = _relay(party_config_path(context, party_configs), str(runtime), unpack(message.content))
            return Message(pack(reply), reply_to=message)
        endpoint = _endpoint(context, party_configs)
        reply = endpoint.handle(unpack(message.content))
        if endpoint.party.finished:  # the session is over: free the round models
            _release(context)
        return Message(pack(reply), reply_to=message)

    @app.query(IDENTITY_ACTION)
    def identity(message: Message, context: Context) -> Message:
        name = (_party_name(party_config_path(context, party_configs)) if context.node_config.get("party-runtime")
                else _endpoint(context, party_configs).name)
        nonce = read_config(message.content, "nonce")["nonce"]
        path = context.node_config.get("auth-key")
        key = load_private_key(str(path)) if path else None
        return Message(config(**answer(nonce, context.node_id, name, key)), reply_to=message)

    return app


app = make_client_app()
