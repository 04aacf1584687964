"""securegal on Flower (issue 14): the simulation engine gives the same results as the embedded
run for every registered layer, and the Flower-level pieces (records, identity) refuse what
they must."""
import json

import numpy as np
import pytest

pytest.importorskip("flwr")

from securegal.deploy.localnet import federation_config, party_config  # noqa: E402
from securegal.errors import ProtocolError  # noqa: E402
from securegal.privacy.registry import LAYERS  # noqa: E402
from securegal.run import train  # noqa: E402

from .test_deploy_parity import _comparable, _layer_settings  # noqa: E402

PARTIES = ("party1", "party2")


def write_federation(tmp_path, *, residuals="plain", privacy=None, extra=None, rounds=2):
    """party1.toml, party2.toml (blocks 1, 2 of breast_cancer) and federation.toml; returns their paths."""
    configs = []
    for i, name in enumerate(PARTIES, 1):
        path = tmp_path / f"{name}.toml"
        path.write_text(party_config(name, data={"dataset": "breast_cancer", "parties": 3, "block": i}, learner_seed=i,
                                     certs=None, transcripts=tmp_path / "run" / "transcripts" / name,
                                     residuals=residuals, privacy=privacy))
        configs.append(path)
    fed = tmp_path / "federation.toml"
    # [[party]] address is the gRPC deployment's key: unused on Flower
    fed.write_text(federation_config(data={"dataset": "breast_cancer"}, peers={p: "127.0.0.1:1" for p in PARTIES},
                                     rounds=rounds, seed=0, out=tmp_path / "run", certs=None, residuals=residuals,
                                     transport={"timeout": 120.0}, extra=extra))
    return fed, configs


def simulate(fed, configs):
    from flwr.simulation import run_simulation

    from securegal.deploy.flower.client_app import SIMULATION_BACKEND, make_client_app
    from securegal.deploy.flower.server_app import make_server_app

    run_simulation(server_app=make_server_app(fed), client_app=make_client_app([str(c) for c in configs]),
                   num_supernodes=len(configs), backend_config=SIMULATION_BACKEND)
    return json.loads((fed.parent / "run" / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_simulation_and_embedded_runs_agree_for_every_layer(name, tmp_path):
    pytest.importorskip("ray")
    plan, party_privacy, extra = _layer_settings(name)
    embedded = train("breast_cancer", parties=3, rounds=2, seed=0, plan=plan)
    fed, configs = write_federation(tmp_path, residuals=plan.residuals, privacy=party_privacy or None, extra=extra)
    flower = simulate(fed, configs)
    assert flower["deployment"] == "flower" and embedded["deployment"] == "embedded"
    if plan.feature_dp is not None:  # the parties report the same releases and epsilon as embedded
        for party in PARTIES:
            for key in ("releases", "epsilon_spent", "noise_multiplier"):
                assert flower["privacy"][party][key] == embedded["privacy"][party][key], (party, key)
    if plan.label_dp is not None:
        assert flower["privacy"]["alice"] == embedded["privacy"]["alice"]
    a, b = _comparable(flower), _comparable(embedded)
    for d in (a, b):
        d.pop("plan"), d.pop("privacy", None)
    if plan.residuals == "ckks":  # encryption noise: the same scores, weights and steps within 1e-6
        for key in ("weights", "eta"):
            np.testing.assert_allclose(a.pop(key), b.pop(key), atol=1e-6)
    assert a == b
    # the parties' transcripts were written by the ClientApps, message by message
    for party in PARTIES:
        assert any((tmp_path / "run" / "transcripts" / party).iterdir())


def test_records_carry_codec_bytes_and_refuse_anything_else():
    from flwr.app import ConfigRecord, RecordDict

    from securegal.deploy.flower.records import pack, unpack

    data = bytes(range(256)) * 50
    assert unpack(pack(data)) == data
    assert unpack(pack(b"")) == b""
    with pytest.raises(ProtocolError, match="ArrayRecord"):
        unpack(RecordDict({"securegal": ConfigRecord({"bytes": data})}))
    forged = pack(data)
    forged["securegal"]["bytes"].stype = "numpy.ndarray"
    with pytest.raises(ProtocolError, match="stype"):
        unpack(forged)
