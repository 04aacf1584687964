"""The per-table privacy ledger: lifetime accounting across sessions and restarts, atomic and
locked writes, refusal of bad files and bad budgets (one line, nothing released, nothing lost)."""
import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from securegal.commands import ledger as ledger_cmd
from securegal.errors import BudgetExceeded, PolicyRefused
from securegal.privacy.dp.accountant import Budget, PlannedRelease, Release, epsilon_of
from securegal.privacy.dp.ledger import (
    LEDGER_VERSION,
    Ledger,
    LedgerError,
    _checksum,
    calibrate_session,
    open_ledger,
    read_ledger,
    table_fingerprint,
    table_identity,
)
from securegal.privacy.dp.table import ColumnSpec, TablePrivacy
from securegal.privacy.dp.trainer import DPConfig, release_plan

TABLE = "id:hospital-a/patients"
BUDGET = Budget(1.0, 1e-5)


def rel(round, what="stat", z=5.0, steps=1, sens=1.0):
    return Release(round, what, z, 1.0, steps, sens)


class CountingNoise:
    """Stands in for GaussianNoise to prove that nothing was drawn (= nothing released)."""

    def __init__(self):
        self.draws = 0

    def normal(self, shape, std):
        self.draws += 1
        return np.zeros(shape)


def serve_session(path, table, budget, session, n_rows=100, noise=None, session_epsilon=0.3,
                  accountant="pld"):
    """What a party does per Setup: open the table's ledger, calibrate the session's plan
    against its history, record (check-before-spend), and only then draw noise."""
    plan = release_plan(DPConfig(budget.epsilon, budget.delta).for_rows(n_rows), rounds=3)
    with open_ledger(path, table, budget, accountant, n_rows=n_rows) as led:
        z = calibrate_session(led, plan, session_epsilon=session_epsilon)
        releases = [p.at(z, round=1) for p in plan]
        led.record(releases, session)
        if noise is not None:
            noise.normal((3,), z)
        return led.epsilon_spent


def one_line(exc):
    text = str(exc.value)
    assert text and "\n" not in text
    return text


# --- in memory -------------------------------------------------------------------------------

def test_lifetime_epsilon_composes_every_session():
    led = Ledger(TABLE, Budget(3.0, 1e-5), "pld")
    a = [rel(0, "gram", 20.0), rel(1), rel(2)]
    b = [rel(1, z=8.0), rel(2, z=8.0)]
    led.record(a, "s1")
    led.record(b, "s2")
    whole = epsilon_of(a + b, 1e-5, "pld")
    assert led.epsilon_spent == pytest.approx(whole, rel=1e-12)
    assert led.remaining() == pytest.approx(3.0 - whole)
    s1, s2 = led.spent_by_session()
    assert (s1.session, s1.releases, s2.session, s2.releases) == ("s1", 3, "s2", 2)
    assert s1.epsilon_alone == pytest.approx(epsilon_of(a, 1e-5, "pld"))
    assert s2.epsilon_alone == pytest.approx(epsilon_of(b, 1e-5, "pld"))
    assert s2.epsilon_after == pytest.approx(whole)
    # composition is sub-additive here: the lifetime total is below the sum of the sessions
    assert whole < s1.epsilon_alone + s2.epsilon_alone


def test_check_names_what_is_left_and_asked_and_changes_nothing():
    led = Ledger(TABLE, BUDGET, "rdp")
    led.record([rel(1, z=10.0)], "s1")
    before = (led.entries, led.epsilon_spent)
    after = led.check([rel(2, z=10.0)])
    assert after > led.epsilon_spent and (led.entries, led.epsilon_spent) == before
    with pytest.raises(BudgetExceeded) as info:
        led.record([rel(2, z=1.0)], "s2")
    text = one_line(info)
    assert f"left {led.remaining():.4g}" in text and "asked +" in text and "stat@round2" in text
    assert (led.entries, led.epsilon_spent) == before


def test_record_needs_sensitivity_and_a_session_name():
    led = Ledger(TABLE, BUDGET)
    with pytest.raises(ValueError, match="sensitivity"):
        led.record([Release(1, "stat", 5.0)], "s1")
    for bad in ("", "a\nb", 3):
        with pytest.raises(ValueError, match="session"):
            led.record([rel(1)], bad)
    assert led.entries == ()


def test_calibrate_session_fits_history_plus_plan():
    led = Ledger(TABLE, Budget(2.0, 1e-5), "pld")
    led.record([rel(0, "gram", 6.0), rel(1, z=6.0, steps=3)], "old")
    plan = [PlannedRelease("stat", steps=3, sensitivity=1.0)]
    z = calibrate_session(led, plan)
    total = epsilon_of(led.releases + (plan[0].at(z),), 1e-5, "pld")
    assert 2.0 * (1 - 1e-3) <= total <= 2.0
    z_slice = calibrate_session(led, plan, session_epsilon=0.2)
    assert z_slice > z
    assert epsilon_of(led.releases + (plan[0].at(z_slice),), 1e-5, "pld") <= led.epsilon_spent + 0.2
    with pytest.raises(ValueError, match="1/n"):
        calibrate_session(led, plan, n_rows=10 ** 6)
    with pytest.raises(ValueError, match="session_epsilon"):
        calibrate_session(led, plan, session_epsilon=math.nan)


