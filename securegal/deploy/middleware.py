"""Behaviour added to messages on their way, composed around the party and the messenger.

- :func:`privacy_reports`: a DP party's SetupAck, FitReply and FinishAck carry its accountant's
  report (``info["privacy"]``, one JSON string), so the label owner's metrics.json holds what
  the party spent.
- :class:`ReportCollector`: the label owner's side; keeps each party's latest report and turns a
  malformed one into a ProtocolError for that reply.
- :func:`same_builtin_dataset`: a party serving a built-in (demo) dataset refuses a label owner
  that names another one.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Callable

import numpy as np

from .. import messages as m
from ..errors import PolicyRefused, ProtocolError
from ..privacy.dp.accountant import ACCOUNTANTS
from .config import BUILTIN_DATASET_OPTION

log = logging.getLogger(__name__)

# Key of the replies' info map under which a DP party sends its accountant report.
PRIVACY_INFO = "privacy"
PRIVACY_REPORT_KEYS = ("epsilon_budget", "epsilon_spent", "delta", "accountant", "noise_multiplier", "releases")

Handler = Callable[[m.Envelope], m.Body]


def privacy_reports(handle: Handler, report: Callable[[], dict]) -> Handler:
    """Wrap a party's ``handle`` so that its replies carry ``report()`` (the trainer's privacy block)."""

    def wrapped(env: m.Envelope) -> m.Body:
        reply = handle(env)
        if isinstance(reply, (m.SetupAck, m.FitReply, m.FinishAck)):
            block = report()
            if not block:  # no session trained yet (e.g. Finish right after alignment): nothing to report
                return reply
            table = block.get("ledger") or {}
            if "lifetime_epsilon_spent" in table:
                log.info("privacy budget: this session's releases epsilon %.4g; the table's lifetime epsilon "
                         "%.4g of %.4g (delta %.3g), %.4g left", block["epsilon_spent"],
                         table["lifetime_epsilon_spent"], table["lifetime_epsilon_budget"], block["delta"],
                         table["lifetime_epsilon_remaining"])
            else:
                log.info("privacy budget: epsilon %.4g spent of %.4g (delta %.3g), %.4g left",
                         block["epsilon_spent"], block["epsilon_budget"], block["delta"],
                         block["epsilon_budget"] - block["epsilon_spent"])
            raw = json.dumps(block, sort_keys=True, allow_nan=False)
            reply = replace(reply, info={**reply.info, PRIVACY_INFO: raw})
        return reply

    return wrapped


MAX_REPORTED_RELEASES = 100_000


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def read_privacy_report(raw: str, party: str) -> dict:
    """A party's ``info["privacy"]`` as its metrics.json block; ProtocolError, naming the party and
    the bad field, if malformed or impossible (a non-DP party could otherwise fake one)."""
    try:
        report = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError(f"privacy report of {party!r} is not JSON (or nested too deeply)") from None
    if not isinstance(report, dict) or not set(PRIVACY_REPORT_KEYS) <= set(report):
        missing = sorted(set(PRIVACY_REPORT_KEYS) - set(report if isinstance(report, dict) else {}))
        raise ProtocolError(f"privacy report of {party!r} lacks {missing}")
    numbers = [report[k] for k in ("epsilon_budget", "epsilon_spent", "delta")]
    if not all(_finite(v) for v in numbers) or not isinstance(report["releases"], list):
        raise ProtocolError(f"privacy report of {party!r} has non-numeric epsilon/delta or no release list")
    budget, spent, delta = numbers
    problems = []
    if not 0 < budget:
        problems.append(f"epsilon_budget={budget!r} is not positive")
    if not 0 <= spent <= budget * (1 + 1e-9):
        problems.append(f"epsilon_spent={spent!r} is not in [0, epsilon_budget]")
    if not 0 < delta < 1:
        problems.append(f"delta={delta!r} is not in (0, 1)")
    if report["accountant"] not in ACCOUNTANTS:
        problems.append(f"accountant={str(report['accountant'])[:40]!r} is not one of {', '.join(ACCOUNTANTS)}")
    if len(report["releases"]) > MAX_REPORTED_RELEASES or not all(isinstance(r, dict) for r in report["releases"]):
        problems.append(f"releases is not a list of at most {MAX_REPORTED_RELEASES} records")
    table = report.get("ledger")
    if table is not None and not (isinstance(table, dict) and all(
            _finite(table.get(k)) for k in ("lifetime_epsilon_budget", "lifetime_epsilon_spent",
                                            "lifetime_epsilon_remaining"))):
        problems.append("its ledger block lacks finite lifetime_epsilon_budget/spent/remaining")
    if problems:
        raise ProtocolError(f"privacy report of {party!r} refused: {'; '.join(problems)}")
    return report


class ReportCollector:
    """Reply middleware for the label owner's messenger: keeps each party's latest privacy report
    in ``privacy`` and the last exchange's outcomes in ``last``."""

    def __init__(self):
        self.privacy: dict[str, dict] = {}
        self.last: dict = {}

    def __call__(self, outcomes: dict) -> dict:
        for party, reply in outcomes.items():
            raw = None if isinstance(reply, Exception) else getattr(reply, "info", {}).get(PRIVACY_INFO)
            if raw is not None:
                try:
                    self.privacy[party] = read_privacy_report(raw, party)
                except ProtocolError as exc:
                    outcomes[party] = exc
        self.last = outcomes
        return outcomes

    def report(self) -> dict:
        return dict(self.privacy)


def same_builtin_dataset(handle: Handler, mine: str) -> Handler:
    """Wrap the handler of a party serving built-in dataset ``mine``: a Setup whose label owner
    names another built-in dataset is refused before the party sees it (built-in rows are keyed by
    row number, so any two built-in datasets would align). A misconfiguration check, not a
    security boundary: a label owner that names none is served as before."""

    def wrapped(env: m.Envelope) -> m.Body:
        if isinstance(env.body, m.Setup):
            theirs = dict(env.body.options or {}).get(BUILTIN_DATASET_OPTION)
            if theirs is not None and theirs != mine:
                raise PolicyRefused(f"this party serves built-in dataset {mine!r}, the label owner's is {theirs!r}")
        return handle(env)

    return wrapped
