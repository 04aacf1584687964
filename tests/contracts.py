"""Registries for the contract suites: every privacy layer and every transport must pass the same
tests (tests/test_contract_layers.py, tests/test_contract_transports.py). A new layer or
transport adds one entry here."""
from __future__ import annotations

from securegal.privacy.registry import LAYERS as REGISTERED

# Every registered layer, with small budgets fixed so that the suite is fast and deterministic in
# shape. A layer is added to the registry (securegal/privacy/registry.py), never here.
LAYER_EPSILON = 8.0


def plan_for(name: str):
    layer = REGISTERED[name]
    return layer.plan(LAYER_EPSILON) if layer.budget else layer.plan()


LAYERS = {name: (lambda name=name: plan_for(name)) for name in REGISTERED}
# How far a layer's predictions may be from plain GAL's: exact for plain, CKKS approximation
# error for ckks, and None (not comparable) for a noising layer.
TOLERANCE = {name: 0.0 if name == "plain" else (None if layer.noising else 1e-4)
             for name, layer in REGISTERED.items()}


def inprocess_transport(endpoints, tmp_path):
    """A transport reaching ``endpoints`` ({name: PartyEndpoint}); returns (transport, cleanup)."""
    from securegal.transport.inprocess import InProcessTransport

    return InProcessTransport({n: ep.handle for n, ep in endpoints.items()}), lambda: None


TRANSPORTS = {"inprocess": inprocess_transport}


def grpc_transport(endpoints, tmp_path):
    """Each endpoint behind its own gRPC server on 127.0.0.1 with mutual TLS (fresh certificates)."""
    from securegal.transport.certs import Identity, init_federation
    from securegal.transport.grpc_client import GrpcTransport, RetryPolicy
    from securegal.transport.grpc_server import PartyServer

    certs = tmp_path / "grpc-certs"
    init_federation(certs, ["alice", *endpoints])
    servers = {n: PartyServer(ep.handle, identity=Identity.from_dir(certs, n)).start() for n, ep in endpoints.items()}
    transport = GrpcTransport({n: f"127.0.0.1:{s.port}" for n, s in servers.items()},
                              identity=Identity.from_dir(certs, "alice"),
                              retry=RetryPolicy(attempts=2, timeout=30.0, backoff=0.05))
    return transport, lambda: [s.stop() for s in servers.values()]


TRANSPORTS["grpc"] = grpc_transport