def test_calibrate_session_refuses_when_nothing_is_left():
    led = Ledger(TABLE, BUDGET, "pld")
    z = calibrate_session(led, [PlannedRelease("stat", sensitivity=1.0)])
    led.record([Release(1, "stat", z, sensitivity=1.0)], "all")
    before = led.entries
    plan = [PlannedRelease("stat", steps=3, sensitivity=1.0)]
    with pytest.raises(BudgetExceeded) as info:
        calibrate_session(led, plan, session_epsilon=0.1)
    assert f"left {led.remaining():.4g}" in one_line(info) and "asked 0.1" in one_line(info)
    # without a session slice, what is left still has to carry the plan at a sane noise level
    with pytest.raises(BudgetExceeded) as info:
        calibrate_session(led, plan, max_noise_multiplier=100.0)
    assert "left" in one_line(info) and "asked at least +" in one_line(info)
    assert led.entries == before


# --- on disk ---------------------------------------------------------------------------------

def test_sessions_and_restarts_never_reset_the_budget(tmp_path):
    """Lifetime epsilon 1, 0.25 per session: three sessions, a restart (a new process), three
    more; the fourth takes the rest, the fifth and sixth are refused before any noise."""
    path = tmp_path / "table.ledger"
    noise = CountingNoise()
    spent = [serve_session(path, TABLE, BUDGET, s, noise=noise, session_epsilon=0.25)
             for s in ("s1", "s2", "s3")]
    assert noise.draws == 3
    code = f"""
import json, sys
sys.path.insert(0, {os.getcwd()!r})
from tests.test_dp_ledger import *
out = []
for s in ("s4", "s5", "s6"):
    noise = CountingNoise()
    try:
        out.append([serve_session({str(path)!r}, TABLE, BUDGET, s, noise=noise, session_epsilon=0.25), noise.draws])
    except BudgetExceeded as exc:
        out.append([str(exc), noise.draws])
print(json.dumps(out))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    (s4, draws4), (s5, draws5), (s6, draws6) = json.loads(run.stdout)
    spent.append(s4)
    assert (draws4, draws5, draws6) == (1, 0, 0)
    for refusal in (s5, s6):
        assert "session refused: left" in refusal and "asked 0.25" in refusal
    assert spent == sorted(spent) and spent[-1] <= 1.0
    assert spent == pytest.approx([0.25, 0.5, 0.75, 1.0], rel=1e-3)
    led = read_ledger(path)
    assert [s.session for s in led.spent_by_session()] == ["s1", "s2", "s3", "s4"]
    assert len(led.entries) == 4 * 3 and led.epsilon_spent <= 1.0
    assert all(e.release.sensitivity > 0 for e in led.entries)


def test_file_ledger_roundtrip_outputs_and_accountant_switch(tmp_path):
    path = tmp_path / "t.ledger"
    with open_ledger(path, TABLE, BUDGET, "rdp") as led:
        led.record([rel(1, z=10.0, steps=3)], "s1")
        led.store_output("standardization", {"centre": [1.5], "scale": [2.0]})
        rdp = led.epsilon_spent
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    with open_ledger(path, TABLE, BUDGET) as led:  # the file's accountant by default
        assert led.accountant == "rdp" and led.epsilon_spent == rdp
        assert led.output("standardization") == {"centre": [1.5], "scale": [2.0]}
    with open_ledger(path, TABLE, BUDGET, "pld") as led:  # a tighter count of the same history
        assert led.epsilon_spent < rdp
        assert led.entries == read_ledger(path).entries
    assert read_ledger(path).accountant == "pld"


def test_an_accountant_switch_that_would_overspend_is_refused(tmp_path):
    path, budget = tmp_path / "t.ledger", Budget(4.0, 1e-5)
    plan = release_plan(DPConfig(budget.epsilon, budget.delta).for_rows(569), rounds=10)
    with open_ledger(path, TABLE, budget, "pld") as led:
        led.record([p.at(calibrate_session(led, plan), round=1) for p in plan], "s1")
        pld = led.epsilon_spent
    rdp = epsilon_of(read_ledger(path).releases, budget.delta, "rdp")
    assert 3.99 < pld <= 4.0 < rdp
    original = path.read_bytes()
    with pytest.raises(LedgerError, match="refusing the switch from pld to rdp") as info:
        open_ledger(path, TABLE, budget, "rdp")
    assert f"rdp counts its history at epsilon {rdp:.4f}, pld at {pld:.4f}" in one_line(info)
    assert path.read_bytes() == original
    with open_ledger(path, TABLE, budget) as led:  # not locked by the refusal; still pld
        assert led.accountant == "pld" and led.epsilon_spent == pld


def test_an_accountant_switch_within_the_budget_is_allowed(tmp_path):
    path, budget = tmp_path / "t.ledger", Budget(4.0, 1e-5)
    with open_ledger(path, TABLE, budget, "pld") as led:
        led.record([rel(1, z=10.0, steps=3)], "s1")
        pld = led.epsilon_spent
    with open_ledger(path, TABLE, budget, "rdp") as led:
        assert pld < led.epsilon_spent <= budget.epsilon
    assert read_ledger(path).accountant == "rdp"


def test_a_failed_write_records_nothing(tmp_path, monkeypatch):
    path = tmp_path / "t.ledger"
    with open_ledger(path, TABLE, BUDGET) as led:
        led.record([rel(1, z=10.0)], "s1")
        before_bytes, before = path.read_bytes(), led.entries

        def broken_replace(src, dst):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", broken_replace)
        # one line naming the file and the reason (it was an internal error, exit 1: review A L2)
        with pytest.raises(LedgerError, match=f"ledger {path} could not be written \\(No space left on device\\): "
                                              "nothing was released"):
            led.record([rel(2, z=10.0)], "s1")
        assert led.entries == before and path.read_bytes() == before_bytes
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_ledger_this_process_cannot_replace_is_refused_when_it_is_opened(tmp_path, monkeypatch):
    """An immutable ledger file (or a full disk) let `party serve` start and failed the first
    session as an internal error (review A L2): the ledger is written back when it is opened."""
    path = tmp_path / "t.ledger"
    with open_ledger(path, TABLE, BUDGET) as led:
        led.record([rel(1, z=10.0)], "s1")
    before = path.read_bytes()

    def refused(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(LedgerError, match="could not be written \\(Operation not permitted\\)"):
        open_ledger(path, TABLE, BUDGET)
    monkeypatch.undo()
    assert path.read_bytes() == before
    with open_ledger(path, TABLE, BUDGET) as led:  # the lock was let go with the refusal
        assert len(led.entries) == 1


def test_second_server_of_a_table_is_refused(tmp_path):
    path = tmp_path / "t.ledger"
    led = open_ledger(path, TABLE, BUDGET)
    with pytest.raises(LedgerError, match="in use by another process") as info:
        open_ledger(path, TABLE, BUDGET)
    one_line(info)
    code = ("from securegal.privacy.dp.ledger import *; from securegal.privacy.dp.accountant import Budget\n"
            "try:\n open_ledger(%r, %r, Budget(1.0, 1e-5))\nexcept LedgerError as e:\n print(e); raise SystemExit(7)"
            % (str(path), TABLE))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 7 and "in use by another process" in out.stdout
    led.close()
    with pytest.raises(LedgerError, match="closed"):
        led.record([rel(1)], "s1")
    open_ledger(path, TABLE, BUDGET).close()  # free again


def _rewrite(path, **changes):
    doc = json.loads(path.read_bytes())
    doc.update(changes)
    body = {k: v for k, v in doc.items() if k != "checksum"}
    path.write_text(json.dumps({**body, "checksum": _checksum(body)}))


@pytest.fixture
def ledger_file(tmp_path):
    path = tmp_path / "t.ledger"
    with open_ledger(path, TABLE, BUDGET, "pld") as led:
        led.record([rel(1, z=6.0), rel(1, "pred", 30.0, sens=0.02)], "s1")
    return path


def _damage_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damage_flip(path):  # still valid JSON: the checksum catches it
    path.write_bytes(path.read_bytes().replace(b'"noise_multiplier": 6.0', b'"noise_multiplier": 60.0'))


def _damage_empty(path):
    path.write_bytes(b"")


def _damage_version(path):
    _rewrite(path, version=LEDGER_VERSION + 1)


def _damage_format(path):
    path.write_text(json.dumps({"hello": "world"}))


@pytest.mark.parametrize("damage,message", [
    (_damage_truncate, "truncated"), (_damage_flip, "corrupted"), (_damage_empty, "empty"),
    (_damage_version, "version"), (_damage_format, "not a securegal privacy ledger"),
])
def test_bad_ledger_files_are_refused_and_kept(ledger_file, damage, message):
    damage(ledger_file)
    damaged = ledger_file.read_bytes()
    noise = CountingNoise()
    with pytest.raises(LedgerError, match=message) as info:
        serve_session(ledger_file, TABLE, BUDGET, "s2", noise=noise)
    one_line(info)
    with pytest.raises(LedgerError, match=message):
        read_ledger(ledger_file)
    assert ledger_file.read_bytes() == damaged and noise.draws == 0
    # the lock was released: the refusal is about the file, not a stale lock
    with pytest.raises(LedgerError, match=message):
        open_ledger(ledger_file, TABLE, BUDGET)


def test_ledger_of_another_table_or_budget_is_refused(ledger_file):
    original = ledger_file.read_bytes()
    noise = CountingNoise()
    with pytest.raises(LedgerError, match="belongs to table") as info:
        serve_session(ledger_file, "id:another-table", BUDGET, "s2", noise=noise)
    one_line(info)
    with pytest.raises(LedgerError, match="lifetime budget cannot be changed") as info:
        serve_session(ledger_file, TABLE, Budget(2.0, 1e-5), "s2", noise=noise)
    one_line(info)
    assert ledger_file.read_bytes() == original and noise.draws == 0


@pytest.mark.parametrize("epsilon,delta,n_rows,message", [
    (-1.0, 1e-5, 100, "epsilon"), (math.nan, 1e-5, 100, "epsilon"), (math.inf, 1e-5, 100, "epsilon"),
    (0.0, 1e-5, 100, "epsilon"), (1.0, 0.0, 100, "delta"), (1.0, 0.01, 100, "1/n"),
    (1.0, 0.02, 100, "1/n"),
])
def test_bad_budgets_are_one_line_errors_with_nothing_released_or_lost(
        ledger_file, tmp_path, epsilon, delta, n_rows, message):
    original = ledger_file.read_bytes()
    noise = CountingNoise()
    with pytest.raises(ValueError, match=message) as info:
        serve_session(ledger_file, TABLE, Budget(epsilon, delta), "s2", n_rows=n_rows, noise=noise)
    one_line(info)
    fresh = tmp_path / "fresh.ledger"
    with pytest.raises(ValueError, match=message):
        serve_session(fresh, TABLE, Budget(epsilon, delta), "s1", n_rows=n_rows, noise=noise)
    assert ledger_file.read_bytes() == original and not fresh.exists() and noise.draws == 0


def test_missing_directory_and_missing_file():
    with pytest.raises(LedgerError, match="does not exist"):
        open_ledger("/nonexistent-dir/t.ledger", TABLE, BUDGET)
    with pytest.raises(LedgerError, match="does not exist"):
        read_ledger("/nonexistent-dir/t.ledger")
    with pytest.raises(LedgerError, match="is a directory, not a ledger file"):  # `ledger show DIR`
        read_ledger("/tmp")


def test_table_fingerprint():
    ids, X = ["a", "b", "c"], np.arange(6.0).reshape(3, 2)
    fp = table_fingerprint(ids, X)
    assert fp.startswith("sha256:") and fp == table_fingerprint(list(ids), X.copy())
    X2 = X.copy()
    X2[1, 1] += 1e-9
    others = {table_fingerprint(ids, X2), table_fingerprint(["a", "b", "d"], X),
              table_fingerprint(ids[::-1], X), table_fingerprint(ids, X[:, :1])}
    assert fp not in others and len(others) == 4
    # the same rows in another order are the same table (a shuffled export is not a new budget)
    assert table_fingerprint(ids[::-1], X[::-1]) == fp
    assert table_fingerprint(ids, X[:, ::-1]) == fp  # and its columns in another order (a re-export)
    with pytest.raises(ValueError, match="one row per id"):
        table_fingerprint(["a"], X)


# --- securegal ledger show -------------------------------------------------------------------

def _cli(argv, capsys):
    parser = argparse.ArgumentParser()
    ledger_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_ledger_show(ledger_file, capsys):
    with open_ledger(ledger_file, TABLE, BUDGET) as led:
        led.record([rel(2, z=9.0)], "s2")
        led.store_output("sessions", 3)  # one intersection that never trained counts too (review N)
        spent = led.epsilon_spent
    text = _cli(["ledger", "show", str(ledger_file), "--releases"], capsys)
    assert TABLE in text and f"{spent:.4f}" in text and f"{1.0 - spent:.4f}" in text
    assert "sessions    3 served (each private set intersection counts" in text
    assert "s1" in text and "s2" in text and "pred" in text
    doc = json.loads(_cli(["ledger", "show", str(ledger_file), "--json"], capsys))
    assert doc["epsilon_spent"] == spent and [s["session"] for s in doc["sessions"]] == ["s1", "s2"]
    assert doc["epsilon_remaining"] == pytest.approx(1.0 - spent)
    assert len(doc["releases"]) == 3 and doc["releases"][1]["sensitivity"] == 0.02


def test_ledger_show_counts_only_never_disclosed_training_rows_as_covered(ledger_file, capsys):
    """Session 1 trains on rows 0-199 and discloses 200-370 by predict replies; session 2 trains
    on 241-568, 130 of them disclosed before: 398 rows are under the guarantee, not 528."""
    with open_ledger(ledger_file, TABLE, BUDGET) as led:
        table = TablePrivacy(led, ColumnSpec(lower=[0.0], upper=[1.0]))
        table.record_training(np.arange(200), 569)
        table.record_disclosure(np.arange(200, 371), 569, "s1")
        table.record_training(np.arange(241, 569), 569)
        assert table.row_roles(569) == {"trained": 528, "disclosed": 171}
    text = _cli(["ledger", "show", str(ledger_file)], capsys)
    assert ("rows        398 of 569 under the guarantee (trained on, never disclosed), 130 trained on but "
            "disclosed by predict replies, 41 disclosed only\n") in text


def test_a_row_is_disclosed_by_one_session_only_unless_the_policy_says_again(ledger_file):
    """Review A M1: each session's predictions add projections of the same validation and test
    rows (R^2 0.33-0.60 after one run, 0.97 after four with the same split). Under predict =
    "once" a later session, also after a restart, is refused the rows an earlier one disclosed;
    within a session they can be asked again (other rounds)."""
    with open_ledger(ledger_file, TABLE, BUDGET) as led:
        table = TablePrivacy(led, ColumnSpec(lower=[0.0], upper=[1.0]))
        table.record_training(np.arange(50), 100)
        table.record_disclosure(np.arange(50, 70), 100, "s1")
        table.record_disclosure(np.arange(60, 80), 100, "s1")  # the same session: asked again, and more
        with pytest.raises(PolicyRefused, match="30 of the 30 requested rows were disclosed by an earlier session"):
            table.record_disclosure(np.arange(50, 80), 100, "s2")
        table.record_disclosure(np.arange(80, 90), 100, "s2")  # rows nobody disclosed yet
        with pytest.raises(PolicyRefused, match="were training rows"):
            table.record_disclosure(np.arange(45, 55), 100, "s2", again=True)  # never, whatever the policy
        table.record_disclosure(np.arange(50, 90), 100, "s2", again=True)  # predict = "non-training"
    with open_ledger(ledger_file, TABLE, BUDGET) as led:  # a restart keeps what was disclosed
        table = TablePrivacy(led, ColumnSpec(lower=[0.0], upper=[1.0]))
        with pytest.raises(PolicyRefused, match="1 of the 2 requested rows were disclosed by an earlier session") as info:
            table.record_disclosure(np.array([89, 95]), 100, "s3")
        one_line(info)
        assert table.row_roles(100) == {"trained": 50, "disclosed": 40}  # a refused request records nothing


def test_ledger_show_refuses_malformed_row_roles(ledger_file):
    with open_ledger(ledger_file, TABLE, BUDGET) as led:
        table = TablePrivacy(led, ColumnSpec(lower=[0.0], upper=[1.0]))
        table.record_training(np.arange(10), 100)
        led.store_output("rows_disclosed", {"rows": 50, "count": 1, "bitmap": "gA=="})
    with pytest.raises(LedgerError, match="malformed row roles") as info:
        ledger_cmd.format_ledger(read_ledger(ledger_file))
    one_line(info)


# --- the DP trainer on a table's ledger --------------------------------------------------------

def test_dp_trainer_with_a_ledger_spends_the_table_budget(tmp_path):
    import warnings
    from types import SimpleNamespace

    from securegal.privacy.dp.mechanisms import InsecureNoiseWarning
    from securegal.privacy.dp.trainer import DPTrainer

    rng = np.random.default_rng(0)
    X, r = rng.normal(size=(200, 4)), rng.normal(size=(200, 2))
    setup = SimpleNamespace(rounds=3, n_outputs=2, residuals="plain")
    config = DPConfig(1.0, 1e-5, seed=1)

    def trainer(led, session):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureNoiseWarning)
            return DPTrainer(config, ledger=led, session=session, session_epsilon=0.4)

    with open_ledger(tmp_path / "t.ledger", TABLE, BUDGET, "pld") as led:
        for session in ("s1", "s2"):
            tr = trainer(led, session)
            tr.setup(X, setup)  # reserves the whole plan before anything is released
            assert led.epsilon_spent == pytest.approx(0.4 if session == "s1" else 0.8, rel=1e-3)
            for t in (1, 2, 3):
                tr.fit_round(t, r)
            with pytest.raises(BudgetExceeded):  # nothing beyond the reserved plan
                tr.fit_round(4, r)
            assert tr.report()["ledger"]["lifetime_epsilon_spent"] == led.epsilon_spent
        late = trainer(led, "s3")
        with pytest.raises(BudgetExceeded, match="left 0.2"):
            late.setup(X, setup)
        assert late.accountant is None and late.models == []
        assert [(e.session, e.release.what, e.release.steps) for e in led.entries] == [
            (s, k, n) for s in ("s1", "s2") for k, n in (("gram", 1), ("stat", 3), ("pred", 3))]
        assert led.epsilon_spent <= 1.0
    with pytest.raises(ValueError, match="session"):
        DPTrainer(config, ledger=Ledger(TABLE, BUDGET))


def test_concurrent_records_lose_nothing_and_never_overspend(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "t.ledger"
    with open_ledger(path, TABLE, BUDGET, "pld") as led:
        def spend(i):
            try:
                return led.record([rel(i, z=12.0)], f"s{i}")
            except BudgetExceeded:
                return None

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(spend, range(40)))
        accepted = [r for r in results if r is not None]
        assert 0 < len(accepted) < 40  # the budget ran out part-way
        assert len(led.entries) == len(accepted) == len(read_ledger(path).entries)
        assert led.epsilon_spent == pytest.approx(epsilon_of(led.releases, 1e-5, "pld"))
        assert led.epsilon_spent <= 1.0


def test_read_ledger_is_read_only(ledger_file):
    snap = read_ledger(ledger_file)
    with pytest.raises(LedgerError, match="read-only"):
        snap.record([rel(3, z=50.0)], "s9")
    assert len(read_ledger(ledger_file).entries) == len(snap.entries) == 2


def test_a_second_ledger_of_one_table_in_its_directory_is_refused(ledger_file):
    """The same table under another party name (``--ledger DIR`` names files by party) does not
    get a fresh lifetime budget; another table in the same directory does get its own ledger."""
    original = ledger_file.read_bytes()
    (ledger_file.parent / "notes.json").write_text('{"not": "a ledger"}')
    (ledger_file.parent / "broken.json").write_text("{")
    renamed = ledger_file.parent / "bank2.securegal-ledger.json"
    with pytest.raises(LedgerError, match=f"already has its ledger at {ledger_file}") as info:
        open_ledger(renamed, TABLE, BUDGET)
    one_line(info)
    assert not renamed.exists() and ledger_file.read_bytes() == original
    assert not Path(f"{renamed}.lock").exists()  # nothing left behind by the refusal (review A C1)
    with open_ledger(ledger_file.parent / "other.securegal-ledger.json", "id:another-table", BUDGET) as other:
        assert other.epsilon_spent == 0


def test_a_link_to_a_ledger_is_the_same_ledger_with_the_same_lock(ledger_file):
    """A symbolic link is followed: one lock and one file whatever the name (a link used to get a
    lock of its own and was replaced by a copy at the first write); a hard link is refused."""
    elsewhere = ledger_file.parent / "app"
    elsewhere.mkdir()
    link = elsewhere / "ledger.json"
    link.symlink_to(ledger_file)
    with open_ledger(link, TABLE, BUDGET) as led:
        with pytest.raises(LedgerError, match="in use by another process"):
            open_ledger(ledger_file, TABLE, BUDGET)
        led.record([rel(2)], "s2")
    assert link.is_symlink() and len(read_ledger(ledger_file).entries) == 3
    hard = ledger_file.parent / "hard.json"
    os.link(ledger_file, hard)
    for name in (ledger_file, hard):
        with pytest.raises(LedgerError, match="2 names \\(hard links\\)") as info:
            open_ledger(name, TABLE, BUDGET)
        one_line(info)
    hard.unlink()
    with open_ledger(ledger_file, TABLE, BUDGET) as led:
        assert len(led.entries) == 3


def test_a_ledger_changed_behind_its_process_is_not_written_over(ledger_file):
    """Removing the lock file while a party runs let a second process in, and the two overwrote
    each other's releases; restoring an older copy under a running party went unnoticed. Both are
    refused at the next record, with the file as the other writer left it."""
    with open_ledger(ledger_file, TABLE, BUDGET) as led:
        (ledger_file.parent / "t.ledger.lock").unlink()
        with open_ledger(ledger_file, TABLE, BUDGET) as second:  # the lock is gone: it gets in
            second.record([rel(2, z=50.0)], "s2")
            after_second = ledger_file.read_bytes()
            with pytest.raises(LedgerError, match="lock file .* was removed or replaced") as info:
                led.record([rel(3, z=50.0)], "s3")
            one_line(info)
            assert ledger_file.read_bytes() == after_second
    older = ledger_file.read_bytes()
    with open_ledger(ledger_file, TABLE, BUDGET) as led:
        led.record([rel(4, z=50.0)], "s4")
        ledger_file.write_bytes(older)  # a backup restored under the running party
        with pytest.raises(LedgerError, match="changed by something other than this process"):
            led.record([rel(5, z=50.0)], "s5")
        assert ledger_file.read_bytes() == older


def test_a_process_that_gets_in_between_the_check_and_the_write_fails_the_first_one(ledger_file, monkeypatch):
    """The check before a write and the write were two steps: a second process that got the
    table between them (its lock file removed) was not noticed. The first process now checks
    again after writing and fails the record, so its caller releases nothing."""
    from securegal.privacy.dp import ledger as ledger_mod
    write = ledger_mod._atomic_write
    with open_ledger(ledger_file, TABLE, BUDGET) as led:
        before = (led.entries, led.epsilon_spent)

        def and_a_second_process_gets_in(path, data):
            write(path, data)
            monkeypatch.setattr(ledger_mod, "_atomic_write", write)
            (ledger_file.parent / "t.ledger.lock").unlink()
            with open_ledger(ledger_file, TABLE, BUDGET) as second:
                second.record([rel(2, z=50.0)], "s2")

        monkeypatch.setattr(ledger_mod, "_atomic_write", and_a_second_process_gets_in)
        with pytest.raises(LedgerError, match="lock file .* was removed or replaced") as info:
            led.record([rel(3, z=50.0)], "s3")
        one_line(info)
        assert (led.entries, led.epsilon_spent) == before
    assert [e.session for e in read_ledger(ledger_file).entries][-1] == "s2"


def test_a_copy_of_a_ledger_beside_it_is_refused_whichever_is_opened(ledger_file):
    """A copy under another name was accepted once it existed (the one-ledger check ran only when
    a ledger was created): each name then carried the table's budget afresh."""
    copy = ledger_file.parent / "second.json"
    copy.write_bytes(ledger_file.read_bytes())
    for name, other in ((ledger_file, copy), (copy, ledger_file)):
        with pytest.raises(LedgerError, match=f"already has its ledger at {other}: refusing to serve it") as info:
            open_ledger(name, TABLE, BUDGET)
        one_line(info)


