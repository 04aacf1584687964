"""The label owner's prediction asks each party for a bounded number of rows at a time."""
from dataclasses import replace

import numpy as np

from securegal.data.datasets import Dataset
from securegal.data.split import split_rows, vertical_split
from securegal.deploy.embedded import EmbeddedDeployment
from securegal.deploy.federation import GalJob, TargetScaler
from securegal.errors import PartyUnavailable
from securegal.parties import label_owner
from securegal.privacy.plan import PrivacyPlan


def _fitted_owner(rng):
    X = rng.normal(size=(300, 6))
    y = (X @ rng.normal(size=6) + 0.3 * rng.normal(size=300) > 0).astype(np.int64)
    data = Dataset("tiny", X, y, "classification", "cross_entropy", 2)
    split = split_rows(data, seed=0)
    deployment = EmbeddedDeployment(psi=False)
    job = GalJob.from_plan(PrivacyPlan(), dataset=data, n_train=len(split.train), parties=3, rounds=3,
                           learner="linear", seed=0, scaler=TargetScaler())
    owner = deployment.build(job, data, split, vertical_split(data, 3))
    owner.setup()
    owner.fit()
    return owner, split


def test_requests_in_row_chunks_give_the_same_scores(monkeypatch, rng):
    owner, split = _fitted_owner(rng)
    whole = owner.predict_rounds(split.test)
    sizes = []
    exchange = owner.messenger.exchange

    def counting(round, requests, *bounds):
        sizes.extend(len(body.sample_ids) for body in requests.values())
        return exchange(round, requests, *bounds)

    monkeypatch.setattr(owner.messenger, "exchange", counting)
    monkeypatch.setattr(label_owner, "PREDICT_ROWS", 7)
    chunked = owner.predict_rounds(split.test)
    np.testing.assert_array_equal(chunked, whole)
    assert max(sizes) == 7 and sum(sizes) == 2 * len(split.test)  # two peers, every row once each


def test_a_party_failing_part_way_counts_as_missing_not_as_half_a_party(monkeypatch, rng):
    owner, split = _fitted_owner(rng)
    monkeypatch.setattr(label_owner, "PREDICT_ROWS", 7)
    failing, calls = owner.peers[-1], []
    exchange = owner.messenger.exchange

    def flaky(round, requests, *bounds):
        if failing in requests:
            calls.append(1)
            if len(calls) == 2:  # the party answers its first chunk, then goes away
                return {failing: PartyUnavailable(f"{failing} went away")}
        return exchange(round, requests, *bounds)

    monkeypatch.setattr(owner.messenger, "exchange", flaky)
    partial = owner.predict_rounds(split.test)
    assert owner.model.missing_at_predict == {failing}
    owner.model.rounds = [replace(r, weights={**r.weights, failing: 0.0}) for r in owner.model.rounds]
    np.testing.assert_array_equal(partial, owner.predict_rounds(split.test))  # as if it had no terms at all
