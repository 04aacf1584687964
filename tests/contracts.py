"""Registries for the contract suites: every privacy layer and every transport must pass the same
tests (tests/test_contract_layers.py, tests/test_contract_transports.py). A new layer or
transport adds one entry here."""
from __future__ import annotations

from securegal.federation import plain_trainers
from securegal.parties.layers import PlainResiduals


def plain_layer():
    """(label-owner channel, feature-party trainer choice, prediction tolerance vs plain)."""
    return PlainResiduals(), plain_trainers, 0.0


LAYERS = {"plain": plain_layer}


def ckks_dp_layer():
    """CKKS residuals clipped by the label owner, DP ridge with homomorphic noise (a noising layer)."""
    from securegal.privacy.dp.trainer import DPConfig
    from securegal.privacy.hedp import CkksDPTrainers, ClippedCkksResiduals

    return ClippedCkksResiduals(1.0), CkksDPTrainers(DPConfig(8.0, 1e-5)), None


LAYERS["ckks_dp"] = ckks_dp_layer


def inprocess_transport(endpoints, tmp_path):
    """A transport reaching ``endpoints`` ({name: PartyEndpoint}); returns (transport, cleanup)."""
    from securegal.transport.inprocess import InProcessTransport

    return InProcessTransport(endpoints), lambda: None


TRANSPORTS = {"inprocess": inprocess_transport}


def grpc_transport(endpoints, tmp_path):
    """Each endpoint behind its own gRPC server on 127.0.0.1 with mutual TLS (fresh certificates)."""
    from securegal.certs import Identity, init_federation
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