def test_a_ledger_reformatted_by_hand_still_counts_as_the_tables_ledger(ledger_file):
    """The one-ledger check read only a ledger's first 256 bytes: with its keys sorted the format
    name moved further down and a second ledger of the table could be created beside it."""
    doc = json.loads(ledger_file.read_text())
    ledger_file.write_text(json.dumps(doc, sort_keys=True, indent=4))
    assert read_ledger(ledger_file).epsilon_spent > 0
    with pytest.raises(LedgerError, match="already has its ledger at"):
        open_ledger(ledger_file.parent / "fresh.json", TABLE, BUDGET)


def test_a_second_ledger_is_found_under_any_name_and_encoding(ledger_file):
    """Verification of the review's fixes: a ledger named like a temporary file (``*.tmp``) was
    skipped by the directory check, and so was one re-saved with a BOM or as UTF-16, which the
    ledger reader itself accepts."""
    doc = json.loads(ledger_file.read_text())
    for name, data in (("copy.tmp", ledger_file.read_bytes()),
                       ("bom.json", b"\xef\xbb\xbf" + ledger_file.read_bytes()),
                       ("utf16.json", json.dumps(doc, indent=1).encode("utf-16"))):
        other = ledger_file.parent / name
        other.write_bytes(data)
        assert read_ledger(other).epsilon_spent == pytest.approx(read_ledger(ledger_file).epsilon_spent)
        with pytest.raises(LedgerError, match=f"already has its ledger at {other}"):
            open_ledger(ledger_file, TABLE, BUDGET)
        other.unlink()
    for name in ("t.ledger.lock", "x.lock", ".t.ledger.abc.tmp"):
        with pytest.raises(LedgerError, match="may not be named like a lock file"):
            open_ledger(ledger_file.parent / name, "id:another", BUDGET)


