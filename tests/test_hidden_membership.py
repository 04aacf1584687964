"""Hidden membership: a feature party fits on all its rows and never learns which of them the
label owner trains on. The plan refuses it where it cannot hold; a membership attack on every
feature party's transcript finds nothing that tells members from non-members."""
import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

from securegal.data.split import split_rows
from securegal.errors import ConfigError, LayerMismatch, PartyRefused
from securegal.messages import EncryptedPayload
from securegal.privacy.dp.table import ColumnSpec
from securegal.privacy.plan import FeatureDP, PrivacyPlan
from securegal.run import resolve_dataset, train
from securegal.transcript import read_alignment, read_transcript

HIDDEN = dict(residuals="ckks", hidden_membership=True)


def test_the_plan_refuses_hidden_membership_where_it_cannot_hold():
    for residuals in ("plain",):  # plain and dp-only layers: zero residuals in the clear reveal membership
        with pytest.raises(ConfigError, match="hidden membership needs ckks residuals"):
            PrivacyPlan(residuals=residuals, hidden_membership=True)
        with pytest.raises(ConfigError, match="hidden membership needs ckks residuals"):
            PrivacyPlan(residuals=residuals, feature_dp=FeatureDP(epsilon=4), hidden_membership=True)
    with pytest.raises(ConfigError, match="drop --dp-feedback off"):
        PrivacyPlan(feature_dp=FeatureDP(epsilon=4, feedback=False), **HIDDEN)
    with pytest.raises(ConfigError, match="hidden_membership must be true or false"):
        PrivacyPlan(residuals="ckks", hidden_membership="yes")
    # ckks alone: the label owner would receive unnoised predictions on rows it does not hold
    with pytest.raises(ConfigError, match="needs feature-DP at every party"):
        train("breast_cancer", parties=2, rounds=1, plan=PrivacyPlan(**HIDDEN))
    plan = PrivacyPlan(feature_dp=FeatureDP(epsilon=4), **HIDDEN)
    assert plan.describe()["membership"] == "hidden" and plan.trainers().config_for("party1").releases_predictions


def _organizations(tmp_path, people: int, seed: int = 3):
    """A label owner (target ``y``, two columns) and two feature parties (two columns each), each
    holding a random 85% of ``people`` under string IDs, in its own shuffled order; the public
    column bounds DP parties standardize with (every table has two columns in [-4, 4])."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"P-{i:07d}" for i in rng.permutation(people)])
    X = rng.normal(size=(people, 6)).clip(-4, 4)
    y = (X @ np.array([1.0, -1.0, 0.8, 0.5, -0.6, 0.4]) + 0.5 * rng.normal(size=people) > 0).astype(int)
    paths = {}
    for k, name in enumerate(("alice", "party1", "party2")):
        rows = rng.permutation(np.flatnonzero(rng.random(people) < 0.85))
        frame = pd.DataFrame({"id": ids[rows], "a": X[rows, 2 * k], "b": X[rows, 2 * k + 1]})
        if name == "alice":
            frame["y"] = y[rows]
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths, ColumnSpec(lower=(-4.0,) * 2, upper=(4.0,) * 2, source="test: clipped to [-4, 4]")


def row_view(transcript, handles: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Everything a party received that could name one of its rows, per row (``handles`` in its
    own row order), and what each column is: for every received array of row handles, whether
    the row is named (``named``) and where (``index``: its index over the array's length, -1 when
    absent); for every payload, its size in bytes per row (``bytes``)."""
    columns, kinds = [], []
    for rec in transcript.select(direction="received"):
        body = rec.envelope.body
        for f in dataclasses.fields(body):
            value = getattr(body, f.name)
            if isinstance(value, np.ndarray) and value.dtype.kind == "i" and value.ndim == 1:
                order = np.argsort(value, kind="stable")
                pos = np.clip(np.searchsorted(value, handles, sorter=order), 0, len(value) - 1)
                named = value[order[pos]] == handles
                columns += [named.astype(float), np.where(named, order[pos] / len(value), -1.0)]
                kinds += ["named", "index"]
            elif isinstance(value, (EncryptedPayload, np.ndarray)):
                columns.append(np.full(len(handles), float(value.nbytes) / len(handles)))
                kinds.append("bytes")
    return np.column_stack(columns), kinds


