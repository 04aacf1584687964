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


def inprocess_transport(endpoints, tmp_path):
    """A transport reaching ``endpoints`` ({name: PartyEndpoint}); returns (transport, cleanup)."""
    from securegal.transport.inprocess import InProcessTransport

    return InProcessTransport(endpoints), lambda: None


TRANSPORTS = {"inprocess": inprocess_transport}
