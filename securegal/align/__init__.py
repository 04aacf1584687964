"""Private entity alignment: ECDH private set intersection over libsodium's Curve25519 (X25519).

Embedded use: ``align_in_process(owner_ids, party_ids, session, workers)``. Across a network:
``LabelOwnerPsi`` (request, finish) and ``FeaturePartyPsi`` (prepare, respond, select,
rows_of) produce and consume the ``Psi*`` messages of :mod:`securegal.messages`.
"""
from .ids import canonical_ids, id_kind
from .psi import (FeaturePartyPsi, LabelOwnerPsi, OwnerAlignment, PartyAlignment, align_in_process,
                  common_rows)
from .workers import Workers

__all__ = ["FeaturePartyPsi", "LabelOwnerPsi", "OwnerAlignment", "PartyAlignment", "Workers", "align_in_process",
           "canonical_ids", "common_rows", "id_kind"]
