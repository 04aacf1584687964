"""securegal on a real Flower deployment (issue 14): flower-superlink with TLS and SuperNode
authentication, one flower-supernode per organization, on 127.0.0.1."""
import json

import pytest

pytest.importorskip("flwr")

from securegal.run import train  # noqa: E402

from .test_deploy_parity import _comparable  # noqa: E402


def _alive(proc) -> bool:
    """Whether any process of ``proc``'s process group is still running."""
    import os

    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_flower_deployment_with_tls_and_node_auth_matches_embedded(tmp_path):
    """flower-superlink (TLS, SuperNode authentication) and one flower-supernode per organization
    on 127.0.0.1: the same results as embedded; a SuperNode with an unregistered key is refused;
    in a second run, a party whose organization goes away mid-run is dropped from the round;
    nothing is left running."""
    import threading
    import time

    from securegal.deploy.flower.localnet import FlowerLocalFederation, write_node_key

    fed = FlowerLocalFederation(tmp_path / "fed", parties=3, rounds=2, seed=0)
    with fed:
        impostor = fed.start_supernode("party1", key=write_node_key(tmp_path / "impostor"))  # never registered
        metrics = fed.run()
        # the second run: party2's runtime and SuperNode go away once round 1 is checkpointed
        second = fed.federation_file("dropout", rounds=3, min_parties=2)
        done = {}

        def second_run():
            try:
                done["metrics"] = fed.run(federation=second)
            except Exception as exc:  # reported by the assertion below
                done["error"] = exc

        runner = threading.Thread(target=second_run)
        runner.start()
        state, deadline = fed.workdir / "dropout" / "checkpoint" / "state.json", time.monotonic() + 300
        while runner.is_alive() and time.monotonic() < deadline:
            if state.exists() and json.loads(state.read_text())["rounds"]:
                fed.leave("party2")
                break
            time.sleep(0.05)
        runner.join(300)
        left = fed.processes["runtime-party2"].poll(), fed.processes["supernode-party2"].poll()
    embedded = train("breast_cancer", parties=3, rounds=2, seed=0)
    assert metrics["deployment"] == "flower"
    a, b = _comparable(metrics), _comparable(embedded)
    for d in (a, b):
        d.pop("plan"), d.pop("privacy", None)
    assert a == b
    # the impostor never joined: the SuperLink refused its key, the run saw the two real parties only
    assert metrics["gal"].get("absent_per_round") is None
    log = (tmp_path / "fed" / "supernode-impostor.log").read_text()
    assert "Receiving: query.securegal" not in log
    assert "Failed to activate SuperNode" in log and impostor.returncode != 0, log[-2000:]
    # party2 left after round 1: weight 0 from the round it missed on (2, or 3 if its round-2 reply
    # was already on its way), absent at prediction; the run went on with alice and party1
    assert left[0] is not None and left[1] is not None, "party2 did not leave during the run"
    assert "metrics" in done, done.get("error")
    gal, weights = done["metrics"]["gal"], done["metrics"]["weights"]  # weights: [alice, party1, party2]
    absent = gal["absent_per_round"]
    assert len(weights) == 3 and absent[0] == [] and absent[2] == ["party2"] and absent[1] in ([], ["party2"])
    assert weights[0][2] > 0 and all(w[2] == 0.0 for w, a in zip(weights, absent) if a)
    assert gal["missing_at_predict"] == ["party2"]
    assert "stopped" not in gal
    # every process the test started is gone, with its children (Flower's per-message processes)
    assert fed.processes and not any(_alive(p) for p in fed.processes.values())
    assert impostor.poll() is not None
    # and no private key is left in the working directory (review A): certificates and public keys only
    keys = [p.name for p in (tmp_path / "fed").rglob("*") if p.is_file() and (p.suffix == ".key" or (
        p.parent.name == "supernode-keys" and p.suffix != ".pub"))]
    assert keys == [] and (tmp_path / "fed" / "certs" / "ca.pem").is_file()


