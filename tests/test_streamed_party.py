"""A feature party serving a Parquet table out of core: the same fit, train predictions and
predictions as the in-memory party, and one-line refusals of what streaming cannot honour."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from securegal.data.datasets import load_csv
from securegal.data.parquet_table import ParquetTable
from securegal.data.party_file import read_party_file
from securegal.data.split import split_rows
from securegal.deploy import config as schema
from securegal.deploy.embedded import EmbeddedDeployment
from securegal.deploy.federation import GalJob, TargetScaler
from securegal.deploy.party_process import PartyConfig, build_party
from securegal.errors import ConfigError, LayerMismatch, ProtocolError
from securegal.learners.linear import LinearLearner
from securegal.learners.streamed import StreamedRidge
from securegal.privacy.plan import FeatureDP, PrivacyPlan


def _write(path, X, row_group_size=700, **extra):
    columns = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    pq.write_table(pa.table({**extra, **columns}), path, row_group_size=row_group_size)


def test_streamed_ridge_equals_the_in_memory_fit_on_selected_rows(tmp_path):
    """A subset of rows in shuffled order, batches of 500 over row groups of 700, columns with
    large offsets and a constant one: the same z-scoring, model, train predictions and
    predictions on other rows as the in-memory l2 fit on the z-scored rows."""
    rng = np.random.default_rng(0)
    n, d = 5003, 6
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + rng.uniform(-1e4, 1e4, size=d)
    X[:, 2] = 7.0  # std 0 becomes 1, as FeatureParty does
    _write(tmp_path / "t.parquet", X)
    table = ParquetTable.open(tmp_path / "t.parquet", None, batch_rows=500)
    order = rng.permutation(n)
    train, other = order[:3000], order[3000:3400]
    r = rng.normal(size=(len(train), 2))

    ridge = StreamedRidge(table.select(train), lam=1e-3)
    mean, std = X[train].mean(axis=0), X[train].std(axis=0)
    std[std == 0] = 1.0
    model, preds = LinearLearner(lam=1e-3).bind((X[train] - mean) / std).fit_predict(r)
    np.testing.assert_allclose(ridge.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(ridge.std, std, rtol=1e-10)
    got_model, got_preds = ridge.fit_predict(r)
    np.testing.assert_allclose(got_model.coef, model.coef, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(got_preds, preds, rtol=1e-9, atol=1e-11)
    second = LinearLearner(lam=1e-3).bind((X[train] - mean) / std).fit(r[::-1].copy())
    both = ridge.predict([got_model, second], table.select(other))
    np.testing.assert_allclose(both[0], model.predict((X[other] - mean) / std), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(both[1], second.predict((X[other] - mean) / std), rtol=1e-9, atol=1e-11)


def test_a_selection_reads_only_the_row_groups_it_needs_and_refuses_repeats(tmp_path):
    X = np.arange(3000.0)[:, None] * np.ones((1, 2))
    _write(tmp_path / "t.parquet", X, row_group_size=1000)
    table = ParquetTable.open(tmp_path / "t.parquet", None, batch_rows=300)
    rows = table.select(np.array([2500, 10, 2999, 11]))
    got = np.empty((4, 2))
    batches = 0
    for where, local, Xb in rows.batches():
        got[where] = Xb if local is None else Xb[local]
        batches += 1
    np.testing.assert_array_equal(got[:, 0], [2500, 10, 2999, 11])
    assert batches == 3  # rows 0-299 of group 0; rows 2400-2699 and 2700-2999 of group 2; group 1 is skipped
    with pytest.raises(ProtocolError, match="1 requested sample IDs are repeated"):
        table.select(np.array([4, 9, 4]))
    with pytest.raises(ProtocolError, match="unknown to this party .first: 3000"):
        table.select(np.array([1, 3000]))


def test_bad_tables_are_refused_by_name(tmp_path):
    X = np.random.default_rng(1).normal(size=(50, 2))
    _write(tmp_path / "text.parquet", X, id=np.arange(50), city=np.array(["a"] * 50))
    with pytest.raises(ConfigError, match="column 'city' is string; a streamed table holds numeric columns only"):
        ParquetTable.open(tmp_path / "text.parquet", "id")
    _write(tmp_path / "t.parquet", X, id=np.arange(50), y=np.zeros(50))
    with pytest.raises(ConfigError, match="no ID column 'key'"):
        ParquetTable.open(tmp_path / "t.parquet", "key")
    with pytest.raises(ConfigError, match="holds the target column 'y'"):
        ParquetTable.open(tmp_path / "t.parquet", "id", target="y")
    with pytest.raises(ConfigError, match="must be Parquet"):
        ParquetTable.open(tmp_path / "t.csv", "id")
    with pytest.raises(ConfigError, match="batch_rows must be an integer >= 1, got 0"):
        ParquetTable.open(tmp_path / "t.parquet", "id", batch_rows=0)
    _write(tmp_path / "dup.parquet", X, id=np.array([1, 2] * 25))
    with pytest.raises(ConfigError, match="48 duplicate IDs"):
        ParquetTable.open(tmp_path / "dup.parquet", "id")
    holes = pa.table({"id": np.arange(50), "x0": pa.array([1.0] * 49 + [None])})
    pq.write_table(holes, tmp_path / "holes.parquet")
    with pytest.raises(ConfigError, match="column 'x0' has missing cells; a streamed table imputes nothing"):
        ParquetTable.open(tmp_path / "holes.parquet", "id")
    X[3, 1] = np.inf
    _write(tmp_path / "inf.parquet", X, id=np.arange(50))
    with pytest.raises(ConfigError, match="column 'x1' holds non-finite values"):
        ParquetTable.open(tmp_path / "inf.parquet", "id")


def _organizations(tmp_path, people=900, seed=5):
    """A label owner (two columns and ``y``) and two feature parties (three columns each, one
    with a large offset), each holding a random 90% of ``people`` under integer IDs in its own
    shuffled order, written as Parquet with small row groups."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(10 * people)[:people] + 1000
    X = rng.normal(size=(people, 8))
    X[:, 4] += 5e3
    y = (X[:, [0, 1, 2, 3, 5, 6, 7]] @ rng.normal(size=7) + 0.5 * rng.normal(size=people) > 0).astype(int)
    paths = {}
    for name, cols in (("alice", [0, 1]), ("party1", [2, 3, 4]), ("party2", [5, 6, 7])):
        rows = rng.permutation(np.flatnonzero(rng.random(people) < 0.9))
        frame = pd.DataFrame({"id": ids[rows], **{f"{name}_{c}": X[rows, c] for c in cols}})
        if name == "alice":
            frame["y"] = y[rows]
        paths[name] = tmp_path / f"{name}.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), paths[name], row_group_size=128)
    return paths


