"""The label owner checks what a feature party's replies carry before it uses it."""
import numpy as np
import pytest

from securegal import messages as m
from securegal.data.datasets import load_dataset
from securegal.data.split import split_rows, vertical_split
from securegal.deploy.embedded import EmbeddedDeployment
from securegal.deploy.federation import GalJob, TargetScaler
from securegal.errors import ProtocolError
from securegal.privacy.plan import PrivacyPlan


def _owner(tmp_path):
    data = load_dataset("wine")
    split = split_rows(data, 0, 0.2, 0.1)
    job = GalJob.from_plan(PrivacyPlan(), dataset=data, n_train=len(split.train), parties=3, rounds=2,
                           learner="linear", seed=0, scaler=TargetScaler.fit(data, data.y[split.train]))
    return EmbeddedDeployment().build(job, data, split, vertical_split(data, 3), run_dir=tmp_path)


@pytest.mark.parametrize("columns", ["\\u00b2", "9" * 5000, "-3", " 4", "3.0", ""])
def test_a_setup_ack_whose_column_count_is_not_a_small_whole_number_is_a_protocol_error(tmp_path, columns):
    """'\\u00b2'.isdigit() is true and int() refused it, and 5000 digits exceed Python's int limit:
    both crashed the label owner with an internal error instead of naming the party."""
    owner = _owner(tmp_path)
    exchange = owner.messenger.exchange

    def party1_lies(t, requests):
        out = exchange(t, requests)
        if isinstance(out.get("party1"), m.SetupAck):
            out["party1"] = m.SetupAck({**out["party1"].info, "columns": columns})
        return out

    owner.messenger.exchange = party1_lies
    with pytest.raises(ProtocolError, match="party 'party1' answered Setup with columns=") as info:
        owner.setup()
    assert "\\n" not in str(info.value) and len(str(info.value)) < 200
