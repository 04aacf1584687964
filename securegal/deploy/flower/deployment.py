"""The label owner on Flower: :class:`FlowerDeployment` and :func:`train_on_flower`.

The same round loop, privacy plan, checkpoints, privacy reports and transcripts as the gRPC
deployment (:class:`~securegal.deploy.networked.NetworkedDeployment`): only the transport
differs (:class:`~securegal.deploy.flower.transport.FlowerTransport` over the ServerApp's Grid).
"""
from __future__ import annotations

import logging
import time
import tomllib
from pathlib import Path
from typing import Mapping

from ...errors import ConfigError
from ..networked import FederationConfig, NetworkedDeployment, earlier_results, train_federation
from .identity import discover, party_keys
from .transport import FlowerTransport

log = logging.getLogger(__name__)


class FlowerDeployment(NetworkedDeployment):
    """Feature parties behind Flower SuperNodes, reached through the SuperLink."""

    name = "flower"

    def __init__(self, cfg: FederationConfig, checkpoint, state, on_round=None, *, grid, nodes: Mapping[str, int]):
        super().__init__(cfg, checkpoint, state, on_round)
        self.grid, self.nodes = grid, dict(nodes)

    def transport(self) -> FlowerTransport:
        return FlowerTransport(self.grid, self.nodes, timeout=self.cfg.retry.timeout)


# [transport] keys of the gRPC transport alone.
GRPC_ONLY_TRANSPORT = ("attempts", "backoff", "backoff_max", "chunk_bytes")


def load_federation(path: str | Path, **overrides) -> FederationConfig:
    """A ``federation.toml`` for Flower. Its ``[tls]``, ``[[party]] address`` and ``[transport]``
    ``attempts``, ``backoff``, ``backoff_max`` and ``chunk_bytes`` keys belong to the gRPC
    deployment: they are validated but unused (the SuperLink does TLS; nodes are found by
    :func:`~securegal.deploy.flower.identity.discover`; a message is sent once and waited for
    ``[transport] timeout``; Flower chunks its records itself), so ``[tls]`` may be left out; the
    ``[transport]`` keys, where given, are named in a warning."""
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        doc = {"tls": {}}  # let FederationConfig.load report the problem
    cfg = FederationConfig.load(path, insecure="tls" not in doc, **overrides)
    transport = doc.get("transport") if isinstance(doc.get("transport"), dict) else {}
    unused = [key for key in GRPC_ONLY_TRANSPORT if key in transport]
    if unused:  # the same file runs on gRPC, so they are not refused; but not honoured here either
        log.warning("%s: [transport] %s belong to the gRPC deployment and are not used on Flower (a message is sent "
                    "once and waited for [transport] timeout; Flower chunks its records itself)", path,
                    ", ".join(f"{key} = {transport[key]!r}" for key in unused))
    return cfg


def wait_for_nodes(grid, count: int, timeout: float) -> int:
    """Wait up to ``timeout`` seconds for ``count`` nodes to connect; returns how many did."""
    deadline = time.monotonic() + timeout
    while True:
        present = len(list(grid.get_node_ids()))
        if present >= count or time.monotonic() >= deadline:
            return present
        time.sleep(0.5)


def train_on_flower(cfg: FederationConfig, grid, *, keys_dir: str | Path | None = None, overwrite: bool = False,
                    join_timeout: float = 120.0) -> dict:
    """Run the label owner of ``cfg`` through ``grid`` and write ``cfg.out`` like
    :func:`~securegal.deploy.networked.train_federation`, which refuses earlier results there
    unless ``overwrite`` (checked here first, before waiting for the parties' nodes).

    With ``keys_dir`` (``<party>.pub``, the parties' SuperNode authentication keys) every party
    must prove its name with its key; a party that does not is absent and the round loop drops
    it (``min_parties`` decides whether the run can go on).
    """
    earlier_results(cfg, overwrite, "set run config overwrite=true to replace them, or choose another out in the "
                    "federation file")
    keys = party_keys(keys_dir, cfg.peers) if keys_dir is not None else None
    present = wait_for_nodes(grid, len(cfg.peers), join_timeout)
    if present < len(cfg.peers):
        log.warning("%d of %d parties' nodes connected within %g s", present, len(cfg.peers), join_timeout)
    deadline = time.monotonic() + join_timeout
    nodes = discover(grid, cfg.peers, keys, timeout=cfg.retry.timeout)
    while set(nodes) != set(cfg.peers) and time.monotonic() < deadline:  # nodes still starting up
        time.sleep(1.0)
        nodes = discover(grid, cfg.peers, keys, timeout=max(1.0, min(cfg.retry.timeout, deadline - time.monotonic())))
    missing = sorted(set(cfg.peers) - set(nodes))
    if missing:
        log.warning("no authenticated node for %s: they are absent from the run", missing)
    if 1 + len(nodes) < cfg.min_parties:
        raise ConfigError(f"only {1 + len(nodes)} parties proved their identity, min_parties is {cfg.min_parties} "
                          f"(missing {missing})")
    return train_federation(cfg, overwrite=overwrite,
                            deployment=lambda *a: FlowerDeployment(*a, grid=grid, nodes=nodes))