def _run(paths, tables, rounds=4, plan=None, learner="linear"):
    """One embedded federation over own tables (PSI on): the model and the per-round scores on
    the test rows."""
    data = load_csv(paths["alice"], "y", id_column="id")
    split = split_rows(data, seed=0, test_fraction=0.25)
    scaler = TargetScaler.fit(data, data.y[split.train])
    deployment = EmbeddedDeployment(tables, owner="alice")
    job = GalJob.from_plan(plan or PrivacyPlan(), dataset=data, n_train=len(split.train), parties=3, rounds=rounds,
                           learner=learner, seed=0, scaler=scaler)
    owner = deployment.build(job, data, split, deployment.blocks(data, 3))
    try:
        owner.setup()
        model = owner.fit()
        scores = owner.predict_rounds(owner.aligned(split.test))
        owner.finish()
    finally:
        owner.messenger.close()
    return model, scores


def test_a_streamed_party_gives_the_in_memory_results(tmp_path):
    """The same federation twice, the parties' tables in memory and streamed in batches of 100
    rows: the same weights, steps and test scores of every round (to 1e-9)."""
    paths = _organizations(tmp_path)
    in_memory = {p: read_party_file(paths[p], "id") for p in ("party1", "party2")}
    streamed = {p: ParquetTable.open(paths[p], "id", batch_rows=100) for p in ("party1", "party2")}
    assert streamed["party1"].columns == in_memory["party1"].columns
    model, scores = _run(paths, in_memory)
    got_model, got_scores = _run(paths, streamed)
    assert len(got_model.rounds) == 4 and got_scores.shape == scores.shape
    np.testing.assert_allclose(got_scores, scores, rtol=1e-9, atol=1e-10)
    for mine, ref in zip(got_model.rounds, model.rounds):
        assert mine.weights.keys() == ref.weights.keys()
        np.testing.assert_allclose(list(mine.weights.values()), list(ref.weights.values()), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(mine.eta, ref.eta, rtol=1e-9)
    assert np.abs(scores[-1] - scores[0]).max() > 0.1  # the parties' rounds moved the scores


def test_a_streamed_party_refuses_what_it_cannot_run(tmp_path):
    paths = _organizations(tmp_path, people=200)
    streamed = {p: ParquetTable.open(paths[p], "id") for p in ("party1", "party2")}
    with pytest.raises(ConfigError, match="'party1' streams its table: it runs only the linear learner with local "
                                          "loss l2, not 'rff'"):
        _run(paths, streamed, learner="rff")
    with pytest.raises(ConfigError, match="only plain residuals .or label-DP. without feature-DP, not 'ckks'"):
        _run(paths, streamed, plan=PrivacyPlan(residuals="ckks"))
    with pytest.raises(ConfigError, match="not 'plain' residuals with feature-DP"):
        _run(paths, streamed, plan=PrivacyPlan(feature_dp=FeatureDP(epsilon=4)))
    with pytest.raises(ConfigError, match="baselines need every table in memory; 'party1' streams"):
        EmbeddedDeployment(streamed).joined(load_csv(paths["alice"], "y", id_column="id"))
    with pytest.raises(ConfigError, match="psi=False needs every table to hold the label owner's"):
        data = load_csv(paths["alice"], "y", id_column="id")
        deployment = EmbeddedDeployment(streamed, psi=False)
        split = split_rows(data, seed=0)
        job = GalJob.from_plan(PrivacyPlan(), dataset=data, n_train=len(split.train), parties=3, rounds=2,
                               learner="linear", seed=0, scaler=TargetScaler.fit(data, data.y[split.train]))
        deployment.build(job, data, split, deployment.blocks(data, 3))


def _party_toml(tmp_path, table, **sections):
    data = {"name": "bob", "listen": "127.0.0.1:0", "tls": {"insecure": True},
            "data": {"csv": table.name, "id_column": "id", "stream": True}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path = tmp_path / "party.toml"
    path.write_text(schema.dump(data))
    return path


def test_party_toml_stream_serves_the_parquet_table_out_of_core(tmp_path):
    paths = _organizations(tmp_path, people=200)
    cfg = PartyConfig.load(_party_toml(tmp_path, paths["party1"]))
    assert isinstance(cfg.table, ParquetTable) and cfg.table.n_features == 3
    own = pd.read_parquet(paths["party1"])["id"].to_numpy()
    np.testing.assert_array_equal(cfg.ids, own)  # the PSI aligns the table's own IDs
    endpoint = build_party(cfg)
    assert endpoint.party.streamed
    endpoint.close()


@pytest.mark.parametrize("sections, message", [
    (dict(learner={"name": "rff"}), r"this party \(data.stream = true\) streams its table: it runs only the linear "
                                    r"learner with local loss l2, not 'rff'"),
    (dict(learner={"local_loss": "l1"}), "not 'linear' with 'l1'"),
    (dict(privacy={"epsilon": 4.0}), "without feature-DP, not 'plain' residuals with feature-DP"),
    (dict(privacy={"residuals": "ckks"}), "runs only plain residuals"),
    (dict(policy={"residuals": ["ckks"]}), r"runs only plain residuals, but its \[policy\] residuals = \['ckks'\] accepts none"),
])
def test_party_toml_stream_refuses_at_start_up(tmp_path, sections, message):
    paths = _organizations(tmp_path, people=200)
    with pytest.raises(ConfigError, match=message):
        PartyConfig.load(_party_toml(tmp_path, paths["party1"], **sections))


def test_party_toml_stream_needs_a_parquet_file(tmp_path):
    pd.DataFrame({"id": [1, 2], "a": [0.5, 1.5]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ConfigError, match="must be Parquet"):
        PartyConfig.load(_party_toml(tmp_path, tmp_path / "t.csv"))
    path = _party_toml(tmp_path, tmp_path / "t.csv", data={"csv": None, "dataset": "breast_cancer", "parties": 2,
                                                            "block": 1})
    with pytest.raises(ConfigError, match="stream = true serves a Parquet csv file, not a built-in dataset"):
        PartyConfig.load(path)


def test_the_streamed_party_refuses_other_layers_at_setup(tmp_path):
    """Whatever a deployment built, a party streaming its table refuses at setup a trainer that
    cannot stream (LayerMismatch naming the party): another layer, another learner, or l1."""
    from securegal import messages as m
    from securegal.learners.rff import RFFLearner
    from securegal.parties.feature_party import FeatureParty
    from securegal.privacy.plain import PlainTrainer

    _write(tmp_path / "t.parquet", np.random.default_rng(3).normal(size=(60, 2)))
    table = ParquetTable.open(tmp_path / "t.parquet", None)
    setup = m.Setup(np.arange(40), 1, 2, "regression")

    class Other:  # e.g. a DP or CKKS trainer
        pass

    for factory, message in ((lambda s: Other(), "not Other"),
                             (lambda s: PlainTrainer(RFFLearner()), "not learner 'rff'"),
                             (lambda s: PlainTrainer(LinearLearner(local_loss="l1")), "not local loss l1")):
        party = FeatureParty("bob", table, factory, label_owner="alice")
        with pytest.raises(LayerMismatch, match=f"party 'bob' streams its table: .*{message}"):
            party.handle(m.Envelope("s", 0, "alice", "bob", 0, setup))
    party = FeatureParty("bob", table, lambda s: PlainTrainer(LinearLearner(lam=0.1)), label_owner="alice")
    party.handle(m.Envelope("s", 0, "alice", "bob", 0, setup))
    assert party.trainer.lam == 0.1


def test_a_streamed_party_answers_a_resumed_label_owner_with_the_same_reply(tmp_path):
    """It keeps the round's model, not its train predictions: asked again for the same round by a
    restarted label owner (a new seq epoch), it recomputes exactly the reply it sent, without a
    second fit; a later round is still refused as a replay."""
    from securegal import messages as m
    from securegal.parties.feature_party import RESUME_BITS, FeatureParty
    from securegal.privacy.plain import PlainTrainer

    rng = np.random.default_rng(2)
    _write(tmp_path / "t.parquet", rng.normal(size=(300, 3)), row_group_size=64)
    table = ParquetTable.open(tmp_path / "t.parquet", None, batch_rows=50)
    party = FeatureParty("bob", table, lambda s: PlainTrainer(LinearLearner()), label_owner="alice")
    env = lambda body, seq, round=0: m.Envelope("s", round, "alice", "bob", seq, body)  # noqa: E731
    train = rng.permutation(300)[:200]
    party.handle(env(m.Setup(train, 1, 3, "regression"), 0))
    first = party.handle(env(m.FitRequest(rng.normal(size=(200, 1))), 1, round=1))
    model = party.trainer.models[1]
    again = party.handle(env(m.FitRequest(rng.normal(size=(200, 1))), 1 << RESUME_BITS, round=1))
    np.testing.assert_array_equal(again.predictions, first.predictions)
    assert party.trainer.models == {1: model}
    with pytest.raises(ProtocolError, match="replayed"):
        party.handle(env(m.FitRequest(rng.normal(size=(200, 1))), 1 << RESUME_BITS, round=2))
