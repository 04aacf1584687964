"""``securegal ledger show PATH``: what a table's privacy ledger spent, per session, and what is left."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..privacy.dp.ledger import LedgerError, read_ledger
from ..privacy.dp.table import row_mask


def add_parser(sub) -> None:
    ledger = sub.add_parser("ledger", help="inspect a table's privacy ledger")
    actions = ledger.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print what was spent, per session, and what is left")
    show.add_argument("path", type=Path, metavar="PATH", help="the ledger file (party.toml's ledger)")
    show.add_argument("--json", action="store_true", help="print the summary as JSON")
    show.add_argument("--releases", action="store_true", help="also list every release")
    show.set_defaults(func=run)


def format_ledger(ledger, releases: bool = False) -> str:
    """Human-readable summary of a :class:`~securegal.privacy.dp.ledger.Ledger`."""
    b = ledger.budget
    lines = [f"table       {ledger.table}",
             f"budget      epsilon {b.epsilon:g}, delta {b.delta:g} (lifetime, {ledger.accountant})",
             f"spent       {ledger.epsilon_spent:.4f}",
             f"left        {ledger.remaining():.4f}"]
    roles = _row_roles(ledger)
    if roles is not None:
        n, trained, disclosed = roles
        lines.append(f"rows        {int((trained & ~disclosed).sum())} of {n} under the guarantee (trained on, "
                     f"never disclosed), {int((trained & disclosed).sum())} trained on but disclosed by "
                     f"predict replies, {int((disclosed & ~trained).sum())} disclosed only")
    served = ledger.output("sessions")
    if isinstance(served, int) and not isinstance(served, bool):
        lines.append(f"sessions    {served} served (each private set intersection counts, as the policy's "
                     "max_sessions does)")
    sessions = ledger.spent_by_session()
    if sessions:
        lines += ["", f"{'session':<24} {'releases':>8} {'returned':>8} {'eps alone':>10} {'eps after':>10}  "
                  f"{'first':<25} last"]
        for s in sessions:
            lines.append(f"{s.session[:24]:<24} {s.releases:>8} {s.returned:>8} {s.epsilon_alone:>10.4f} "
                         f"{s.epsilon_after:>10.4f}  {s.first:<25} {s.last}")
    else:
        lines.append("no releases yet")
    for r in ledger.refunds:
        lines.append(f"returned    {len(r.entries)} reserved release(s) of session {r.session[:24]} at {r.time} "
                     f"({r.reason}): released less than reserved")
    if releases and ledger.entries:
        lines += ["", f"{'session':<24} {'round':>5} {'kind':<10} {'sensitivity':>11} "
                  f"{'noise mult':>10} {'rate':>6} {'steps':>5}  time"]
        for i, e in enumerate(ledger.entries):
            r = e.release
            lines.append(f"{e.session[:24]:<24} {r.round:>5} {r.what[:10]:<10} {r.sensitivity:>11.4g} "
                         f"{r.noise_multiplier:>10.4g} {r.sample_rate:>6.3g} {r.steps:>5}  {e.time}"
                         + ("  (returned)" if ledger.returned(i) else ""))
    return "\n".join(lines)


def _row_roles(ledger) -> tuple[int, np.ndarray, np.ndarray] | None:
    """The table's row count and its trained and disclosed rows as boolean masks (docs/privacy.md
    section 6), or None when the ledger holds no row roles."""
    stored = [ledger.output(f"rows_{role}") for role in ("trained", "disclosed")]
    if not any(stored):
        return None
    sizes = {s.get("rows") if isinstance(s, dict) else None for s in stored if s}
    n = next(iter(sizes))
    try:
        if len(sizes) > 1 or isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"table sizes {sorted(map(str, sizes))}")
        masks = [row_mask(s or None, n) for s in stored]
    except (ConfigError, KeyError, TypeError, ValueError) as exc:  # binascii.Error is a ValueError
        raise LedgerError(f"ledger of table {ledger.table[:40]} has malformed row roles ({exc})") from None
    return n, masks[0], masks[1]


def run(args) -> int:
    ledger = read_ledger(args.path)
    if args.json:
        print(json.dumps(ledger.to_dict(), indent=2))
    else:
        print(format_ledger(ledger, releases=args.releases))
    return 0
