"""securegal on Flower (issue 14): the Flower-level pieces (records, identity, transport, the
ServerApp's run config) refuse what they must. The runs themselves: test_flower_simulation.py
(every registered layer against the embedded run) and test_flower_deployment.py (the real
deployment with TLS and SuperNode authentication)."""
import json

import pytest

pytest.importorskip("flwr")

from securegal.deploy.localnet import federation_config, party_config  # noqa: E402
from securegal.errors import ProtocolError  # noqa: E402

PARTIES = ("party1", "party2")


def write_federation(tmp_path, *, residuals="plain", privacy=None, extra=None, rounds=2, timeout=120.0):
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
                                     transport={"timeout": timeout}, extra=extra))
    return fed, configs


def simulate(fed, configs):
    from flwr.simulation import run_simulation

    from securegal.deploy.flower.client_app import SIMULATION_BACKEND, make_client_app
    from securegal.deploy.flower.server_app import make_server_app

    run_simulation(server_app=make_server_app(fed), client_app=make_client_app([str(c) for c in configs]),
                   num_supernodes=len(configs), backend_config=SIMULATION_BACKEND)
    return json.loads((fed.parent / "run" / "metrics.json").read_text())


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


@pytest.fixture
def server_task(monkeypatch):
    """What Flower's ServerApp runtime sets before the app makes Messages (node 1: the SuperLink)."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr, value in (("_run_id", 1), ("_node_id", 1), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, attr, value)


class LoopbackGrid:
    """A Grid double for tests without the Flower runtime: delivers each Message to the real
    ClientApp in this process, one Context per node. ``gone[node] = k``: the node answers only
    its first k securegal messages, then goes away (no reply)."""

    def __init__(self, client_app, node_configs: dict, gone: dict | None = None):
        from flwr.app import Context, RecordDict
        self.app, self.gone, self.handled = client_app, dict(gone or {}), {n: 0 for n in node_configs}
        self.contexts = {n: Context(run_id=1, node_id=n, node_config=cfg, state=RecordDict(), run_config={})
                         for n, cfg in node_configs.items()}

    def get_node_ids(self):
        return list(self.contexts)

    def push_messages(self, messages):
        from securegal.deploy.flower.records import MESSAGE_TYPE

        self.replies = getattr(self, "replies", {})
        ids = []
        for message in messages:
            node = message.metadata.dst_node_id
            message.metadata.__dict__["_message_id"] = message.object_id
            ids.append(message.object_id)
            if message.metadata.message_type == MESSAGE_TYPE:
                self.handled[node] += 1
                if self.handled[node] > self.gone.get(node, float("inf")):
                    continue  # gone: no reply
            self.replies[message.object_id] = self.app(message, self.contexts[node])
        return ids

    def pull_messages(self, message_ids):
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]


def _ssh_key(path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.OpenSSH,
                                                           serialization.NoEncryption()))
    path.with_suffix(".pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                       serialization.PublicFormat.OpenSSH))
    return path.with_suffix(".key")


def test_identity_is_bound_to_the_supernode_key_and_impostors_are_refused(tmp_path, server_task):
    from securegal.deploy.flower.client_app import make_client_app
    from securegal.deploy.flower.identity import discover, party_keys

    _, configs = write_federation(tmp_path)
    keys = tmp_path / "keys"
    keys.mkdir()
    k1, k2, k3 = _ssh_key(keys / "party1"), _ssh_key(keys / "party2"), _ssh_key(tmp_path / "impostor")
    nodes = {11: {"party-config": str(configs[0]), "auth-key": str(k1)},
             12: {"party-config": str(configs[1]), "auth-key": str(k2)},
             13: {"party-config": str(configs[0]), "auth-key": str(k3)},  # claims party1 with an unknown key
             14: {"party-config": str(configs[1])}}  # claims party2 without signing
    grid = LoopbackGrid(make_client_app(), nodes)
    registered = party_keys(keys, ["party1", "party2"])
    assert discover(grid, ["party1", "party2"], registered, timeout=10) == {"party1": 11, "party2": 12}
    # without the real party1, the impostor does not get its name
    del grid.contexts[11]
    assert discover(grid, ["party1", "party2"], registered, timeout=10) == {"party2": 12}
    # without keys the node configs are trusted, but a party named by two nodes (12, 14) is refused on both
    assert discover(grid, ["party1", "party2"], None, timeout=10) == {"party1": 13}


def test_a_party_gone_mid_run_is_dropped_from_the_round(tmp_path, server_task):
    from securegal.deploy.flower.client_app import make_client_app
    from securegal.deploy.flower.deployment import load_federation, train_on_flower

    fed, configs = write_federation(tmp_path, rounds=3, timeout=1.0)  # how long a gone party is waited for
    fed.write_text(fed.read_text().replace("rounds = 3", "rounds = 3\nmin_parties = 2"))
    nodes = {21: {"party-config": str(configs[0])}, 22: {"party-config": str(configs[1])}}
    grid = LoopbackGrid(make_client_app(), nodes, gone={22: 4})  # party2: PSI (2), Setup, round 1, then gone
    metrics = train_on_flower(load_federation(fed), grid, join_timeout=1)
    gal = metrics["gal"]
    assert gal["absent_per_round"] == [[], ["party2"], ["party2"]] and gal["missing_at_predict"] == ["party2"]
    weights = metrics["weights"]  # per round, [alice, party1, party2]
    assert weights[0][2] > 0 and [w[2] for w in weights[1:]] == [0.0, 0.0]


class ScriptedGrid:
    """A Grid double that answers each message as ``answer(message)`` says: a reply Message,
    or None (no reply yet); counts the pulls."""

    def __init__(self, answer):
        self.answer, self.sent, self.pulls = answer, {}, 0

    def push_messages(self, messages):
        for message in messages:
            message.metadata.__dict__["_message_id"] = message.object_id
            self.sent[message.object_id] = message
        return [m.object_id for m in messages]

    def pull_messages(self, message_ids):
        self.pulls += 1
        return [r for r in (self.answer(self.sent[i]) for i in message_ids) if r is not None]


def test_transport_drops_offline_and_silent_parties_and_refuses_replies_from_other_nodes(server_task):
    from flwr.app import Error, Message

    from securegal.deploy.flower.records import pack
    from securegal.deploy.flower.transport import FlowerTransport
    from securegal.errors import PartyUnavailable

    def answer(message):
        node = message.metadata.dst_node_id
        if node == 41:  # answers
            return Message(pack(b"ok"), reply_to=message)
        if node == 42:  # went offline: the SuperLink itself writes the error reply (source: node 1)
            reply = Message(Error(code=5, reason="node offline"), reply_to=message)
            reply.metadata.__dict__["_src_node_id"] = 1
            return reply
        if node == 43:  # a reply that claims to come from another node
            reply = Message(pack(b"forged"), reply_to=message)
            reply.metadata.__dict__["_src_node_id"] = 41
            return reply
        return None  # node 44: never answers

    grid = ScriptedGrid(answer)
    transport = FlowerTransport(grid, {"a": 41, "b": 42, "c": 43, "d": 44}, timeout=0.5, poll=0.05)
    out = transport.call_many({"a": b"x", "b": b"x", "c": b"x", "d": b"x", "e": b"x"})
    assert out["a"] == b"ok"
    assert isinstance(out["b"], PartyUnavailable) and "node offline" in str(out["b"])
    assert isinstance(out["c"], ProtocolError) and "node 41" in str(out["c"])
    assert isinstance(out["d"], PartyUnavailable) and "within 0.5 s" in str(out["d"])
    assert isinstance(out["e"], PartyUnavailable) and "no authenticated Flower node" in str(out["e"])
    assert 3 <= grid.pulls <= 12  # polled every 50 ms until the timeout (every 3 s would be 2 pulls)
    with pytest.raises(ValueError, match="poll"):
        FlowerTransport(grid, {}, poll=0)


@pytest.mark.parametrize("extra, message", [({"resume": "run"}, "cannot resume a run"),
                                            ({"rounds": 5}, "unknown run config key 'rounds'")])
def test_server_app_refuses_run_config_it_cannot_honour(tmp_path, server_task, extra, message):
    from flwr.app import Context, RecordDict

    from securegal.deploy.flower.client_app import make_client_app
    from securegal.deploy.flower.server_app import make_server_app
    from securegal.errors import ConfigError

    fed, configs = write_federation(tmp_path)
    grid = LoopbackGrid(make_client_app(), {31: {"party-config": str(configs[0])}, 32: {"party-config": str(configs[1])}})
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(),
                      run_config={"federation": str(fed), **extra})
    with pytest.raises(ConfigError, match=message):
        make_server_app()(grid, context)
    assert grid.handled == {31: 0, 32: 0} and not (tmp_path / "run" / "metrics.json").exists()


def _server_app_run(tmp_path, **run_config):
    """The securegal ServerApp on a LoopbackGrid over party1 and party2 (no Flower runtime); returns the grid."""
    from flwr.app import Context, RecordDict

    from securegal.deploy.flower.client_app import make_client_app
    from securegal.deploy.flower.server_app import make_server_app

    fed, configs = write_federation(tmp_path)
    grid = LoopbackGrid(make_client_app(), {31: {"party-config": str(configs[0])}, 32: {"party-config": str(configs[1])}})
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(),
                      run_config={"federation": str(fed), **run_config})
    make_server_app()(grid, context)
    return grid


@pytest.mark.parametrize("run_config, message", [
    ({}, r"already holds metrics.json; set run config overwrite=true"),
    ({"overwrite": False}, r"already holds metrics.json; set run config overwrite=true"),
    ({"overwrite": "yes"}, r"run config 'overwrite' must be true or false, got 'yes'"),
])
def test_server_app_keeps_earlier_results_unless_run_config_overwrite(tmp_path, server_task, run_config, message):
    from securegal.errors import ConfigError

    earlier = tmp_path / "run" / "metrics.json"
    earlier.parent.mkdir()
    earlier.write_text('{"earlier": true}')
    with pytest.raises(ConfigError, match=message) as err:
        _server_app_run(tmp_path, **run_config)
    assert "\n" not in str(err.value)
    assert earlier.read_text() == '{"earlier": true}'
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["metrics.json"]


def test_server_app_replaces_earlier_results_with_run_config_overwrite(tmp_path, server_task):
    earlier = tmp_path / "run" / "metrics.json"
    earlier.parent.mkdir()
    earlier.write_text('{"earlier": true}')
    grid = _server_app_run(tmp_path, overwrite=True)
    metrics = json.loads(earlier.read_text())
    assert metrics["deployment"] == "flower" and len(metrics["gal"]["per_round"]) == 2
    assert all(grid.handled.values())
    assert not any(p.name.startswith(".overwritten-") for p in earlier.parent.iterdir())


def test_grpc_only_transport_keys_are_named_not_silently_dropped(tmp_path, caplog):
    """Independent code review M8: [transport] attempts/backoff/backoff_max/chunk_bytes were
    validated and then not used on Flower, without a word. The same file also runs on gRPC, so
    they are not refused; each is named in a warning."""
    import logging

    from securegal.deploy.flower.deployment import load_federation

    fed, _ = write_federation(tmp_path)
    with caplog.at_level(logging.WARNING):
        load_federation(fed)
    assert "not used on Flower" not in caplog.text
    fed.write_text(fed.read_text().replace("[transport]", "[transport]\nattempts = 9\nchunk_bytes = 4096"))
    with caplog.at_level(logging.WARNING):
        load_federation(fed)
    assert "[transport] attempts = 9, chunk_bytes = 4096 belong to the gRPC deployment and are not used on Flower" \
        in caplog.text