def test_two_ledgers_of_one_table_cannot_be_created_at_once(tmp_path):
    """Creating a ledger (look for another of the table, then write) is one step per directory."""
    import threading

    for trial in range(10):  # in one directory, and (the machine's registry) in two
        directory = tmp_path / f"t{trial}"
        directory.mkdir()
        names = ("a.json", "b.json") if trial % 2 else ("a.json", "b/b.json")
        (directory / "b").mkdir()
        outcomes, barrier = [], threading.Barrier(2)

        def create(name):
            barrier.wait()
            try:
                open_ledger(directory / name, f"{TABLE}/{trial}", BUDGET).close()
                outcomes.append("created")
            except LedgerError:
                outcomes.append("refused")

        threads = [threading.Thread(target=create, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["created", "refused"]


def test_a_ledger_written_under_the_earlier_fingerprint_is_taken_over(tmp_path):
    """Fingerprints used to depend on the rows' order; a ledger written then is found by the
    table's earlier fingerprint and rewritten under the new one, its history kept."""
    ids, X = ["p2", "p1", "p3"], np.arange(6.0).reshape(3, 2)
    fingerprint, formerly = table_identity(ids, X)
    path = tmp_path / "t.ledger"
    with open_ledger(path, formerly[0], BUDGET) as led:
        led.record([rel(1)], "s1")
    with pytest.raises(LedgerError, match="belongs to table"):
        open_ledger(path, fingerprint, BUDGET)
    with open_ledger(path, fingerprint, BUDGET, formerly=formerly) as led:
        assert len(led.entries) == 1
    assert read_ledger(path).table == fingerprint == table_identity(ids[::-1], X[::-1])[0]


# --- settling a session: what it reserved and did not release is given back -------------------

PLAN = [Release(0, "gram", 12.0, 1.0, 1, 1.2), Release(0, "stat", 9.0, 1.0, 3, 1.8),
        Release(0, "pred", 40.0, 1.0, 3, 0.02)]  # a reservation: gram x1, stat x3, pred x3


def test_a_session_that_released_nothing_gets_its_whole_reservation_back(tmp_path):
    path = tmp_path / "t.ledger"
    with open_ledger(path, TABLE, BUDGET) as led:
        led.record([rel(0, "std_mean", 20.0)], "s1")  # paid once, outside any reservation
        kept = led.epsilon_spent
        led.reserve(PLAN, "s1")
        assert led.epsilon_spent > kept
        assert led.settle("s1", [], "finished") == pytest.approx(epsilon_of(
            [rel(0, "std_mean", 20.0)] + PLAN, 1e-5, "pld") - kept)
        assert led.epsilon_spent == pytest.approx(kept)
        assert led.settle("s1", [], "again") is None  # settled once
    back = read_ledger(path)  # persisted: the entries stay, marked returned, and the refund says why
    assert len(back.entries) == 4 and [back.returned(i) for i in range(4)] == [False, True, True, True]
    assert back.epsilon_spent == pytest.approx(kept)
    (refund,) = back.refunds
    assert (refund.session, refund.entries, refund.reason) == ("s1", (1, 2, 3), "finished")
    (s1,) = back.spent_by_session()
    assert (s1.releases, s1.returned) == (1, 3)


def test_a_session_that_stopped_early_keeps_what_it_released_and_no_more():
    led = Ledger(TABLE, Budget(3.0, 1e-5), "rdp")
    led.record([rel(1, z=7.0)], "s0")
    led.reserve(PLAN, "s1")
    released = [Release(1, "gram", 12.0), Release(1, "stat", 9.0), Release(1, "pred", 40.0)]  # round 1 of 3
    led.settle("s1", released, "expired")
    expected = [rel(1, z=7.0), Release(1, "gram", 12.0), Release(1, "stat", 9.0), Release(1, "pred", 40.0)]
    assert led.epsilon_spent == pytest.approx(epsilon_of(expected, 1e-5, "rdp"), rel=1e-12)
    assert [e.release.sensitivity for e in led.entries[-3:]] == [1.2, 1.8, 0.02]  # the reserved sensitivities
    assert [e.release.what for i, e in enumerate(led.entries) if not led.returned(i)] == ["stat", "gram", "stat", "pred"]


def test_a_session_that_released_its_whole_plan_is_left_as_it_is(tmp_path):
    path = tmp_path / "t.ledger"
    with open_ledger(path, TABLE, BUDGET) as led:
        led.reserve(PLAN, "s1")
        before = path.read_bytes()
        released = [Release(1, "gram", 12.0)] + [Release(t, k, z) for t in (1, 2, 3)
                                                 for k, z in (("stat", 9.0), ("pred", 40.0))]
        assert led.settle("s1", released, "finished") is None
        assert path.read_bytes() == before and led.refunds == ()


@pytest.mark.parametrize("released,match", [
    ([Release(1, "stat", 9.0)] * 4, "released more stat"),
    ([Release(1, "sgd", 9.0)], "does not hold"),
    ([Release(1, "stat", 8.0)], "does not hold"),
])
def test_a_settlement_that_does_not_match_the_reservation_changes_nothing(released, match):
    led = Ledger(TABLE, BUDGET, "pld")
    led.reserve(PLAN, "s1")
    before = (led.entries, led.epsilon_spent)
    with pytest.raises(ValueError, match=match):
        led.settle("s1", released, "finished")
    assert (led.entries, led.epsilon_spent, led.refunds) == (*before, ())
    assert led.settle("s1", [], "finished") > 0  # the reservation is still there to settle


def test_only_the_process_that_reserved_can_settle(tmp_path):
    """After a restart nobody knows what the crashed session released: its reservation counts."""
    path = tmp_path / "t.ledger"
    with open_ledger(path, TABLE, BUDGET) as led:
        led.reserve(PLAN, "s1")
        spent = led.epsilon_spent
    with open_ledger(path, TABLE, BUDGET) as led:
        assert led.settle("s1", [], "party stopped") is None and led.epsilon_spent == spent


@pytest.mark.parametrize("refunds", [
    [{"session": "s2", "time": "t", "entries": [0], "reason": "x"}],  # an entry of another session
    [{"session": "s2", "time": "t", "entries": [1, 1], "reason": "x"}],  # one entry twice
    [{"session": "s2", "time": "t", "entries": [7], "reason": "x"}],  # no such entry
    [{"session": "s2", "time": "t", "entries": [], "reason": "x"}],
    [{"session": "s2", "entries": [1], "reason": "x"}],
])
def test_a_ledger_with_a_bad_refund_is_refused_and_kept(ledger_file, refunds):
    """A refund that would uncount entries it does not own is refused like any corruption (the
    checksum is recomputed here). Entry 0 is session s1's, entry 1 session s2's."""
    first, second = json.loads(ledger_file.read_bytes())["entries"]
    _rewrite(ledger_file, entries=[first, {**second, "session": "s2"}], refunds=refunds)
    damaged = ledger_file.read_bytes()
    with pytest.raises(LedgerError, match="malformed") as info:
        open_ledger(ledger_file, TABLE, BUDGET)
    one_line(info)
    assert ledger_file.read_bytes() == damaged


def test_a_version_1_ledger_is_read_and_rewritten_as_version_2(ledger_file):
    doc = json.loads(ledger_file.read_bytes())
    _rewrite(ledger_file, version=1, refunds=None)
    body = json.loads(ledger_file.read_bytes())
    del body["refunds"], body["checksum"]
    ledger_file.write_text(json.dumps({**body, "checksum": _checksum(body)}))
    with open_ledger(ledger_file, TABLE, BUDGET) as led:
        assert led.epsilon_spent == pytest.approx(epsilon_of([e.release for e in read_ledger(ledger_file).entries],
                                                             1e-5, "pld"))
        led.record([rel(2, z=9.0)], "s2")
    after = json.loads(ledger_file.read_bytes())
    assert after["version"] == LEDGER_VERSION == 2 and after["refunds"] == [] and len(after["entries"]) == 3
    assert doc["entries"] == after["entries"][:2]


def test_ledger_show_lists_returned_reservations(tmp_path, capsys):
    path = tmp_path / "t.ledger"
    with open_ledger(path, TABLE, BUDGET) as led:
        led.reserve(PLAN, "s1")
        led.settle("s1", [Release(1, "gram", 12.0), Release(1, "stat", 9.0)], "expired")
    text = _cli(["ledger", "show", str(path), "--releases"], capsys)
    assert "returned    3 reserved release(s) of session s1" in text and "(expired)" in text
    assert text.count("(returned)") == 3
    doc = json.loads(_cli(["ledger", "show", str(path), "--json"], capsys))
    assert [r["returned"] for r in doc["releases"]] == [True, True, True, False, False]
    assert doc["sessions"][0]["releases"] == 2 and doc["sessions"][0]["returned"] == 3


def test_a_new_ledger_with_a_large_lifetime_epsilon_is_warned_about(tmp_path, caplog):
    """A lifetime budget is fixed once its ledger exists: --label-epsilon 1e9 (a typo for 8?) was
    accepted without a word (review N)."""
    with open_ledger(tmp_path / "big.json", TABLE, Budget(1e9, 1e-5)):
        pass
    assert "created with lifetime epsilon 1e+09, which protects little and can never be changed" in caplog.text
    caplog.clear()
    with open_ledger(tmp_path / "small" , TABLE + "x", Budget(8.0, 1e-5)):
        pass
    assert "protects little" not in caplog.text


def test_a_lost_ledger_a_directory_and_a_new_one_are_not_silent(tmp_path, caplog):
    """Review H F3, F5, F6: a deleted ledger was silently recreated at zero spend although its
    lock file showed that one existed; a new ledger (a mistyped path: a fresh lifetime budget)
    said nothing; a directory given as the ledger gave a misleading hard-link error and left
    lock files in its parent."""
    import logging

    path = tmp_path / "t.securegal-ledger.json"
    with caplog.at_level(logging.WARNING, logger="securegal.privacy.dp.ledger"):
        serve_session(path, TABLE, BUDGET, "s1")
    assert any("new ledger" in r.getMessage() and "not counted" in r.getMessage() for r in caplog.records)
    path.unlink()
    with pytest.raises(LedgerError, match="does not exist, but its lock file does.*restore it"):
        open_ledger(path, TABLE, BUDGET)
    assert not path.exists()
    (tmp_path / "t.securegal-ledger.json.lock").unlink()  # the operator starts afresh, knowingly
    serve_session(path, TABLE, BUDGET, "s2")
    (tmp_path / "sub").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(LedgerError, match="is a directory: name the ledger file"):
        open_ledger(tmp_path / "sub", TABLE, BUDGET)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_party_toml_ledger_in_a_missing_directory_is_refused(tmp_path):
    """Review H F3: the party made a mistyped ledger directory, and with it a fresh budget."""
    from securegal.deploy.party_process import PartyConfig, build_party
    from securegal.errors import ConfigError

    from .test_table_budget import _party_file

    cfg = PartyConfig.load(_party_file(tmp_path, {"epsilon": 1.0, "ledger": str(tmp_path / "ledgrs" / "p.json")}))
    with pytest.raises(ConfigError, match="directory .*ledgrs does not exist"):
        build_party(cfg)
    assert not (tmp_path / "ledgrs").exists()


def test_a_second_ledger_of_a_table_elsewhere_on_the_machine_is_refused(tmp_path):
    """Review H F4: one table served by three processes with ledgers in three directories spent
    its lifetime budget three times. This user's registry on the machine keeps where each
    table's ledger is: a second one elsewhere is refused; a moved ledger is found at its new path."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "t.json", tmp_path / "b" / "t.json"
    serve_session(first, TABLE, BUDGET, "s1")
    with pytest.raises(LedgerError, match=f"already has its ledger at {re.escape(str(first))}: refusing a second"):
        open_ledger(second, TABLE, BUDGET)
    assert not second.exists() and not (tmp_path / "b" / "t.json.lock").exists()
    serve_session(tmp_path / "b" / "other.json", "id:another/table", BUDGET, "s1")  # another table: its own
    os.replace(first, second)  # the operator moves the ledger (its lock file stays behind, unused)
    with open_ledger(second, TABLE, BUDGET) as led:
        assert led.epsilon_spent > 0  # the moved ledger, with its history
    with pytest.raises(LedgerError, match="already has its ledger at .*b/t.json"):
        open_ledger(tmp_path / "a" / "again.json", TABLE, BUDGET)
    # verifier I: deleted (or moved and not opened since), a fresh ledger elsewhere was a fresh budget
    second.unlink()
    with pytest.raises(LedgerError, match=r"ledger was at .*b/t.json, which is gone: .*remove .*\.json to start"):
        open_ledger(tmp_path / "a" / "again.json", TABLE, BUDGET)
    assert not (tmp_path / "a" / "again.json").exists()