def membership_advantage(view: np.ndarray, member: np.ndarray, seed: int = 0) -> float:
    """TPR - FPR of a classifier (gradient boosting, 5-fold cross-validated, balanced classes)
    that reads ``view`` to tell members from non-members."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    clf = HistGradientBoostingClassifier(max_iter=50, class_weight="balanced", random_state=seed)
    guess = cross_val_predict(clf, view, member, cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    return float(guess[member].mean() - guess[~member].mean())


def _run(tmp_path, paths, columns, hidden: bool, n_rounds=2):
    from securegal.data.party_file import read_party_file
    from securegal.deploy.embedded import EmbeddedDeployment

    plan = PrivacyPlan(residuals="ckks", feature_dp=FeatureDP(epsilon=8, feedback=True), hidden_membership=hidden)
    tables = {name: read_party_file(paths[name], "id") for name in ("party1", "party2")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = train(csv=paths["alice"], target="y", id_column="id", parties=3, rounds=n_rounds, seed=0,
                        plan=plan, columns=columns, deployment=EmbeddedDeployment(tables, owner="alice"),
                        out=tmp_path / f"run-{hidden}")
    return metrics, tmp_path / f"run-{hidden}"


def _views(run_dir, paths):
    """Per feature party: its per-row view, what each column is, whether each of its rows is a
    training row of the label owner (in its split and held by every party), and its row count."""
    data = resolve_dataset(None, paths["alice"], "y", "impute", "id")
    split = split_rows(data, 0, 0.2, 0.1)
    held = [set(pd.read_csv(paths[name])["id"]) for name in ("party1", "party2")]
    train_ids = set(data.row_ids()[split.train].tolist()) & held[0] & held[1]
    out = {}
    for party in ("party1", "party2"):
        transcript = read_transcript(run_dir / "transcripts" / party)
        handles, ids = read_alignment(run_dir / "transcripts" / party, "alice", transcript.sessions[0])
        member = np.array([i in train_ids for i in ids.tolist()])
        view, kinds = row_view(transcript, handles)
        out[party] = (view, kinds, member, len(ids))
    return out


@pytest.mark.slow
def test_membership_attack_on_the_party_transcripts(tmp_path):
    """Non-members are the party's rows the label owner does not hold, holds but some other
    party lacks, or keeps for validation and test."""
    paths, columns = _organizations(tmp_path, 36_000)
    metrics, run_dir = _run(tmp_path, paths, columns, hidden=True)
    assert metrics["plan"]["membership"] == "hidden"
    for party, (view, kinds, member, rows) in _views(run_dir, paths).items():
        # the party was told all its rows: the selection and the setup name every one
        assert rows == len(pd.read_csv(paths[party])) and rows > 29_000
        assert member.sum() > 0.4 * rows and (~member).sum() > 0.4 * rows
        # every row is named by the same messages, with the same payload sizes; only the index of
        # its own handle differs (random: the party drew the handles itself, before any matching)
        varying = {kinds[c] for c in range(view.shape[1]) if np.unique(view[:, c]).size > 1}
        assert varying == {"index"}, varying
        advantage = membership_advantage(view, member)
        print(f"{party}: membership advantage {advantage:+.4f} over {rows} rows ({member.sum()} members)")
        assert abs(advantage) <= 0.02


@pytest.mark.slow
def test_the_attack_sees_membership_without_hidden_membership(tmp_path):
    """The same attack on an ordinary run: the setup names the training rows, so it wins."""
    paths, columns = _organizations(tmp_path, 2_000)
    _, run_dir = _run(tmp_path, paths, columns, hidden=False, n_rounds=1)
    for party, (view, _, member, _) in _views(run_dir, paths).items():
        assert membership_advantage(view, member) > 0.95


def test_a_party_refuses_hidden_membership_without_dp_feedback(tmp_path):
    """Embedded parties built without feature-DP (a study's own trainers) refuse at setup."""
    from securegal.privacy.he.layers import ckks_trainers

    with pytest.raises((LayerMismatch, PartyRefused), match="cannot serve hidden membership"):
        train("breast_cancer", parties=2, rounds=1, trainers=ckks_trainers,
              plan=PrivacyPlan(feature_dp=FeatureDP(epsilon=8), **HIDDEN))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_networked_parties_honour_hidden_membership_as_embedded_ones_do(tmp_path):
    """gRPC parties with their own DP budgets serve hidden membership with the releases an
    embedded run makes: party2 turns feedback on in its party.toml, party1 leaves it to its
    default, which is off on ckks residuals and which it turns on for such a session, as the
    embedded plan does (it refused: code review M9). A party whose DP trainer is set to release no
    feedback refuses it."""
    from securegal.deploy.networked import train_federation

    from .test_network_dp import federation, parties_in_threads

    seed, epsilon = 7, 8.0
    budget = {"epsilon": epsilon, "noise_seed": seed, "feedback": "on"}
    plan = PrivacyPlan(feature_dp=FeatureDP(epsilon=epsilon, seed=seed), **HIDDEN)
    embedded = train("breast_cancer", parties=3, rounds=2, seed=0, plan=plan)
    default_feedback = {"epsilon": epsilon, "noise_seed": seed}
    with parties_in_threads(tmp_path, {"party1": default_feedback, "party2": budget}, residuals="ckks") as (peers, _):
        networked = train_federation(federation(tmp_path, peers, rounds=2, residuals="ckks",
                                                extra={"hidden_membership": True, "residual_clip": 1.0}))
    for party in ("party1", "party2"):
        for key in ("releases", "epsilon_spent"):
            assert networked["privacy"][party][key] == embedded["privacy"][party][key], (party, key)
    assert networked["n_test"] == embedded["n_test"] and len(networked["gal"]["per_round"]) == 2
    no_feedback = {"epsilon": epsilon, "noise_seed": seed, "feedback": "off"}
    with parties_in_threads(tmp_path, {"party1": no_feedback, "party2": no_feedback}, residuals="ckks") as (peers, _):
        with pytest.raises((LayerMismatch, PartyRefused), match="cannot serve hidden membership"):
            train_federation(federation(tmp_path, peers, rounds=2, residuals="ckks", out="refused",
                                        extra={"hidden_membership": True, "residual_clip": 1.0}))


def test_a_setup_the_party_cannot_serve_pays_nothing_for_its_column_map(rng):
    """Validate first: a DP party whose column map is a DP estimate (paid once from its ledger)
    checks that it can serve the setup before it pays for the estimate."""
    from securegal import messages as m
    from securegal.data.tables import FeatureTable
    from securegal.learners.linear import LinearLearner
    from securegal.parties.feature_party import FeatureParty
    from securegal.privacy.dp.accountant import Budget
    from securegal.privacy.dp.table import ColumnSpec, open_table
    from securegal.privacy.dp.trainer import DPConfig, DPTrainer
    from securegal.privacy.plain import PlainTrainer

    table = FeatureTable(list(range(40)), rng.uniform(-4, 4, size=(40, 2)))
    columns = ColumnSpec(lower=(-4.0,) * 2, upper=(4.0,) * 2, dp_epsilon=0.1, source="test")
    setup = m.Setup(list(range(30)), 1, 2, "regression")
    for factory in (lambda s: PlainTrainer(LinearLearner()), lambda s: DPTrainer(DPConfig(1.0, 1e-5))):
        privacy = open_table("t", Budget(1.0, 1e-5), "pld", columns)
        party = FeatureParty("bob", table, factory, label_owner="alice", privacy=privacy)
        if isinstance(factory(setup), PlainTrainer):
            with pytest.raises(ConfigError, match="releases outside it"):
                party.handle(m.Envelope("s1", 0, "alice", "bob", 0, setup))
            assert privacy.ledger.releases == ()  # refused before the estimate was drawn
        else:
            ckks = m.Setup(list(range(30)), 1, 2, "regression", residuals="ckks")  # verifier I: a mode it cannot serve
            with pytest.raises(LayerMismatch, match="needs plaintext residuals"):
                party.handle(m.Envelope("s0", 0, "alice", "bob", 0, ckks))
            assert privacy.ledger.releases == ()
            party.handle(m.Envelope("s1", 0, "alice", "bob", 0, setup))
            estimate = [r.what for r in privacy.ledger.releases if r.what.startswith("std_")]
            assert sorted(estimate) == ["std_mean", "std_scale"]  # paid when a setup is served
