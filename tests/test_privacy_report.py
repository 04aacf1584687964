"""A DP party's privacy report: what its replies carry and what its log says."""
import json
import logging

import pytest

from securegal import messages as m
from securegal.deploy.middleware import PRIVACY_INFO, privacy_reports, read_privacy_report
from securegal.errors import ProtocolError

SESSION_BLOCK = {"epsilon_budget": 1.0, "epsilon_spent": 0.3, "delta": 1e-5, "accountant": "pld",
                 "noise_multiplier": 4.0, "releases": []}
LIFETIME = {"ledger": {"table": "t", "session": "s2", "lifetime_epsilon_budget": 1.0,
                       "lifetime_epsilon_spent": 0.9, "lifetime_epsilon_remaining": 0.1, "accountant": "pld"}}


def reply_to_finish(block):
    handle = privacy_reports(lambda env: m.FinishAck({"party": "bob"}), lambda: block)
    return handle(m.Envelope("s2", 4, "alice", "bob", 9, m.Finish()))


def test_a_second_session_logs_what_the_table_has_left_not_the_budget_minus_this_session(caplog):
    """The party's log said '0.7 left' after a second session that brought the table to 0.9 of 1."""
    with caplog.at_level(logging.INFO, logger="securegal.deploy.middleware"):
        reply = reply_to_finish({**SESSION_BLOCK, **LIFETIME})
    text = caplog.records[-1].getMessage()
    assert "lifetime epsilon 0.9 of 1" in text and "0.1 left" in text and "0.7" not in text
    assert json.loads(reply.info[PRIVACY_INFO])["ledger"]["lifetime_epsilon_spent"] == 0.9
    assert reply.info["party"] == "bob"


def test_without_a_ledger_the_log_counts_the_session_against_its_budget(caplog):
    with caplog.at_level(logging.INFO, logger="securegal.deploy.middleware"):
        reply_to_finish(SESSION_BLOCK)
    assert "epsilon 0.3 spent of 1" in caplog.records[-1].getMessage()
    assert "0.7 left" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("raw, match", [
    ("not json", "is not JSON"),
    (json.dumps({"epsilon_budget": 1.0}), "lacks"),
    (json.dumps({**SESSION_BLOCK, "epsilon_spent": "0.3"}), "non-numeric"),
    (json.dumps({**SESSION_BLOCK, "releases": {}}), "no release list"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),  # a RecursionError crashed the label owner
    (json.dumps({**SESSION_BLOCK, "epsilon_budget": 1e308, "epsilon_spent": -5}), "epsilon_spent=-5 is not in"),
    (json.dumps({**SESSION_BLOCK, "epsilon_budget": 0}), "epsilon_budget=0 is not positive"),
    (json.dumps({**SESSION_BLOCK, "epsilon_spent": 2.0}), "epsilon_spent=2.0 is not in"),
    (json.dumps({**SESSION_BLOCK, "delta": 0}), "delta=0 is not in"),
    (json.dumps({**SESSION_BLOCK, "accountant": "\x1b[2Jx"}), "accountant=.*is not one of rdp, prv, pld"),
    (json.dumps({**SESSION_BLOCK, "releases": [1, 2]}), "releases is not a list"),
    (json.dumps({**SESSION_BLOCK, "ledger": {"lifetime_epsilon_spent": "x"}}), "ledger block lacks"),
])
def test_a_malformed_report_is_refused_naming_the_party(raw, match):
    with pytest.raises(ProtocolError, match=match) as info:
        read_privacy_report(raw, "bob")
    assert "of 'bob'" in str(info.value) and str(info.value).isprintable()
